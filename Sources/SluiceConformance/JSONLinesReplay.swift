import Foundation
import SluiceKit

/// Rebuilds tables from JSON lines as `sluice tail --json`, the file sink and the exec protocol
/// write them (``RecordJSON``), by applying each change line in order the way a mirroring target
/// would. It gives sinks that write a log of changes rather than tables (the file sink, an exec
/// plugin, your own) a `readRows` for ``SinkConformance``:
///
///     readRows: { table in
///         try JSONLinesReplay.rows(of: table, lines: String(contentsOfFile: path, encoding: .utf8)
///             .split(separator: "\n"))
///     }
///
/// Values come back as PostgreSQL text forms: JSON numbers as written, `true`/`false` as `t`/`f`,
/// strings as they are, `null` as nil. Lines of other tables, begin, commit and relation lines are
/// skipped; a line that is not JSON throws.
public enum JSONLinesReplay {
    /// The rows `table` holds after every change line for it, in order.
    public static func rows<Line: StringProtocol>(of table: RelationSchema, lines: some Sequence<Line>) throws -> [[String: String?]] {
        var store = RowStore(relation: table)
        let decoder = JSONDecoder()
        let name = table.qualifiedName
        for (number, line) in lines.enumerated() where !line.isEmpty {
            let change: ChangeLine
            do {
                change = try decoder.decode(ChangeLine.self, from: Data(line.utf8))
            } catch {
                throw ReplayError(description: "line \(number + 1) is not a JSON object of the tail format: \(line.prefix(120))")
            }
            guard change.kind == "change", change.table == name else { continue }
            guard let op = change.op, let operation = ChangeOperation.allCases.first(where: { $0.name == op }) else {
                throw ReplayError(description: "line \(number + 1): unknown op \(change.op ?? "(none)")")
            }
            store.apply(operation, old: change.before?.mapValues(\.text), new: change.after?.mapValues(\.text),
                        unchanged: Set(change.unchanged ?? []))
        }
        return store.rows
    }

    public struct ReplayError: Error, CustomStringConvertible {
        public var description: String
    }

    /// The fields of a change line that say what it does.
    struct ChangeLine: Decodable {
        var kind: String
        var op: String?
        var table: String?
        var before: [String: Scalar]?
        var after: [String: Scalar]?
        var unchanged: [String]?
    }

    /// A JSON value of a row: PostgreSQL's text form of the column's value.
    enum Scalar: Decodable {
        case null
        case text(String)

        init(from decoder: any Decoder) throws {
            let container = try decoder.singleValueContainer()
            if container.decodeNil() {
                self = .null
            } else if let flag = try? container.decode(Bool.self) {
                self = .text(flag ? "t" : "f")
            } else if let integer = try? container.decode(Int64.self) {
                self = .text(String(integer))
            } else if let number = try? container.decode(Double.self) {
                self = .text(number.description)
            } else {
                self = .text(try container.decode(String.self))
            }
        }

        var text: String? {
            if case let .text(text) = self { return text }
            return nil
        }
    }
}

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
/// strings as they are, `null` as nil; values of json and jsonb columns as compact JSON text (keys
/// in any order, JSON `null` where the line lists the column in `json_null`). Lines of other tables, begin, commit and relation lines are
/// skipped; a line that is not JSON throws.
public enum JSONLinesReplay {
    /// The rows `table` holds after every change line for it, in order.
    public static func rows<Line: StringProtocol>(of table: RelationSchema, lines: some Sequence<Line>) throws -> [[String: String?]] {
        var store = RowStore(relation: table)
        let decoder = JSONDecoder()
        let name = table.qualifiedName
        let jsonColumns = Set(table.columns.filter { $0.typeClass == .json }.map(\.name))
        for (number, line) in lines.enumerated() where !line.isEmpty {
            let change: ChangeLine
            do {
                change = try decoder.decode(ChangeLine.self, from: Data(line.utf8))
            } catch {
                throw ReplayError(description: "line \(number + 1) is not a JSON object of the tail format: \(line.prefix(120))")
            }
            // The two parts apart where the line has them (`table` alone is ambiguous for dotted names).
            let same = change.table_schema.map { $0 == table.schema && change.table_name == table.table } ?? (change.table == name)
            guard change.kind == "change", same else { continue }
            guard let op = change.op, let operation = ChangeOperation.allCases.first(where: { $0.name == op }) else {
                throw ReplayError(description: "line \(number + 1): unknown op \(change.op ?? "(none)")")
            }
            let jsonNulls = Set(change.json_null ?? [])
            func values(_ row: [String: Scalar]?, _ side: String) -> [String: String?]? {
                row.map { row in
                    Dictionary(uniqueKeysWithValues: row.map { name, value in
                        guard jsonColumns.contains(name) else { return (name, value.text) }
                        return (name, jsonNulls.contains(side + "." + name) ? "null" : value.json)
                    })
                }
            }
            store.apply(operation, old: values(change.before, "before"), new: values(change.after, "after"),
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
        var table_schema: String?
        var table_name: String?
        var before: [String: Scalar]?
        var after: [String: Scalar]?
        var unchanged: [String]?
        var json_null: [String]?
    }

    /// A JSON value of a row: PostgreSQL's text form of the column's value, and the value as compact JSON.
    struct Scalar: Decodable {
        var text: String?
        var json: String?

        init(from decoder: any Decoder) throws {
            if let object = try? decoder.container(keyedBy: AnyKey.self) {
                let members = try object.allKeys.map { key in
                    jsonString(key.stringValue) + ":" + (try object.decode(Scalar.self, forKey: key).json ?? "null")
                }
                json = "{" + members.joined(separator: ",") + "}"
                text = json
                return
            }
            if var array = try? decoder.unkeyedContainer() {
                var elements: [String] = []
                while !array.isAtEnd { elements.append(try array.decode(Scalar.self).json ?? "null") }
                json = "[" + elements.joined(separator: ",") + "]"
                text = json
                return
            }
            let container = try decoder.singleValueContainer()
            if container.decodeNil() {
                text = nil
                json = nil
            } else if let flag = try? container.decode(Bool.self) {
                text = flag ? "t" : "f"
                json = flag ? "true" : "false"
            } else if let integer = try? container.decode(Int64.self) {
                text = String(integer)
                json = text
            } else if let number = try? container.decode(Double.self) {
                text = number.description
                json = text
            } else {
                let string = try container.decode(String.self)
                text = string
                json = jsonString(string)
            }
        }
    }

    struct AnyKey: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }
}

import Foundation

/// One entry of a SQL sink's `aggregates:` key, as written in the configuration and checked there:
/// everything that can be validated without the source table's columns.
///
/// ```yaml
/// aggregates:
///   - table: public.orders_per_minute
///     from: public.orders
///     where: "status <> 'cancelled'"
///     group_by: [region]
///     window: {tumbling: 1m, time: created_at}     # or {hopping: 5m, every: 1m, time: commit_time}
///     measures: {orders: "count(*)", revenue: "sum(amount)", biggest: "max(amount)", mean: "avg(amount)"}
///     retain: 30d
/// ```
public struct AggregateDefinition: Sendable {
    /// The target table Sluice creates and maintains.
    public let table: TableName
    /// The source table it summarises.
    public let from: TableName
    public let predicate: Predicate?
    public let groupBy: [String]
    public let window: AggregateWindow
    public let measures: [(name: String, measure: Measure)]
    /// Windows ending this long (µs) before the latest event time seen are dropped.
    public let retain: Int64?
    /// The configuration key of this entry, e.g. `sinks[0] (replica).aggregates[1]`, for errors.
    public let key: String

    /// A measure's function and the column it reads.
    public enum Measure: Sendable, Equatable {
        case countRows
        case count(String)
        case sum(String)
        case min(String)
        case max(String)
        case avg(String)

        public var column: String? {
            switch self {
            case .countRows: return nil
            case let .count(column), let .sum(column), let .min(column), let .max(column), let .avg(column): return column
            }
        }

        /// Parses `count(*)`, `count(col)`, `sum(col)`, `min(col)`, `max(col)`, `avg(col)`; a column
        /// name is folded to lower case unless double-quoted.
        public init?(_ text: String) {
            let characters = Array(text.trimmingSpaces)
            guard let open = characters.firstIndex(of: "("), characters.last == ")", open < characters.count - 1 else { return nil }
            let function = String(characters[..<open]).trimmingSpaces.lowercased()
            let argument = String(characters[(open + 1)..<(characters.count - 1)]).trimmingSpaces
            if argument == "*" {
                guard function == "count" else { return nil }
                self = .countRows
                return
            }
            guard let column = Self.identifier(argument) else { return nil }
            switch function {
            case "count": self = .count(column)
            case "sum": self = .sum(column)
            case "min": self = .min(column)
            case "max": self = .max(column)
            case "avg": self = .avg(column)
            default: return nil
            }
        }

        static func identifier(_ text: String) -> String? {
            if text.count >= 2, text.hasPrefix("\""), text.hasSuffix("\"") {
                let inner = String(text.dropFirst().dropLast())
                return inner.isEmpty ? nil : inner.replacingOccurrences(of: "\"\"", with: "\"")
            }
            guard let first = text.first, first.isLetter || first == "_",
                  text.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "_" || $0 == "$" }) else { return nil }
            return text.lowercased()
        }
    }

    public init(table: TableName, from: TableName, predicate: Predicate?, groupBy: [String], window: AggregateWindow,
                measures: [(name: String, measure: Measure)], retain: Int64?, key: String) {
        self.table = table
        self.from = from
        self.predicate = predicate
        self.groupBy = groupBy
        self.window = window
        self.measures = measures
        self.retain = retain
        self.key = key
    }

    /// Column names Sluice gives the aggregate table itself; a group column or measure may not use them.
    public static let reservedColumns: Set<String> = ["window_start", "window_end"]
}

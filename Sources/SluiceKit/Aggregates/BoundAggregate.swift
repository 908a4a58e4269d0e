/// An aggregate resolved against its source table's columns: which column each part reads and how
/// its values are typed. Made once per relation schema; checks what the configuration alone could not.
public struct BoundAggregate: Sendable {
    public let definition: AggregateDefinition
    public let schema: RelationSchema
    /// Index of the time column (nil for `commit_time`).
    public let timeColumn: Int?
    public let groupColumns: [Int]
    public let predicate: BoundPredicate?
    public let measures: [BoundMeasure]

    public struct BoundMeasure: Sendable {
        public let name: String
        public let function: Function
        /// Index of the column it reads (nil for `count(*)`).
        public let column: Int?
        /// How its values add and compare.
        public let valueClass: ValueClass
        /// The source column's type as `format_type` prints it (PostgreSQL targets keep it for min/max).
        public let typeName: String

        public enum Function: Sendable, Equatable { case countRows, count, sum, min, max, avg }
    }

    /// How a measured column's values are added and ordered.
    public enum ValueClass: Sendable, Equatable {
        /// Integers and numerics: summed exactly (``ExactDecimal``).
        case exact
        case float
        /// Compared in their text form's byte order (text, and ISO dates and times in UTC).
        case text
    }

    /// Why an aggregate cannot be kept over a table, with the configuration key it concerns.
    public struct BindError: Error, CustomStringConvertible, Sendable {
        public let key: String
        public let message: String
        public var description: String { "\(key): \(message)" }
    }

    static let timeTypes: Set<UInt32> = [1082, 1114, 1184]  // date, timestamp, timestamptz
    /// Built-in types whose UTC/ISO text form sorts like the values: min/max over them are computed on text.
    static let textOrdered: Set<UInt32> = [25, 1043, 1042, 1082, 1114, 1184, 1083, 2950]

    public init(_ definition: AggregateDefinition, schema: RelationSchema) throws(BindError) {
        let key = definition.key
        let table = schema.qualifiedName
        func column(_ name: String, _ subkey: String) throws(BindError) -> Int {
            guard let index = schema.columns.firstIndex(where: { $0.name == name }) else {
                throw BindError(key: "\(key).\(subkey)", message: "column '\(name)' is not in \(table) (its columns: "
                                + schema.columns.map(\.name).joined(separator: ", ") + ")")
            }
            return index
        }
        guard schema.replicaIdentity == .full else {
            throw BindError(key: "\(key).from", message: """
                \(table) must have REPLICA IDENTITY FULL for an aggregate: an update or delete retracts the old row, \
                which the source sends whole only then. Run on the source: ALTER TABLE \(Self.quoted(schema)) REPLICA IDENTITY FULL;
                """)
        }
        self.definition = definition
        self.schema = schema
        switch definition.window.time {
        case .commitTime:
            guard !schema.primaryKey.isEmpty else {
                throw BindError(key: "\(key).window.time", message: "commit_time windows need a primary key on \(table) "
                                + "(Sluice keeps each row's last commit time by key); use a time column instead")
            }
            timeColumn = nil
        case let .column(name):
            let index = try column(name, "window.time")
            guard Self.timeTypes.contains(schema.columns[index].typeOID) else {
                throw BindError(key: "\(key).window.time", message: "column '\(name)' of \(table) is \(schema.columns[index].typeName), "
                                + "not a timestamp, timestamptz or date")
            }
            timeColumn = index
        }
        var groups: [Int] = []
        for name in definition.groupBy { groups.append(try column(name, "group_by")) }
        groupColumns = groups
        if let where_ = definition.predicate {
            do { predicate = try where_.bind(to: schema.columns, table: table) } catch {
                throw BindError(key: "\(key).where", message: "'\(where_.text)' over \(table): \(error)")
            }
        } else {
            predicate = nil
        }
        var measures: [BoundMeasure] = []
        for (name, measure) in definition.measures {
            let subkey = "measures.\(name)"
            guard let columnName = measure.column else {
                measures.append(BoundMeasure(name: name, function: .countRows, column: nil, valueClass: .exact, typeName: "bigint"))
                continue
            }
            let index = try column(columnName, subkey)
            let source = schema.columns[index]
            let valueClass: ValueClass
            switch source.typeClass {
            case .integer, .numeric: valueClass = .exact
            case .float: valueClass = .float
            default: valueClass = .text
            }
            let function: BoundMeasure.Function
            switch measure {
            case .countRows: function = .countRows
            case .count: function = .count
            case .sum: function = .sum
            case .avg: function = .avg
            case .min: function = .min
            case .max: function = .max
            }
            if function == .sum || function == .avg, valueClass == .text {
                throw BindError(key: "\(key).\(subkey)", message: "column '\(columnName)' of \(table) is \(source.typeName), not a number")
            }
            if function == .min || function == .max, valueClass == .text, !Self.textOrdered.contains(source.typeOID) {
                throw BindError(key: "\(key).\(subkey)", message: "min and max need a number, text, date, time, timestamp or uuid column; "
                                + "'\(columnName)' of \(table) is \(source.typeName)")
            }
            measures.append(BoundMeasure(name: name, function: function, column: index, valueClass: valueClass, typeName: source.typeName))
        }
        self.measures = measures
    }

    static func quoted(_ schema: RelationSchema) -> String {
        func quote(_ name: String) -> String {
            let plain = name.first.map { $0.isLowercase || $0 == "_" } == true
                && name.allSatisfy { ($0.isLowercase && $0.isASCII) || $0.isNumber || $0 == "_" }
            return plain ? name : "\"" + name.split(separator: "\"", omittingEmptySubsequences: false).joined(separator: "\"\"") + "\""
        }
        return quote(schema.schema) + "." + quote(schema.table)
    }
}

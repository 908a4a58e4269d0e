/// What a sink's transform keys ask for (DESIGN.md, "What reaches each target: transforms"):
/// `tables`, `rename`, `where`, `columns`, `mask_key`, `deletes`, `mode`, `metadata`. Read from the
/// sink's section before the connector reads its own keys; everything that can be checked without a
/// database is checked here (predicates parse, masks are known, combinations make sense), the rest
/// when a table's schema is first seen (``TableTransform``).
public struct SinkTransforms: Sendable {
    public enum Deletes: String, Sendable, CaseIterable { case apply, soft, ignore }
    public enum Mode: String, Sendable, CaseIterable { case mirror, history }
    /// `hash`, `redact`, or `keep N`: the first N characters of the value's text form.
    public enum Mask: Sendable, Equatable {
        case hash, redact
        case keep(Int)

        /// `hash`, `redact`, `keep 4` or `keep(4)`.
        public init?(_ text: String) {
            switch text {
            case "hash": self = .hash
            case "redact": self = .redact
            default:
                guard text.hasPrefix("keep") else { return nil }
                var rest = Substring(text.dropFirst(4))
                if rest.first == "(", rest.last == ")" { rest = rest.dropFirst().dropLast() } else if rest.first == " " { rest = rest.dropFirst() }
                guard let count = Int(rest), count > 0, rest.first != "+" else { return nil }
                self = .keep(count)
            }
        }
    }
    public enum Metadata: String, Sendable, CaseIterable { case lsn, commit_time, op, xid }

    /// The `columns:` entry of one table.
    public struct ColumnRules: Sendable {
        public var exclude: [String] = []
        public var mask: [(column: String, mask: Mask)] = []
    }

    /// The keys every transform reads, so the sink's own `rejectUnknownKeys` accepts them.
    public static let keys = ["tables", "rename", "where", "columns", "mask_key", "deletes", "mode", "metadata"]

    public var include: [TableGlob] = []
    public var exclude: [TableGlob] = []
    public var rename: [TableName: TableName] = [:]
    public var predicates: [TableName: Predicate] = [:]
    public var columns: [TableName: ColumnRules] = [:]
    public var maskKey: [UInt8]?
    public var deletes: Deletes = .apply
    public var mode: Mode = .mirror
    public var metadata: [Metadata] = []
    /// Names errors found later, when a table's schema is seen: `file: sinks[0] (x).key: message`.
    public var file = ""
    public var path = ""

    public init() {}

    /// True when no key asks for anything: the sink receives the topic unchanged.
    public var isEmpty: Bool {
        include.isEmpty && exclude.isEmpty && rename.isEmpty && predicates.isEmpty && columns.isEmpty
            && deletes == .apply && mode == .mirror && metadata.isEmpty
    }

    /// Whether the sink receives `table` at all.
    public func includes(_ table: TableName) -> Bool {
        let name = "\(table.schema).\(table.table)"
        if exclude.contains(where: { $0.matches(name) }) { return false }
        return include.isEmpty || include.contains { $0.matches(name) }
    }

    /// The target table of `table` (itself unless renamed).
    public func target(of table: TableName) -> TableName { rename[table] ?? table }

    /// Every table a key names, with the key, for checking against the tables a source captures.
    public var namedTables: [(key: String, table: TableName)] {
        rename.keys.sorted().map { ("rename.\($0)", $0) } + predicates.keys.sorted().map { ("where.\($0)", $0) }
            + columns.keys.sorted().map { ("columns.\($0)", $0) }
    }

    public func error(_ key: String, _ message: String) -> ConfigError {
        ConfigError(file: file, key: key.isEmpty ? path : "\(path).\(key)", message: message)
    }

    public init(config: ConnectorConfig) throws {
        file = config.file
        path = config.path
        for key in Self.keys { _ = config.value(key) }  // read, so the connector never reports them unknown
        if let patterns = try config.stringList("tables") {
            guard !patterns.isEmpty else { throw config.error("tables", "must list at least one table or glob (or be left out: every table)") }
            for pattern in patterns {
                let negated = pattern.hasPrefix("!")
                let glob = try TableGlob.parse(negated ? String(pattern.dropFirst()) : pattern).orThrow {
                    config.error("tables", "'\(pattern)' \($0) (write schema.table, * for any run of characters, ! first to exclude)")
                }
                if negated { exclude.append(glob) } else { include.append(glob) }
            }
        }
        for (table, value) in try Self.tableMap(config, "rename") {
            guard case let .scalar(text, _) = value else { throw config.error("rename.\(table)", "expected a table name, found \(value.kindName)") }
            let target = try Self.tableName(text, config, "rename.\(table)")
            if let other = rename.first(where: { $0.value == target }) {
                throw config.error("rename.\(table)", "renames onto \(target), as \(other.key) does: two tables cannot share one target table")
            }
            rename[table] = target
        }
        for (table, value) in try Self.tableMap(config, "where") {
            guard case let .scalar(text, _) = value else { throw config.error("where.\(table)", "expected a predicate, found \(value.kindName)") }
            do {
                predicates[table] = try Predicate(text)
            } catch {
                throw config.error("where.\(table)", "\"\(text)\" does not parse: \(error)")
            }
        }
        for (table, value) in try Self.tableMap(config, "columns") {
            columns[table] = try Self.columnRules(value, config, "columns.\(table)")
        }
        if let key = try config.optionalString("mask_key") {
            guard !key.isEmpty else { throw config.error("mask_key", "must not be empty") }
            maskKey = Array(key.utf8)
        }
        deletes = Deletes(rawValue: try config.choice("deletes", Deletes.allCases.map(\.rawValue), default: "apply"))!
        mode = Mode(rawValue: try config.choice("mode", Mode.allCases.map(\.rawValue), default: "mirror"))!
        for name in try config.stringList("metadata") ?? [] {
            guard let item = Metadata(rawValue: name) else {
                throw config.error("metadata", "'\(name)' is not one of: \(Metadata.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            guard !metadata.contains(item) else { throw config.error("metadata", "lists \(name) twice") }
            metadata.append(item)
        }
        try checkCombinations()
    }

    private func checkCombinations() throws {
        if mode == .history, deletes != .apply {
            throw error("deletes", "'\(deletes.rawValue)' does not apply to mode: history (a history table records every delete as a row); remove one of them")
        }
        if mode == .history, !metadata.isEmpty {
            throw error("metadata", "is not needed with mode: history (its tables always have _sluice_op, _sluice_lsn, _sluice_xid, _sluice_commit_time); remove it")
        }
        let hashed = columns.sorted { $0.key < $1.key }.first { $0.value.mask.contains { $0.mask == .hash } }
        if let hashed, maskKey == nil {
            throw error("mask_key", "is required: columns.\(hashed.key) masks with hash (set mask_key: ${MASK_KEY})")
        }
        for (key, table) in namedTables where !includes(table) {
            throw error(key, "names \(table), which tables: leaves out; include it or remove this entry")
        }
    }

    static func tableMap(_ config: ConnectorConfig, _ key: String) throws -> [(TableName, ConfigValue)] {
        switch config.value(key) {
        case nil: return []
        case let .null(line)?: throw config.noValue(key, line: line)
        case let .map(pairs, _)?:
            var seen = Set<TableName>()
            return try pairs.map { pair in
                let table = try tableName(pair.key, config, key)
                guard seen.insert(table).inserted else { throw config.error("\(key).\(pair.key)", "names \(table) twice") }
                return (table, pair.value)
            }
        case let other?: throw config.error(key, "expected a mapping of schema.table: …, found \(other.kindName)")
        }
    }

    static func tableName(_ text: String, _ config: ConnectorConfig, _ key: String) throws -> TableName {
        do { return try TableName.parse(text) } catch {
            throw config.error(key, "'\(text)' \(error)")
        }
    }

    static func columnRules(_ value: ConfigValue, _ config: ConnectorConfig, _ key: String) throws -> ColumnRules {
        guard case let .map(pairs, _) = value else { throw config.error(key, "expected {exclude: [...], mask: {column: hash|redact|keep N}}, found \(value.kindName)") }
        var rules = ColumnRules()
        for pair in pairs {
            switch pair.key {
            case "exclude":
                let items: [ConfigValue]
                switch pair.value {
                case let .list(list, _): items = list
                case .scalar: items = [pair.value]
                default: throw config.error("\(key).exclude", "expected a list of column names, found \(pair.value.kindName)")
                }
                for item in items {
                    guard case let .scalar(name, _) = item, !name.isEmpty else {
                        throw config.error("\(key).exclude", "expected a column name, found \(item.kindName)")
                    }
                    guard !rules.exclude.contains(name) else { throw config.error("\(key).exclude", "lists \(name) twice") }
                    rules.exclude.append(name)
                }
            case "mask":
                guard case let .map(masks, _) = pair.value else {
                    throw config.error("\(key).mask", "expected a mapping of column: hash|redact|keep N, found \(pair.value.kindName)")
                }
                for mask in masks {
                    guard case let .scalar(text, _) = mask.value, let kind = Mask(text) else {
                        throw config.error("\(key).mask.\(mask.key)", "must be hash, redact or keep N (its first N characters, N ≥ 1)")
                    }
                    guard !rules.exclude.contains(mask.key) else {
                        throw config.error("\(key).mask.\(mask.key)", "\(mask.key) is excluded; a column is either excluded or masked")
                    }
                    rules.mask.append((mask.key, kind))
                }
            default:
                throw config.error("\(key).\(pair.key)", "unknown key (known: exclude, mask)")
            }
        }
        for (column, _) in rules.mask where rules.exclude.contains(column) {
            throw config.error("\(key).mask.\(column)", "\(column) is excluded; a column is either excluded or masked")
        }
        return rules
    }
}

extension Result {
    func orThrow(_ describe: (Failure) -> some Error) throws -> Success {
        switch self {
        case let .success(value): return value
        case let .failure(error): throw describe(error)
        }
    }
}

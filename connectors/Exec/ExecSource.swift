import Foundation
import Logging
import SluiceKit

/// A source in any language (`type: exec`, `command: [...]`): a subprocess that writes transactions as
/// JSON lines on its stdout, speaking version 1 of the exec protocol (connectors/README.md).
///
/// Positions are the plugin's: each transaction carries an integer `position` that grows with every
/// transaction (a sequence number, an LSN, a time in microseconds). It is stored in the topic with the
/// commit marker; a restarted plugin is told the last stored one and whatever it sends again up to it
/// is dropped, so every transaction reaches the topic exactly once.
public final class ExecSource: Source {
    public static let typeName = "exec"

    let name: String
    let settings: PluginSettings

    public init(config: ConnectorConfig) throws {
        name = config.name
        settings = try PluginSettings(config: config, example: "source.py")
        try config.rejectUnknownKeys()
    }

    public func check(logger: Logger) -> [CheckFinding] { settings.check(subject: "source \(name)") }

    public func preflight() throws { try settings.preflight(subject: "source \(name)") }

    public func run(into writer: TransactionWriter, context: SourceContext) throws {
        let plugin: PluginProcess
        do {
            plugin = try settings.launch()
        } catch {
            throw ConnectorError.transient("source \(name): \(error)")
        }
        defer {
            try? plugin.send("{\"kind\":\"shutdown\"}")
            try? plugin.flush(timeoutMillis: 1000)
            plugin.stop()
        }
        var session = ExecSourceSession(name: name, plugin: plugin, writer: writer, logger: context.logger)
        do {
            try session.run(config: settings.configJSON, startTimeoutMillis: settings.timeoutMillis, context: context)
        } catch let error as ConnectorError {
            throw error
        } catch let full as TopicStorageFull {
            throw full  // the runtime pauses capture and gives back its space reserve
        } catch let error as ExecSourceSession.ProtocolError {
            throw ConnectorError.transient("source \(name): \(error.message)")
        } catch {
            throw ConnectorError.transient("source \(name): \(error)")
        }
    }
}

/// One run of a source plugin: the handshake, then transactions until the daemon stops.
struct ExecSourceSession {
    struct ProtocolError: Error { let message: String }

    let name: String
    let plugin: PluginProcess
    let writer: TransactionWriter
    let logger: Logger
    private var relations: [TableName: RelationSchema] = [:]
    /// Position of the open transaction; nil outside one. `skipping` when it was stored already.
    private var open: UInt64?
    private var skipping = false
    private var stored: UInt64
    private var acked: UInt64
    private var lastAck = DispatchTime.now()

    init(name: String, plugin: PluginProcess, writer: TransactionWriter, logger: Logger) {
        self.name = name
        self.plugin = plugin
        self.writer = writer
        self.logger = logger
        stored = writer.lastCommit?.commit.commitLSN.rawValue ?? 0
        acked = writer.writer.topic.durableCommit?.commit.commitLSN.rawValue ?? 0
    }

    mutating func run(config: String, startTimeoutMillis: Int, context: SourceContext) throws {
        let position = writer.lastCommit.map { "\($0.commit.commitLSN.rawValue)" } ?? "null"
        try plugin.send("{\"kind\":\"hello\",\"protocol\":1,\"source\":\(jsonString(name)),\"config\":\(config),\"position\":\(position)}")
        try plugin.flush(timeoutMillis: startTimeoutMillis)
        var ready = false
        let deadline = DispatchTime.now().uptimeNanoseconds + UInt64(startTimeoutMillis) * 1_000_000
        while !context.isStopping() {
            guard let line = try plugin.nextLine(waitMillis: 100) else {
                if !ready && DispatchTime.now().uptimeNanoseconds > deadline {
                    throw ProtocolError(message: "no `ready` from the plugin within \(startTimeoutMillis / 1000) s")
                }
                try checkDurability()
                try ackIfDue(force: true)
                continue
            }
            let message = try parse(line)
            let kind = message["kind"]?.string ?? ""
            if !ready {
                switch kind {
                case "ready":
                    guard message["protocol"]?.integer == 1 else {
                        throw ConnectorError.fatal("source \(name): the plugin speaks exec protocol \(message["protocol"]?.text ?? "?"), Sluice speaks 1")
                    }
                    ready = true
                    // Not running while the topic cannot make commits durable (a broker still refusing them).
                    try writer.writer.checkHealth()
                    context.report(.running)
                    continue
                case "log", "error": break
                default: throw ProtocolError(message: "the plugin sent '\(kind)' before `ready`")
                }
            }
            try handle(kind, message, line: line)
            try ackIfDue(force: false)
        }
        // Stopping: an open transaction is dropped and sent again by the next start.
        if writer.isOpen { try writer.abort() }
        try writer.writer.flush()
        try ackIfDue(force: true)
    }

    /// An idle source learns of a topic that cannot make its commits durable (a broker down) without
    /// appending, as the PostgreSQL source does.
    private func checkDurability() throws {
        if writer.writer.topic.durableCommit?.offset != writer.lastCommit?.offset { try writer.writer.checkHealth() }
    }

    /// Tells the plugin which position is durable in the topic, so it can let go of what precedes it.
    private mutating func ackIfDue(force: Bool) throws {
        guard let durable = writer.writer.topic.durableCommit?.commit.commitLSN.rawValue, durable > acked else { return }
        let now = DispatchTime.now()
        guard force || now.uptimeNanoseconds - lastAck.uptimeNanoseconds >= 100_000_000 else { return }
        acked = durable
        lastAck = now
        try plugin.send("{\"kind\":\"ack\",\"position\":\(durable)}")
        try plugin.flush(timeoutMillis: 10_000)
    }

    private mutating func handle(_ kind: String, _ message: [String: JSONValue], line: String) throws {
        switch kind {
        case "log":
            logger.info("\(message["message"]?.string ?? "")", metadata: ["plugin": "\(name)"])
        case "error":
            let text = message["message"]?.string ?? "(no message)"
            if message["retry"] == .bool(false) { throw ConnectorError.fatal("source \(name): the plugin failed: \(text)") }
            throw ConnectorError.transient("source \(name): the plugin failed: \(text)")
        case "relation":
            let relation = try self.relation(message)
            let key = TableName(schema: relation.schema, table: relation.table)
            let changed = relations[key].map { $0 != relation } ?? false
            relations[key] = relation
            if changed && open != nil && !skipping { try writer.relationChanged(relation) }
        case "begin":
            guard open == nil else { throw ProtocolError(message: "`begin` inside an open transaction: \(line.prefix(200))") }
            guard let position = message["position"]?.position else {
                throw ProtocolError(message: "`begin` needs an integer `position`: \(line.prefix(200))")
            }
            let time = message["commit_time"]?.string.flatMap(parseMicros) ?? nowMicros()
            open = position
            skipping = position <= stored
            if !skipping { try writer.begin(BeginRecord(xid: 0, commitLSN: LSN(position), commitTime: time)) }
        case "change":
            guard open != nil else { throw ProtocolError(message: "`change` outside a transaction: \(line.prefix(200))") }
            guard !skipping else { return }
            try change(message, line: line)
        case "commit":
            guard let position = open else { throw ProtocolError(message: "`commit` without `begin`") }
            open = nil
            guard !skipping else { return }
            try writer.commit(commitLSN: LSN(position), endLSN: LSN(position), commitTime: nowMicros())
            stored = position
        default:
            throw ProtocolError(message: "the plugin wrote a line that is not the exec protocol: \(line.prefix(200))")
        }
    }

    private func parse(_ line: String) throws -> [String: JSONValue] {
        guard let value = try? JSONDecoder().decode(JSONValue.self, from: Data(line.utf8)), case let .object(object) = value,
              object["kind"]?.string != nil else {
            throw ProtocolError(message: "the plugin wrote a line that is not the exec protocol: \(line.prefix(200))")
        }
        return object
    }

    // MARK: Tables and rows

    /// `table_schema` and `table_name` when the line has them (names with dots), else `table`: `schema.table`
    /// split at its first dot, or a bare name in `public`.
    static func tableName(_ message: [String: JSONValue]) -> TableName? {
        if let schema = message["table_schema"]?.string, let table = message["table_name"]?.string, !schema.isEmpty, !table.isEmpty {
            return TableName(schema: schema, table: table)
        }
        guard let table = message["table"]?.string, !table.isEmpty else { return nil }
        let parts = table.split(separator: ".", maxSplits: 1).map(String.init)
        return parts.count == 2 ? TableName(schema: parts[0], table: parts[1]) : TableName(schema: "public", table: table)
    }

    private func relation(_ message: [String: JSONValue]) throws -> RelationSchema {
        guard let qualified = Self.tableName(message), case let .array(columns)? = message["columns"], !columns.isEmpty else {
            throw ProtocolError(message: "`relation` needs `table` (schema.table, or `table_schema` and `table_name`) and a non-empty `columns` list")
        }
        let (schema, bare) = (qualified.schema, qualified.table)
        let table = qualified.description
        var result: [RelationSchema.Column] = []
        for column in columns {
            guard case let .object(fields) = column, let columnName = fields["name"]?.string else {
                throw ProtocolError(message: "relation \(table): each column needs a `name`")
            }
            let typeName = fields["type"]?.string ?? "text"
            guard let oid = Self.typeOIDs[typeName.lowercased()] else {
                throw ConnectorError.fatal("""
                    source \(name): relation \(table), column \(columnName): unknown type '\(typeName)' \
                    (known: \(Self.typeOIDs.keys.sorted().joined(separator: ", ")))
                    """)
            }
            // YAML-sourced configs hand scalars over as strings.
            let key = fields["key"] == .bool(true) || fields["key"] == .string("true")
            result.append(RelationSchema.Column(name: columnName, typeOID: oid, typeModifier: -1,
                                                typeName: Self.canonicalNames[oid] ?? typeName, isPrimaryKey: key,
                                                isReplicaIdentity: key))
        }
        let hasKey = result.contains(where: \.isPrimaryKey)
        // Dotted names by their quoted form, so "a.b".c and a."b.c" get two ids (others keep theirs).
        let idName = schema.contains(".") || bare.contains(".") ? qualified.description : schema + "." + bare
        return RelationSchema(id: Self.stableID(idName), schema: schema, table: bare,
                              replicaIdentity: hasKey ? .default : .full, columns: result)
    }

    private mutating func change(_ message: [String: JSONValue], line: String) throws {
        guard let qualified = Self.tableName(message) else { throw ProtocolError(message: "`change` needs `table`: \(line.prefix(200))") }
        guard let relation = relations[qualified] else {
            throw ProtocolError(message: "change of \(qualified) before its `relation` line")
        }
        let op = message["op"]?.string ?? ""
        try writer.ensureRelation(relation)
        let hasKey = relation.columns.contains(where: \.isPrimaryKey)
        func row(_ field: String, missing: UInt8, keyOnly: Bool = false) throws -> [UInt8]? {
            guard let value = message[field], value != .null else { return nil }
            guard case let .object(values) = value else { throw ProtocolError(message: "`\(field)` must be an object: \(line.prefix(200))") }
            return try Self.tuple(relation, values, missing: missing, keyOnly: keyOnly)
        }
        switch op {
        case "insert", "read":
            guard let after = try row("after", missing: Self.nullByte) else {
                throw ProtocolError(message: "`\(op)` needs `after`: \(line.prefix(200))")
            }
            try after.withUnsafeBytes { try writer.change(op == "read" ? .read : .insert, relation: relation.id, lsn: LSN(open!), new: $0) }
        case "update":
            guard let after = try row("after", missing: Self.unchangedByte) else {
                throw ProtocolError(message: "`update` needs `after`: \(line.prefix(200))")
            }
            let before = try row("before", missing: Self.nullByte, keyOnly: hasKey)
            try after.withUnsafeBytes { new in
                if let before {
                    try before.withUnsafeBytes { old in
                        try writer.change(.update, relation: relation.id, lsn: LSN(open!), oldKind: hasKey ? .key : .full, old: old, new: new)
                    }
                } else {
                    try writer.change(.update, relation: relation.id, lsn: LSN(open!), new: new)
                }
            }
        case "delete":
            guard let before = try row("before", missing: Self.nullByte, keyOnly: hasKey) else {
                throw ProtocolError(message: "`delete` needs `before` (the key, or the whole row without a key): \(line.prefix(200))")
            }
            try before.withUnsafeBytes {
                try writer.change(.delete, relation: relation.id, lsn: LSN(open!), oldKind: hasKey ? .key : .full, old: $0)
            }
        case "truncate":
            try writer.change(.truncate, relation: relation.id, lsn: LSN(open!))
        default:
            throw ProtocolError(message: "unknown `op` '\(op)' (insert, update, delete, read, truncate): \(line.prefix(200))")
        }
    }

    static let nullByte = UInt8(ascii: "n")
    static let unchangedByte = UInt8(ascii: "u")

    /// A row in the topic's tuple layout; columns absent from `values` become `missing` (null, or
    /// unchanged in an update so the target keeps its value).
    static func tuple(_ relation: RelationSchema, _ values: [String: JSONValue], missing: UInt8, keyOnly: Bool) throws -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(64)
        let count = relation.columns.count
        bytes.append(UInt8(count >> 8))
        bytes.append(UInt8(count & 0xFF))
        for column in relation.columns {
            guard !keyOnly || column.isPrimaryKey, let value = values[column.name] else {
                bytes.append(keyOnly ? nullByte : missing)
                continue
            }
            guard let text = value.pgText(bool: column.typeOID == 16, json: column.typeOID == 114 || column.typeOID == 3802,
                                          jsonb: column.typeOID == 3802) else {
                bytes.append(nullByte)
                continue
            }
            let utf8 = Array(text.utf8)
            bytes.append(UInt8(ascii: "t"))
            let length = UInt32(utf8.count)
            bytes.append(contentsOf: [UInt8(length >> 24), UInt8(length >> 16 & 0xFF), UInt8(length >> 8 & 0xFF), UInt8(length & 0xFF)])
            bytes.append(contentsOf: utf8)
        }
        return bytes
    }

    /// The same table gets the same id in every run (FNV-1a of its name).
    static func stableID(_ name: String) -> UInt32 {
        var hash: UInt32 = 2_166_136_261
        for byte in name.utf8 { hash = (hash ^ UInt32(byte)) &* 16_777_619 }
        return max(hash, 1)
    }

    static let typeOIDs: [String: UInt32] = [
        "bool": 16, "boolean": 16, "bytea": 17, "int8": 20, "bigint": 20, "int2": 21, "smallint": 21,
        "int4": 23, "int": 23, "integer": 23, "text": 25, "json": 114, "float4": 700, "real": 700,
        "float8": 701, "double precision": 701, "varchar": 1043, "character varying": 1043, "date": 1082,
        "time": 1083, "timestamp": 1114, "timestamptz": 1184, "timestamp with time zone": 1184,
        "interval": 1186, "numeric": 1700, "decimal": 1700, "uuid": 2950, "jsonb": 3802,
        "text[]": 1009, "int4[]": 1007, "integer[]": 1007, "int8[]": 1016, "bigint[]": 1016,
    ]

    static let canonicalNames: [UInt32: String] = [
        16: "boolean", 17: "bytea", 20: "bigint", 21: "smallint", 23: "integer", 25: "text", 114: "json",
        700: "real", 701: "double precision", 1043: "character varying", 1082: "date",
        1083: "time without time zone", 1114: "timestamp without time zone", 1184: "timestamp with time zone",
        1186: "interval", 1700: "numeric", 2950: "uuid", 3802: "jsonb", 1009: "text[]", 1007: "integer[]",
        1016: "bigint[]",
    ]
}

/// A JSON value as a plugin wrote it.
enum JSONValue: Decodable, Equatable {
    case null
    case bool(Bool)
    case integer(Int64)
    case number(Double)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])

    init(from decoder: Decoder) throws {
        let container = try decoder.singleValueContainer()
        if container.decodeNil() { self = .null }
        else if let value = try? container.decode(Bool.self) { self = .bool(value) }
        else if let value = try? container.decode(Int64.self) { self = .integer(value) }
        else if let value = try? container.decode(Double.self) { self = .number(value) }
        else if let value = try? container.decode(String.self) { self = .string(value) }
        else if let value = try? container.decode([JSONValue].self) { self = .array(value) }
        else { self = .object(try container.decode([String: JSONValue].self)) }
    }

    var string: String? { if case let .string(text) = self { return text } else { return nil } }

    var integer: Int64? { if case let .integer(value) = self { return value } else { return nil } }

    /// A position: a non-negative integer, or an LSN written `X/Y`.
    var position: UInt64? {
        switch self {
        case let .integer(value) where value >= 0: return UInt64(value)
        case let .string(text): return LSN(text)?.rawValue ?? UInt64(text)
        default: return nil
        }
    }

    var text: String {
        switch self {
        case .null: return "null"
        case let .bool(value): return "\(value)"
        case let .integer(value): return "\(value)"
        case let .number(value): return "\(value)"
        case let .string(value): return value
        case .array, .object: return json
        }
    }

    /// PostgreSQL's text form for a column; nil for null.
    func pgText(bool: Bool, json asJSON: Bool, jsonb: Bool = false) -> String? {
        switch self {
        case .null: return nil
        case let .bool(value): return bool ? (value ? "t" : "f") : "\(value)"
        case let .string(value): return value  // for json columns: the JSON text itself
        case .array where !asJSON: return pgArray
        default: return asJSON ? json(spaced: jsonb) : text
        }
    }

    var json: String { json(spaced: false) }

    /// `spaced` writes jsonb's own text form (`{"a": 1, "b": [1, 2]}`, keys by length then bytes).
    func json(spaced: Bool) -> String {
        let comma = spaced ? ", " : ","
        let colon = spaced ? ": " : ":"
        switch self {
        case .null: return "null"
        case let .bool(value): return "\(value)"
        case let .integer(value): return "\(value)"
        case let .number(value): return value.isFinite ? "\(value)" : "null"
        case let .string(value): return jsonString(value)
        case let .array(items): return "[" + items.map { $0.json(spaced: spaced) }.joined(separator: comma) + "]"
        case let .object(entries):
            let sorted = entries.sorted { a, b in
                let (x, y) = (Array(a.key.utf8), Array(b.key.utf8))
                return spaced && x.count != y.count ? x.count < y.count : x.lexicographicallyPrecedes(y)
            }
            return "{" + sorted.map { jsonString($0.key) + colon + $0.value.json(spaced: spaced) }.joined(separator: comma) + "}"
        }
    }

    /// A JSON array as a PostgreSQL array literal.
    private var pgArray: String {
        guard case let .array(items) = self else { return text }
        return "{" + items.map { item -> String in
            switch item {
            case .null: return "NULL"
            case .array: return item.pgArray
            default:
                // Quoted only where PostgreSQL's own output quotes, so targets store its text form.
                let raw = item.text
                let plain = !raw.isEmpty && raw.uppercased() != "NULL"
                    && !raw.contains(where: { " ,{}\"\\\t\n".contains($0) })
                if plain { return raw }
                return "\"" + raw.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"") + "\""
            }
        }.joined(separator: ",") + "}"
    }
}

/// Renders one topic's changes as the values of Debezium's PostgreSQL change events, in JSON
/// (`format: debezium`), so that consumers written for Debezium read them unchanged:
///
///     {"before":null,"after":{"id":1,"status":"open"},
///      "source":{"version":"sluice","connector":"postgresql","name":"app","ts_ms":1764583200123,"snapshot":"false",
///                "db":"app","sequence":"[\"22213400\",\"22213456\"]","schema":"public","table":"orders",
///                "txId":726,"lsn":22213456,"xmin":null},
///      "op":"c","ts_ms":1764583200456,
///      "transaction":{"id":"726:22213560","total_order":1,"data_collection_order":1}}
///
/// Values follow ``DebeziumValue``. It also writes Debezium's transaction metadata events
/// (`{"status":"BEGIN"…}`, `{"status":"END"…}`) for sinks that frame transactions in their output.
///
/// Keep one per topic and call ``begin(_:)`` at each transaction's start: it numbers the events of a
/// transaction (`total_order`, `data_collection_order`) and keeps the previous commit for `sequence`.
public struct DebeziumEnvelope: Sendable {
    /// `source.name`: Debezium's topic prefix (logical server name); Sluice puts the topic here.
    public let serverName: String
    /// `source.db`. Sluice's topics do not carry the database name: the topic by default.
    public let database: String
    private let clock: @Sendable () -> Micros
    private var begin: BeginRecord?
    private var previousCommit: LSN?
    private var totalOrder: UInt64 = 0
    private var collectionOrder: [String: UInt64] = [:]
    private var collections: [String] = []

    public init(serverName: String, database: String? = nil, clock: @escaping @Sendable () -> Micros = nowMicros) {
        self.serverName = serverName
        self.database = database ?? serverName
        self.clock = clock
    }

    /// Starts a transaction; returns Debezium's BEGIN transaction event.
    public mutating func begin(_ record: BeginRecord) -> String {
        begin = record
        totalOrder = 0
        collectionOrder = [:]
        collections = []
        var out = JSONLine()
        out.field("status", string: "BEGIN")
        out.field("id", string: transactionID(record))
        out.field("ts_ms", number: String(millis(record.commitTime)))
        out.field("event_count", raw: "null")
        out.field("data_collections", raw: "null")
        return out.finish()
    }

    /// Ends the transaction; returns Debezium's END transaction event, with `extra` fields appended.
    public mutating func end(_ record: CommitRecord, extra: [(String, String)] = []) -> String {
        var out = JSONLine()
        out.field("status", string: "END")
        out.field("id", string: "\(record.xid):\(record.commitLSN.rawValue)")
        out.field("ts_ms", number: String(millis(record.commitTime)))
        out.field("event_count", number: String(totalOrder))
        out.field("data_collections", raw: "[" + collections.map { name in
            "{\"data_collection\":\(jsonString(name)),\"event_count\":\(collectionOrder[name] ?? 0)}"
        }.joined(separator: ",") + "]")
        for (key, raw) in extra { out.field(key, raw: raw) }
        previousCommit = record.commitLSN
        begin = nil
        return out.finish()
    }

    /// The events of one change: one, except for an update that changes the primary key, which
    /// Debezium emits as a delete of the old key (`op: d`) followed by a create (`op: c`). Sluice
    /// writes no tombstone after the delete (Kafka's log compaction is not there to need one).
    public mutating func events(_ change: Change) -> [String] {
        guard Self.changesKey(change) else { return [self.change(change)] }
        var delete = change
        delete.operation = .delete
        delete.new = nil
        var create = change
        create.operation = .insert
        create.oldKind = .none
        create.old = nil
        return [self.change(delete), self.change(create)]
    }

    /// An update whose old key differs from its new one: the source sent an old key or row and a
    /// primary-key column (the replica identity's, for a table without one) changed value.
    public static func changesKey(_ change: Change) -> Bool {
        guard change.operation == .update, let old = change.old, let new = change.new else { return false }
        var key = change.relation.primaryKey
        if key.isEmpty, change.relation.replicaIdentity == .index {
            key = change.relation.columns.indices.filter { change.relation.columns[$0].isReplicaIdentity }
        }
        guard !key.isEmpty else { return false }
        var oldValues: [Int: Value] = [:]
        var index = 0
        for value in old {
            if key.contains(index) { oldValues[index] = value }
            index += 1
        }
        index = 0
        for value in new {
            if key.contains(index), !value.isUnchanged, let before = oldValues[index], !before.isUnchanged, before != value {
                return true
            }
            index += 1
        }
        return false
    }

    /// One change event, as the change is (``events(_:)`` splits a key change in two).
    public mutating func change(_ change: Change) -> String {
        let relation = change.relation
        let collection = relation.qualifiedName
        totalOrder += 1
        if collectionOrder[collection] == nil { collections.append(collection) }
        collectionOrder[collection, default: 0] += 1
        let isSnapshot = change.operation == .read || begin?.xid == 0

        var out = JSONLine()
        // A truncate event has no rows: Debezium leaves both fields out.
        if change.operation != .truncate {
            out.field("before", raw: change.old.map { row($0, relation) } ?? "null")
            out.field("after", raw: change.new.map { row($0, relation) } ?? "null")
        }
        var source = JSONLine()
        source.field("version", string: "sluice")
        source.field("connector", string: "postgresql")
        source.field("name", string: serverName)
        source.field("ts_ms", number: String(millis(begin?.commitTime ?? clock())))
        source.field("snapshot", string: isSnapshot ? "true" : "false")
        source.field("db", string: database)
        source.field("sequence", string: "[" + (previousCommit.map { jsonString(String($0.rawValue)) } ?? "null") + ","
                     + jsonString(String(change.lsn.rawValue)) + "]")
        source.field("schema", string: relation.schema)
        source.field("table", string: relation.table)
        source.field("txId", raw: begin.map { $0.xid == 0 ? "null" : String($0.xid) } ?? "null")
        source.field("lsn", number: String(change.lsn.rawValue))
        source.field("xmin", raw: "null")
        out.field("source", raw: source.finish())
        out.field("op", string: Self.op(change.operation))
        out.field("ts_ms", number: String(millis(clock())))
        if let begin, !isSnapshot {
            var transaction = JSONLine()
            transaction.field("id", string: transactionID(begin))
            transaction.field("total_order", number: String(totalOrder))
            transaction.field("data_collection_order", number: String(collectionOrder[collection] ?? 1))
            out.field("transaction", raw: transaction.finish())
        } else {
            out.field("transaction", raw: "null")
        }
        return out.finish()
    }

    /// Debezium's `op`: c create, u update, d delete, r read (snapshot), t truncate.
    public static func op(_ operation: ChangeOperation) -> String {
        switch operation {
        case .read: return "r"
        case .insert: return "c"
        case .update: return "u"
        case .delete: return "d"
        case .truncate: return "t"
        }
    }

    /// Every column of the table, as Kafka Connect writes a struct: a column an old key leaves out is null.
    func row(_ tuple: Tuple, _ relation: RelationSchema) -> String {
        var object = "{"
        for (index, value) in tuple.enumerated() where index < relation.columns.count {
            let column = relation.columns[index]
            if index > 0 { object += "," }
            object += jsonString(column.name) + ":" + DebeziumValue.json(value, column: column)
        }
        return object + "}"
    }

    /// Debezium's PostgreSQL transaction id: `xid:commit LSN`.
    func transactionID(_ record: BeginRecord) -> String { "\(record.xid):\(record.commitLSN.rawValue)" }

    func millis(_ micros: Micros) -> Int64 { DebeziumValue.floorDivide(micros, 1000) }
}

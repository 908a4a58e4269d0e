import SluiceKit

/// One column value as the source sent it.
enum Cell: Equatable {
    case null
    /// An unchanged TOASTed value: the target keeps what it has.
    case unchanged
    case text(String)
}

/// One change of the workload, before it is encoded into a topic.
struct WorkloadChange {
    var table: RelationSchema
    var operation: ChangeOperation
    var oldKind: OldValuesKind = .none
    var old: [Cell]?
    var new: [Cell]?
}

/// One source transaction of the workload.
struct WorkloadTransaction {
    var topic: String
    var xid: UInt32
    /// What the transaction exercises, for failure messages.
    var summary: String
    var changes: [WorkloadChange]
}

/// The tables and transactions every sink is checked with: two topics, a keyed table with every
/// kind of update, a keyless REPLICA IDENTITY FULL table holding duplicate rows, a composite key in a
/// non-public schema, NULLs, quoting, unchanged TOASTed values, truncation, snapshot reads, a run of
/// 300 inserts of 4 KB rows (1.2 MB), a snapshot re-reading 298 existing rows, 260 keyless inserts
/// and an empty transaction.
///
/// Column types are `integer`, `text`, `boolean` (`t`/`f`) and `numeric(12,2)` (`10.50`).
enum Workload {
    static let topicA = "conformance_a"
    static let topicB = "conformance_b"

    /// `public.conformance_accounts`: id integer primary key, name text, active boolean,
    /// balance numeric(12,2), note text (large values, sent as unchanged by some updates).
    static let accounts = RelationSchema(id: 91_001, schema: "public", table: "conformance_accounts",
                                         replicaIdentity: .default, columns: [
        column("id", oid: 23, type: "integer", key: true),
        column("name", oid: 25, type: "text"),
        column("active", oid: 16, type: "boolean"),
        column("balance", oid: 1700, type: "numeric(12,2)", modifier: (12 << 16 | 2) + 4),
        column("note", oid: 25, type: "text"),
    ])

    /// `public.conformance_ledger`: no primary key, REPLICA IDENTITY FULL, duplicate rows.
    static let ledger = RelationSchema(id: 91_002, schema: "public", table: "conformance_ledger",
                                       replicaIdentity: .full, columns: [
        column("account", oid: 23, type: "integer", identity: true),
        column("amount", oid: 23, type: "integer", identity: true),
        column("memo", oid: 25, type: "text", identity: true),
    ])

    /// `conformance.items` (topic B): primary key (shop, sku).
    static let items = RelationSchema(id: 91_003, schema: "conformance", table: "items", replicaIdentity: .default,
                                      columns: [
        column("shop", oid: 25, type: "text", key: true),
        column("sku", oid: 23, type: "integer", key: true),
        column("label", oid: 25, type: "text"),
    ])

    static let tables = [accounts, ledger, items]

    static func topic(of table: RelationSchema) -> String { table.id == items.id ? topicB : topicA }

    private static func column(_ name: String, oid: UInt32, type: String, modifier: Int32 = -1, key: Bool = false,
                               identity: Bool = false) -> RelationSchema.Column {
        RelationSchema.Column(name: name, typeOID: oid, typeModifier: modifier, typeName: type, isPrimaryKey: key,
                              isReplicaIdentity: key || identity)
    }

    // MARK: Rows

    static func row(_ values: String?...) -> [Cell] { values.map { $0.map(Cell.text) ?? .null } }

    /// An old key: the key columns set, the others NULL (as pgoutput sends it).
    static func key(_ table: RelationSchema, _ values: String?...) -> [Cell] {
        var cells = [Cell](repeating: .null, count: table.columns.count)
        for (index, column) in table.primaryKey.enumerated() { cells[column] = values[index].map(Cell.text) ?? .null }
        return cells
    }

    /// A value larger than PostgreSQL's TOAST threshold, as a source would store out of line.
    static let largeNote = "toasted " + String(repeating: "0123456789abcdef", count: 160)

    /// A few kilobytes per row, so a run of inserts passes the 1 MB at which sinks write buffers out.
    static func bulkNote(_ id: Int) -> String { "n\(id)-" + String(repeating: "0123456789", count: 400) }

    /// Text a bulk loader must escape: tabs, newlines, backslashes, COPY's NULL marker `\N` as a
    /// value, and the empty string (which is not NULL).
    static func awkwardText(_ id: Int) -> String {
        switch id % 7 {
        case 0: return "tab\tnewline\nbackslash\\ \\N \(id)"
        case 1: return "\\N"
        case 2: return ""
        case 3: return "carriage\rreturn \u{7F} \(id)"
        default: return "user-\(id)"
        }
    }

    static func insert(_ table: RelationSchema, _ new: [Cell]) -> WorkloadChange {
        WorkloadChange(table: table, operation: .insert, new: new)
    }

    static func read(_ table: RelationSchema, _ new: [Cell]) -> WorkloadChange {
        WorkloadChange(table: table, operation: .read, new: new)
    }

    static func update(_ table: RelationSchema, old: [Cell]? = nil, kind: OldValuesKind = .key, _ new: [Cell]) -> WorkloadChange {
        WorkloadChange(table: table, operation: .update, oldKind: old == nil ? .none : kind, old: old, new: new)
    }

    static func delete(_ table: RelationSchema, old: [Cell], kind: OldValuesKind = .key) -> WorkloadChange {
        WorkloadChange(table: table, operation: .delete, oldKind: kind, old: old)
    }

    static func truncate(_ table: RelationSchema) -> WorkloadChange {
        WorkloadChange(table: table, operation: .truncate)
    }

    // MARK: Transactions

    static let transactions: [WorkloadTransaction] = [
        WorkloadTransaction(topic: topicA, xid: 1001, summary: "inserts, NULLs, quoting, duplicate keyless rows", changes: [
            insert(accounts, row("1", "alice", "t", "100.00", largeNote)),
            insert(accounts, row("2", "bob", "f", "0.00", "b")),
            insert(accounts, row("3", nil, "t", "12.50", nil)),
            insert(accounts, row("4", "O'Brien \"quoted\" \\ tab\tnew\nline é ☃", nil, nil, "d")),
            insert(ledger, row("1", "100", "a")),
            insert(ledger, row("1", "100", "a")),
            insert(ledger, row("2", nil, "b")),
            insert(ledger, row(nil, "5", "no account")),
        ]),
        WorkloadTransaction(topic: topicA, xid: 1002, summary: "update, primary-key change, delete", changes: [
            update(accounts, row("1", "alice", "t", "150.00", largeNote)),
            update(accounts, old: key(accounts, "2"), row("20", "bob", "f", "0.00", "b")),
            update(ledger, old: row(nil, "5", "no account"), kind: .full, row(nil, "6", "no account")),
            delete(accounts, old: key(accounts, "3")),
            insert(ledger, row("3", "300", "c")),
        ]),
        WorkloadTransaction(topic: topicA, xid: 1003, summary: "unchanged TOASTed values, keyless update and delete", changes: [
            update(accounts, row("1", "alice", "f", "175.25", nil).replacing(4, with: .unchanged)),
            update(accounts, old: key(accounts, "20"), row("21", "bobby", "f", "1.00", nil).replacing(4, with: .unchanged)),
            update(ledger, old: row("1", "100", "a"), kind: .full, row("1", "150", "a")),
            delete(ledger, old: row("2", nil, "b"), kind: .full),
        ]),
        WorkloadTransaction(topic: topicA, xid: 1004, summary: "truncate, snapshot reads", changes: [
            truncate(ledger),
            insert(ledger, row("4", "400", "d")),
            insert(ledger, row("4", "400", "d")),
            read(accounts, row("5", "eve", "t", "5.00", "e")),
            read(accounts, row("4", "dora", "t", "4.00", "d2")),
        ]),
        WorkloadTransaction(topic: topicA, xid: 1005, summary: "300 inserts, then changes to rows of the same run",
                            changes: (100..<400).map { id in
            insert(accounts, row(String(id), awkwardText(id), id % 2 == 0 ? "t" : "f", "\(id).00", id % 50 == 0 ? nil : bulkNote(id)))
        } + [
            delete(accounts, old: key(accounts, "150")),
            update(accounts, old: key(accounts, "200"), row("1200", "user-200", "t", "200.00", bulkNote(200))),
            insert(accounts, row("150", "again", "t", "1.50", "x")),
            update(accounts, row("300", "user-300 updated", "f", "300.50", nil)),
            delete(ledger, old: row("4", "400", "d"), kind: .full),
        ]),
        WorkloadTransaction(topic: topicA, xid: 1006, summary: "partial update without old key, delete and re-insert", changes: [
            update(accounts, row("5", "eve", "f", "6.00", nil).replacing(4, with: .unchanged)),
            delete(accounts, old: key(accounts, "4")),
            insert(accounts, row("4", "dora again", nil, nil, nil)),
        ]),
        WorkloadTransaction(topic: topicA, xid: 1007, summary: "a snapshot re-reading existing rows (a backfill), a keyless run",
                            changes: (101..<400).filter { $0 != 200 }.map { id in
            read(accounts, row(String(id), "snap-" + awkwardText(id + 1), "t", "\(id).25", id % 3 == 0 ? nil : "s\(id)"))
        } + (0..<260).map { number in
            insert(ledger, row("7", String(number % 5), number % 4 == 0 ? nil : awkwardText(number % 3 * 7)))
        }),
        WorkloadTransaction(topic: topicB, xid: 2001, summary: "composite-key inserts", changes: [
            insert(items, row("x", "1", "one")),
            insert(items, row("x", "2", "two")),
            insert(items, row("x", "3", "three")),
        ]),
        WorkloadTransaction(topic: topicB, xid: 2002, summary: "an empty transaction", changes: []),
        WorkloadTransaction(topic: topicB, xid: 2003, summary: "composite-key change, delete, update", changes: [
            update(items, old: key(items, "x", "2"), row("y", "2", "two")),
            delete(items, old: key(items, "x", "3")),
            update(items, row("x", "1", "uno")),
        ]),
        WorkloadTransaction(topic: topicB, xid: 2004, summary: "insert then update in one transaction", changes: [
            insert(items, row("z", "9", nil)),
            update(items, row("z", "9", "nine")),
        ]),
    ]
}

extension Array where Element == Cell {
    func replacing(_ index: Int, with cell: Cell) -> [Cell] {
        var copy = self
        copy[index] = cell
        return copy
    }
}

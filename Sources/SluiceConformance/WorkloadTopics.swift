import Foundation
import Logging
import SluiceKit
import SluiceLog

/// The workload written to real topics of an embedded log, through ``TransactionWriter`` as a source
/// writes them, with the commit position of each transaction.
final class WorkloadTopics {
    let log: EmbeddedLog
    let transactions: [WorkloadTransaction]
    /// The commit marker of each transaction, by index in `transactions`.
    private(set) var commits: [CommittedPosition] = []

    /// Source commit times start here (2025-11-25T09:58:13.595085Z) and step by a little over a second.
    static let firstCommitTime: Micros = 1_764_064_693_595_085

    init(directory: String, transactions: [WorkloadTransaction], logger: Logger) throws {
        log = EmbeddedLog(dataDirectory: directory, logger: logger)
        self.transactions = transactions
        var writers: [String: (topic: any TopicWriter, transactions: TransactionWriter)] = [:]
        var nextLSN: [String: UInt64] = [:]
        for (index, transaction) in transactions.enumerated() {
            if writers[transaction.topic] == nil {
                let writer = try log.openWriter(transaction.topic)
                writers[transaction.topic] = (writer, TransactionWriter(writer: writer))
                nextLSN[transaction.topic] = 0x1_6A00_0000 + UInt64(writers.count) * 0x100_0000
            }
            let writer = writers[transaction.topic]!.transactions
            let first = nextLSN[transaction.topic]!
            let commitLSN = LSN(first + UInt64(transaction.changes.count) * 0x38 + 0x10)
            let commitTime = Self.firstCommitTime + Micros(index) * 1_000_123
            try writer.begin(BeginRecord(xid: transaction.xid, commitLSN: commitLSN, commitTime: commitTime))
            for (number, change) in transaction.changes.enumerated() {
                try writer.ensureRelation(change.table)
                try Self.write(change, lsn: LSN(first + UInt64(number) * 0x38), to: writer)
            }
            try writer.commit(commitLSN: commitLSN, endLSN: LSN(commitLSN.rawValue + 0x30), commitTime: commitTime,
                              keepEmpty: true)
            commits.append(writer.lastCommit!)
            nextLSN[transaction.topic] = commitLSN.rawValue + 0x100
        }
        for (_, writer) in writers {
            try writer.topic.flush()
            writer.topic.close()
        }
    }

    func topic(_ name: String) -> any Topic { log.topic(name) }

    private static func write(_ change: WorkloadChange, lsn: LSN, to writer: TransactionWriter) throws {
        let old = change.old.map(tupleBytes) ?? []
        let new = change.new.map(tupleBytes) ?? []
        try old.withUnsafeBytes { old in
            try new.withUnsafeBytes { new in
                try writer.change(change.operation, relation: change.table.id, lsn: lsn, oldKind: change.oldKind,
                                  old: change.old == nil ? nil : old, new: change.new == nil ? nil : new)
            }
        }
    }

    /// A row in the topic's tuple layout (see ``Tuple``), unchanged values included.
    static func tupleBytes(_ cells: [Cell]) -> [UInt8] {
        var body = RecordBody()
        body.u16(UInt16(cells.count))
        for cell in cells {
            switch cell {
            case .null: body.u8(UInt8(ascii: "n"))
            case .unchanged: body.u8(UInt8(ascii: "u"))
            case let .text(text):
                let bytes = Array(text.utf8)
                body.u8(UInt8(ascii: "t"))
                body.u32(UInt32(bytes.count))
                body.raw(bytes)
            }
        }
        return body.bytes
    }

    // MARK: Expected state

    /// The last commit of each topic among the first `applied` transactions of each topic.
    func positions(applied: [String: Int]) -> [String: CommittedPosition] {
        var result: [String: CommittedPosition] = [:]
        for (topic, count) in applied where count > 0 {
            result[topic] = indices(of: topic).prefix(count).last.map { commits[$0] }
        }
        return result
    }

    /// The rows of `table` once the first `applied[topic]` transactions of its topic are applied.
    func expectedRows(of table: RelationSchema, applied: [String: Int]) -> [RowStore.Row] {
        let topic = Workload.topic(of: table)
        var store = RowStore(relation: table)
        for index in indices(of: topic).prefix(applied[topic] ?? 0) {
            for change in transactions[index].changes where change.table.id == table.id {
                store.apply(change.operation, old: change.old.map { Self.row($0, table, keyOnly: change.oldKind == .key) },
                            new: change.new.map { Self.row($0, table, keyOnly: false) },
                            unchanged: Set(change.new.map { cells in
                                cells.indices.filter { cells[$0] == .unchanged }.map { table.columns[$0].name }
                            } ?? []))
            }
        }
        return store.rows
    }

    /// Transaction indices of `topic`, in order.
    func indices(of topic: String) -> [Int] { transactions.indices.filter { transactions[$0].topic == topic } }

    /// Cells as a row: unchanged columns left out; for an old key, only the replica-identity columns.
    private static func row(_ cells: [Cell], _ table: RelationSchema, keyOnly: Bool) -> RowStore.Row {
        var row: RowStore.Row = [:]
        for (index, cell) in cells.enumerated() where !keyOnly || table.columns[index].isReplicaIdentity {
            switch cell {
            case .null: row[table.columns[index].name] = .some(nil)
            case .unchanged: break
            case let .text(text): row[table.columns[index].name] = text
            }
        }
        return row
    }
}

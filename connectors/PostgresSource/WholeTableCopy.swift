import Foundation
import SluiceKit
import SluiceWire

/// Backfills a table without a primary key, which cannot be copied in key chunks: the whole table,
/// read from a snapshot taken at a known position of the stream, replaces the target's rows.
///
/// As PostgreSQL's own table synchronisation does, a temporary slot is created for its exported
/// snapshot: that snapshot holds exactly the transactions whose commit precedes the slot's consistent
/// point C. The copy is written to the topic as one transaction placed in stream order right before
/// the first transaction committing at or after C: a truncate flagged "backfill" (option 4), then
/// every row as a `read`. A sink applies it as one target transaction — all rows of the table
/// deleted, the snapshot's rows inserted — so the target holds the table's exact multiset as of C,
/// and the stream goes on from there. The snapshot is read only once the stream reaches C (an open
/// transaction keeps it), so rows stream into the topic and memory stays bounded.
///
/// Creating the slot waits for transactions running at that moment to end, so it happens on a
/// thread of its own while the stream goes on, up to `startLSN` (the WAL position before the slot was
/// asked for; C is at or after it): a transaction committing at or after it waits until C is known,
/// so none that belongs after the copy is written before it.
final class WholeTableCopy: @unchecked Sendable {
    let table: TableName
    let tableIndex: Int
    let startLSN: UInt64
    let id = UUID().uuidString
    private let lock = NSLock()
    private var prepared: (session: PGConnection, consistentPoint: UInt64)?
    private var failure: String?
    private var done = false
    /// The trigger message was emitted (its transaction commits after C).
    var triggered = false

    /// Starts taking the snapshot on a thread of its own.
    init(table: TableName, tableIndex: Int, startLSN: UInt64, url: String, slotPrefix: String) {
        self.table = table
        self.startLSN = startLSN
        self.tableIndex = tableIndex
        let slot = String("\(slotPrefix)_copy_\(UInt32.random(in: 0...UInt32.max))".prefix(63))
        let thread = Thread { [self] in
            do {
                let replication = try ReplicationConnection(url: url)
                let created = try replication.createSlot(slot, exportSnapshot: true, temporary: true)
                let session = try PGConnection(url: url, applicationName: "sluice-backfill")
                try session.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
                try session.execute("SET TRANSACTION SNAPSHOT \(PGConnection.quoteLiteral(created.snapshotName ?? ""))")
                // The snapshot is ours now; closing the replication connection drops the temporary slot.
                withExtendedLifetime(replication) {}
                finish(prepared: (session, created.consistentPoint), failure: nil)
            } catch let error as PGError {
                finish(prepared: nil, failure: "cannot take a snapshot of \(table): \(error.message)")
            } catch {
                finish(prepared: nil, failure: "cannot take a snapshot of \(table): \(error)")
            }
        }
        thread.name = "sluice-backfill-snapshot"
        thread.start()
    }

    private func finish(prepared: (PGConnection, UInt64)?, failure: String?) {
        lock.lock()
        self.prepared = prepared
        self.failure = failure
        done = true
        lock.unlock()
    }

    enum State {
        case preparing
        case failed(String)
        /// The snapshot session is open at consistent point `C`.
        case ready(consistentPoint: UInt64)
    }

    var state: State {
        lock.lock()
        defer { lock.unlock() }
        guard done else { return .preparing }
        if let failure { return .failed(failure) }
        return .ready(consistentPoint: prepared!.consistentPoint)
    }

    /// Writes the copy as one transaction at the consistent point; returns the rows copied. Calls
    /// `keepAlive` now and then (a large table takes a while; the replication stream waits meanwhile).
    /// `copySource` says what of the table the publication carries (row filter, column list).
    func write(to writer: TransactionWriter, copySource: (TableName, PGConnection) throws -> CopySource?,
               keepAlive: () -> Void) throws -> UInt64 {
        guard case .ready = state, let session = prepared?.session, let point = prepared?.consistentPoint else {
            preconditionFailure("copy not ready")
        }
        defer { _ = try? session.execute("ROLLBACK") }
        guard let copy = try copySource(table, session) else { throw ConnectorError.fatal("table \(table) no longer exists") }
        let schema = copy.schema
        let lsn = LSN(point)
        let now = nowMicros()
        try writer.begin(BeginRecord(xid: 0, commitLSN: lsn, commitTime: now))
        try writer.ensureRelation(schema)
        try writer.change(.truncate, relation: schema.id, lsn: lsn, truncateOptions: ChangeRecord.backfillTruncate)
        var rows: UInt64 = 0
        var lastPing = DispatchTime.now().uptimeNanoseconds
        try session.copyOut("COPY (SELECT \(copy.selectList) FROM \(table.sql)\(copy.filter)) TO STDOUT") { line in
            try writer.change { body in
                body.u8(ChangeOperation.read.rawValue)
                body.u32(schema.id)
                body.u64(lsn.rawValue)
                try CopyText.appendTuple(line, columns: schema.columns.count, into: &body)
            }
            rows += 1
            if rows % 4096 == 0, DispatchTime.now().uptimeNanoseconds - lastPing > 5_000_000_000 {
                keepAlive()
                lastPing = DispatchTime.now().uptimeNanoseconds
            }
        }
        // Where the source resumes after it: transactions committed before C are before it in the topic.
        try writer.commit(commitLSN: lsn, endLSN: lsn, commitTime: now, keepEmpty: true)
        return rows
    }

    /// Ends the snapshot transaction (the copy was written, or given up).
    func close() {
        lock.lock()
        let session = prepared?.session
        prepared = nil
        lock.unlock()
        _ = try? session?.execute("ROLLBACK")
    }
}

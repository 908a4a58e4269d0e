import Foundation
import Logging
import Metrics
import PGOutput
import SluiceKit
import SluiceWire

/// The replication loop: decodes pgoutput, frames transactions into the topic, and confirms to the
/// slot what the topic holds durably.
final class StreamLoop {
    let source: PostgresSource
    let replication: ReplicationConnection
    let catalog: RelationCatalog
    let sql: PGConnection
    let writer: TransactionWriter
    let context: SourceContext
    let tableFilter: Set<TableName>?

    var decoder = PGOutputDecoder()
    private var relations: [UInt32: RelationSchema] = [:]
    private var guards: [UInt32: SchemaGuard] = [:]
    /// Relations in the publication that `tables:` does not list: their changes are counted, not written.
    private var ignored: [UInt32: Counter] = [:]
    private var reportedIgnored: Set<TableName> = []
    private var lastHeartbeat = DispatchTime.now()
    private var heartbeatFailing = false
    private var lastSlotReport = DispatchTime.now()
    private lazy var backfill = BackfillDriver(source: source, sql: sql, writer: writer, context: context)
    private var walWarning = false
    var state: SourceState
    var progress: ReplicationProgress
    var inTransaction: Bool { progress.inTransaction }
    /// Transactions streamed while they run, kept until their Stream Commit (see ``StagedTransactions``).
    private let staging: StagedTransactions
    /// The transaction of the open stream block (Stream Start … Stream Stop).
    private var streamingXid: UInt32?

    private lazy var retainedGauge = Gauge(label: "sluice_source_retained_wal_bytes", dimensions: [("source", source.name)])

    init(source: PostgresSource, replication: ReplicationConnection, catalog: RelationCatalog, sql: PGConnection,
         writer: TransactionWriter, context: SourceContext, tableFilter: Set<TableName>?, state: SourceState) throws {
        self.state = state
        self.source = source
        self.replication = replication
        self.catalog = catalog
        self.sql = sql
        self.writer = writer
        self.context = context
        self.tableFilter = tableFilter
        progress = ReplicationProgress(lastCommitEnd: writer.lastCommit?.commit.endLSN.rawValue,
                                       beyond: state.confirmedBeyond, now: DispatchTime.now().uptimeNanoseconds)
        staging = try StagedTransactions(directory: context.stateDirectory + "/streaming")
    }

    func run() throws {
        // Published at once: a first scrape must not miss it.
        reportSlot()
        var sinceCheck = 0
        while !context.isStopping() {
            let got = try stream {
                try replication.receive(timeoutMillis: 20) { bytes in try handle(bytes) }
            }
            if got == .ended { throw ConnectorError.transient("source '\(source.name)': the server ended the replication stream") }
            sinceCheck += 1
            if got == .timeout || sinceCheck >= 128 || progress.replyRequested {
                sinceCheck = 0
                try sendStatusIfDue(idle: got == .timeout)
                heartbeatIfDue()
                if !inTransaction { try backfill.tick() }
            }
        }
        // Stopping: whatever is open is dropped and arrives again on the next start.
        if inTransaction && !progress.skipping { try writer.abort() }
        staging.discardAll()
        try writer.writer.flush()
        try? sendStatusIfDue(force: true)
    }

    func stream<T>(_ body: () throws -> T) throws -> T {
        do {
            return try body()
        } catch let error as PGOutputError {
            throw ConnectorError.fatal("source '\(source.name)': cannot decode pgoutput: \(error)")
        } catch let error as PGError {
            throw ConnectorError.transient("source '\(source.name)': \(error.message)")
        }
    }

    // MARK: Messages

    private func handle(_ bytes: UnsafeRawBufferPointer) throws {
        switch try ReplicationMessage.decode(bytes) {
        case let .keepalive(walEnd, _, reply):
            progress.keepalive(walEnd: walEnd, replyRequested: reply)
        case let .xLogData(walStart, walEnd, _, payload):
            progress.data(walStart: walStart, walEnd: walEnd)
            if let xid = streamingXid, let change = try StreamedChange.peek(payload) {
                try staging.append(xid: xid, subtransaction: change.isSchema ? 0 : change.xid, lsn: walStart, message: payload)
                return
            }
            try handle(try decoder.decode(payload), lsn: LSN(walStart))
        }
    }

    func handle(_ message: Message, lsn: LSN) throws {
        switch message {
        case let .begin(begin):
            try beginTransaction(xid: begin.xid, commitLSN: begin.finalLSN, commitTime: begin.commitTime)
        case let .commit(commit):
            try commitTransaction(commitLSN: commit.commitLSN, endLSN: commit.endLSN, commitTime: commit.commitTime)
        case let .relation(relation):
            let schema = try source.wrap { try catalog.schema(for: relation) }
            let previous = relations.updateValue(schema, forKey: relation.oid)
            guards[relation.oid] = SchemaGuard(schema)
            let table = TableName(schema: schema.schema, table: schema.table)
            if let tableFilter, !tableFilter.contains(table) {
                ignored[relation.oid] = Counter(label: "sluice_source_ignored_changes_total",
                                                dimensions: [("source", source.name), ("table", table.description)])
                if reportedIgnored.insert(table).inserted {
                    context.logger.warning("""
                        ignoring changes of \(table): it is in publication \(source.publication) but not captured \
                        (not in tables:); they are counted in sluice_source_ignored_changes_total
                        """, metadata: ["table": "\(table)"])
                }
            } else {
                ignored[relation.oid] = nil
                if inTransaction && !progress.skipping, let previous, previous != schema {
                    try writer.relationChanged(schema)
                }
            }
        case let .insert(insert):
            if insert.relationOID == backfill.chunkRelation { backfill.observe(insert.new) }
            try keepSchemaTrue(insert.relationOID, insert.new)
            guard let relation = try captured(insert.relationOID) else { return }
            try writer.change(.insert, relation: relation, lsn: lsn, new: insert.new.bytes)
        case let .update(update):
            if update.relationOID == backfill.chunkRelation {
                backfill.observe(update.new)
                if let old = update.old { backfill.observe(old.tuple) }
            }
            try keepSchemaTrue(update.relationOID, update.new)
            guard let relation = try captured(update.relationOID) else { return }
            let kind: OldValuesKind
            switch update.old {
            case .key?: kind = .key
            case .full?: kind = .full
            case nil: kind = .none
            }
            try writer.change(.update, relation: relation, lsn: lsn, oldKind: kind, old: update.old?.tuple.bytes,
                              new: update.new.bytes)
        case let .delete(delete):
            if delete.relationOID == backfill.chunkRelation { backfill.observe(delete.old.tuple) }
            guard let relation = try captured(delete.relationOID) else { return }
            let kind: OldValuesKind
            if case .key = delete.old { kind = .key } else { kind = .full }
            try writer.change(.delete, relation: relation, lsn: lsn, oldKind: kind, old: delete.old.tuple.bytes)
        case let .truncate(truncate):
            for oid in truncate.relationOIDs {
                if oid == backfill.chunkRelation { backfill.observeTruncate() }
                guard let relation = try captured(oid) else { continue }
                try writer.change(.truncate, relation: relation, lsn: lsn, truncateOptions: truncate.options.rawValue)
            }
        case let .message(message):
            backfill.observe(message)
        case let .type(type):
            catalog.typeChanged(type.oid)
        case .origin:
            break
        case let .streamStart(start):
            try streamStarted(start)
        case .streamStop:
            streamingXid = nil
        case let .streamCommit(commit):
            try streamCommitted(commit)
        case let .streamAbort(abort):
            staging.abort(xid: abort.xid, subtransaction: abort.subtransactionXid)
        }
    }

    /// Begin, or a streamed transaction's Stream Commit: `commitLSN` is where its commit record starts.
    private func beginTransaction(xid: UInt32, commitLSN: UInt64, commitTime: Int64) throws {
        guard progress.begin(finalLSN: commitLSN) else { return }
        try backfill.beforeBegin(finalLSN: commitLSN) { try? sendStatusIfDue(force: true) }
        try writer.begin(BeginRecord(xid: xid, commitLSN: LSN(commitLSN), commitTime: commitTime + postgresEpochOffsetMicros))
    }

    private func commitTransaction(commitLSN: UInt64, endLSN: UInt64, commitTime: Int64) throws {
        guard progress.commit(endLSN: endLSN, now: DispatchTime.now().uptimeNanoseconds) else { return }
        try writer.commit(commitLSN: LSN(commitLSN), endLSN: LSN(endLSN), commitTime: commitTime + postgresEpochOffsetMicros)
        try backfill.committed(commitLSN: commitLSN, endLSN: endLSN)
    }

    // MARK: Streamed transactions

    private func streamStarted(_ start: StreamStart) throws {
        if start.isFirstSegment {
            try staging.begin(xid: start.xid)
        } else if !staging.contains(start.xid) {
            // Its first blocks went to an earlier connection: this one must send it again from the start.
            throw ConnectorError.transient("""
                source '\(source.name)': the stream resumed transaction \(start.xid) in its middle; reconnecting \
                to receive it from its first change
                """)
        }
        streamingXid = start.xid
    }

    /// Appends the staged transaction to the topic whole, as if it had arrived at its commit.
    private func streamCommitted(_ commit: StreamCommit) throws {
        guard staging.contains(commit.xid) else {
            guard commit.commitLSN < progress.resumeLSN else {
                throw ConnectorError.transient("""
                    source '\(source.name)': Stream Commit of transaction \(commit.xid), none of which was received; \
                    reconnecting to receive it whole
                    """)
            }
            return
        }
        try beginTransaction(xid: commit.xid, commitLSN: commit.commitLSN, commitTime: commit.commitTime)
        if progress.skipping {
            staging.discard(xid: commit.xid)
        } else {
            var replayed = 0
            var decoder = PGOutputDecoder(inStream: true)
            try staging.replay(xid: commit.xid) { lsn, message in
                try handle(try decoder.decode(message), lsn: LSN(lsn))
                replayed += 1
                // The walsender waits meanwhile: it must not time the connection out.
                if replayed % 65_536 == 0 {
                    Failpoint.hit("source.mid_stream_commit")
                    try sendStatusIfDue()
                }
            }
        }
        try commitTransaction(commitLSN: commit.commitLSN, endLSN: commit.endLSN, commitTime: commit.commitTime)
    }

    /// Relaxes the schema a new row contradicts (see ``SchemaGuard``) and writes it before the row.
    private func keepSchemaTrue(_ oid: UInt32, _ row: TupleData) throws {
        guard !progress.skipping, ignored[oid] == nil, let check = guards[oid], var schema = relations[oid],
              let found = check.violations(row) else { return }
        for index in found.nulls { schema.columns[index].isNotNull = false }
        if !found.unknownLabels.isEmpty,
           let refreshed = try source.wrap({ try catalog.refreshingEnums(schema, used: found.unknownLabels) }) {
            schema = refreshed
        }
        guard schema != relations[oid] else { return }
        context.logger.info("schema follows a row", metadata: [
            "table": "\(schema.qualifiedName)", "nulls_in": "\(found.nulls.map { schema.columns[$0].name })",
            "new_labels": "\(found.unknownLabels.values.flatMap { $0 }.sorted())",
        ])
        relations[oid] = schema
        guards[oid] = SchemaGuard(schema)
        try writer.relationChanged(schema)
    }

    /// The relation of a change to write, or nil when the change is skipped or its table is not captured.
    private func captured(_ oid: UInt32) throws -> UInt32? {
        guard !progress.skipping else { return nil }
        guard let schema = relations[oid] else {
            throw ConnectorError.fatal("source '\(source.name)': change for relation \(oid) before its Relation message")
        }
        if let counter = ignored[oid] {
            counter.increment()
            return nil
        }
        try writer.ensureRelation(schema)
        return oid
    }

    // MARK: Confirming

    /// Tells the slot what ``ReplicationProgress`` decides, saving a record first when it asks for one.
    private func sendStatusIfDue(idle: Bool = false, force: Bool = false) throws {
        let durable = writer.writer.topic.durableCommit
        let allDurable = durable?.offset == writer.lastCommit?.offset
        if !allDurable { try writer.writer.checkHealth() }
        let position = durable.map { (offset: $0.offset, endLSN: $0.commit.endLSN.rawValue) }
        var decision = progress.confirm(now: DispatchTime.now().uptimeNanoseconds, durable: position,
                                        allDurable: allDurable, idle: idle, force: force)
        if case let .record(record) = decision {
            var saved = state
            saved.confirmedBeyond = record
            do {
                try saved.save(to: context.stateDirectory)
                state = saved
                progress.recorded(record, now: DispatchTime.now().uptimeNanoseconds)
            } catch {
                // Not recorded, not confirmed: the slot keeps the WAL a little longer.
                progress.recorded(nil, now: DispatchTime.now().uptimeNanoseconds)
            }
            decision = progress.confirm(now: DispatchTime.now().uptimeNanoseconds, durable: position,
                                        allDurable: allDurable, idle: idle, force: force)
        }
        guard case let .send(written, flushed) = decision else { return }
        Failpoint.hit("source.before_confirm")
        try stream { try replication.sendStatus(written: written, flushed: flushed, applied: flushed) }
        let now = DispatchTime.now()
        progress.sent(flushed: flushed, now: now.uptimeNanoseconds)
        if now.uptimeNanoseconds - lastSlotReport.uptimeNanoseconds >= ReplicationProgress.statusIntervalNanos { reportSlot() }
    }

    /// Publishes the WAL the slot retains, and warns once each time it crosses `retained_wal_warning`.
    private func reportSlot() {
        lastSlotReport = DispatchTime.now()
        guard let report = try? source.slotReport(sql), let retained = report.retainedBytes else { return }
        source.recordRetained(report)
        retainedGauge.record(Double(retained))
        if let warning = report.warning, !walWarning {
            context.logger.warning("\(warning)")
        } else if report.warning == nil && walWarning {
            context.logger.notice("slot \(source.slot) retains \(retained) bytes of WAL: below retained_wal_warning and not near its limit")
        }
        walWarning = report.warning != nil
    }

    /// Writes a tiny logical message so the slot's position moves even when no captured table changes.
    private func heartbeatIfDue() {
        guard source.heartbeatMillis > 0 else { return }
        let now = DispatchTime.now()
        guard now.uptimeNanoseconds - lastHeartbeat.uptimeNanoseconds >= UInt64(source.heartbeatMillis) * 1_000_000
        else { return }
        lastHeartbeat = now
        do {
            try sql.execute("SELECT pg_logical_emit_message(false, 'sluice.heartbeat', '')")
            if heartbeatFailing { context.logger.info("heartbeats resumed") }
            heartbeatFailing = false
        } catch {
            if !heartbeatFailing { context.logger.warning("heartbeat failed", metadata: ["error": "\(error)"]) }
            heartbeatFailing = true
        }
    }
}

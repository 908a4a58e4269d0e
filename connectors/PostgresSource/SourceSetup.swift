import Foundation
import Logging
import PGOutput
import SluiceKit
import SluiceWire

extension PostgresSource {
    struct SlotStatus {
        let active: Bool
        let confirmedFlush: UInt64?
        let plugin: String
    }

    func slotStatus(_ sql: PGConnection) throws -> SlotStatus? {
        let result = try sql.execute("""
            SELECT active, confirmed_flush_lsn::text, plugin FROM pg_replication_slots
            WHERE slot_name = $1 AND database = current_database()
            """, [slot])
        guard result.rowCount == 1 else { return nil }
        return SlotStatus(active: result.string(0, 0) == "t",
                          confirmedFlush: result.string(0, 1).flatMap(parseLSN),
                          plugin: result.string(0, 2) ?? "")
    }

    func ensurePublication(_ sql: PGConnection, state: inout SourceState, context: SourceContext, resuming: Bool = false) throws {
        let prerequisites = Prerequisites(source: self, sql: sql, state: state)
        let quotedName = PGConnection.quoteIdentifier(publication)
        guard try wrap({ try prerequisites.publicationExists() }) else {
            let target = prerequisites.publicationTarget
            try publicationChange { try sql.execute("CREATE PUBLICATION \(quotedName) FOR \(target)") }
            state.publicationCreated = true
            try state.save(to: context.stateDirectory)
            context.logger.info("created publication", metadata: ["publication": "\(publication)", "for": "\(target)"])
            return
        }
        if state.publicationCreated, try wrap({ try prerequisites.partitionedWithoutRoot() }) != nil {
            // Created by an earlier Sluice without the option: without it a partitioned table's changes are lost.
            try wrap { try sql.execute("ALTER PUBLICATION \(quotedName) SET (publish_via_partition_root = true)") }
            context.logger.notice("set publish_via_partition_root on the publication Sluice created",
                                  metadata: ["publication": "\(publication)"])
        }
        guard let published = self.published else { return }
        let present = try wrap { try prerequisites.publishedTables() }
        let missing = published.filter { !present.contains($0.name) }
        guard !missing.isEmpty else { return }
        if state.publicationCreated {
            // A table that joins a capture already streaming has rows no snapshot copied: asked for before
            // the table is added, so a crash in between asks again rather than never.
            if resuming { try requestCopy(of: missing.map(\.name.description), context: context) }
            for table in missing {
                try publicationChange { try sql.execute("ALTER PUBLICATION \(quotedName) ADD TABLE \(table.publicationClause)") }
                context.logger.info("added table to publication", metadata: ["publication": "\(publication)", "table": "\(table.name)"])
            }
        } else {
            throw ConnectorError.misconfigured("""
                source '\(name)': publication \(publication) does not include \(missing.map(\.name.description).joined(separator: ", ")). \
                Fix: ALTER PUBLICATION \(quotedName) ADD TABLE \(missing.map(\.publicationClause).joined(separator: ", "));
                """)
        }
    }

    /// `snapshot: initial`: tables added to `tables:` get their existing rows through the backfill path
    /// (one request, merged with a pending one). `snapshot: never`: says how to copy them.
    private func requestCopy(of tables: [String], context: SourceContext) throws {
        guard initialSnapshot else {
            for table in tables {
                context.logger.notice("""
                    table \(table) joins the capture with snapshot: never, so its existing rows are not copied; to copy \
                    them: sluice backfill --config <this file> --source \(name) --table \(table)
                    """)
            }
            return
        }
        var request = try BackfillFiles.readExisting(BackfillRequest.self, directory: context.stateDirectory,
                                                     name: BackfillRequest.fileName, fix: BackfillRequest.damagedFix)
            ?? BackfillRequest(tables: [])
        for table in tables where !request.tables.contains(table) { request.tables.append(table) }
        try BackfillFiles.write(request, directory: context.stateDirectory, name: BackfillRequest.fileName)
        context.logger.info("""
            new tables join the capture: their existing rows are copied through the backfill path (sluice status \
            shows the progress)
            """, metadata: ["tables": "\(tables.joined(separator: ","))"])
    }

    /// Creating or extending the publication: PostgreSQL refusing a row filter or column list of the file
    /// (a function it does not allow in one, say) is a configuration error, not a failure to retry.
    private func publicationChange(_ body: () throws -> Void) throws {
        do {
            try body()
        } catch let error as PGError where !error.isTransient && (published ?? []).contains(where: { !$0.isWholeTable }) {
            throw ConnectorError.misconfigured("""
                source '\(name)': PostgreSQL refuses publication \(publication) as tables: describes it: \(error.message). \
                Fix the where: or columns: of the table it names
                """)
        } catch {
            try wrap { throw error }
        }
    }

    /// Creates the slot (recreating one an interrupted first run left) and, for `snapshot: initial`,
    /// copies the tables from its exported snapshot. Returns where streaming starts.
    func createSlotAndSnapshot(sql: PGConnection, replication: ReplicationConnection, state: inout SourceState,
                               scope: [TableName], writer: TransactionWriter, context: SourceContext) throws -> UInt64 {
        if let existing = try wrap({ try slotStatus(sql) }) {
            if existing.active { throw ConnectorError.transient("replication slot '\(slot)' is in use by another process") }
            let confirmedPast = state.slotConsistentPoint.map { created in (existing.confirmedFlush ?? 0) > created } ?? false
            if state.slotCreated, state.initialSnapshotDurable == true || confirmedPast {
                let when = confirmedPast ? "replication slot '\(slot)' confirmed them up to LSN \(formatLSN(existing.confirmedFlush ?? 0))"
                    : "its initial snapshot was durable"
                throw ConnectorError.fatal("""
                    source '\(name)': topic '\(context.name)' is empty: the transactions it held were lost (its stream \
                    deleted, or its directory \(topicDirectory(context)) removed) after \(when), and the slot cannot send them again. \
                    Sluice will not start from scratch silently. To re-snapshot: stop sluice, drop the slot \
                    (SELECT pg_drop_replication_slot('\(slot)');), delete \(context.stateDirectory), empty the target tables and \
                    their sluice_offsets rows, then run again.
                    """)
            }
            if !initialSnapshot {
                guard existing.plugin == "pgoutput" else {
                    throw ConnectorError.fatal("source '\(name)': slot '\(slot)' uses plugin \(existing.plugin), not pgoutput")
                }
                return existing.confirmedFlush ?? 0
            }
            guard state.slotCreated else {
                throw ConnectorError.misconfigured("""
                    source '\(name)': replication slot '\(slot)' already exists but the topic is empty, so the \
                    initial snapshot cannot be taken from it. Either drop it (SELECT pg_drop_replication_slot('\(slot)');) \
                    or set snapshot: never to stream from the slot's position without copying existing rows.
                    """)
            }
            // Our own slot from a run that died before its snapshot was durable: start over.
            try wrap { _ = try sql.execute("SELECT pg_drop_replication_slot($1)", [slot]) }
            context.logger.warning("dropped the slot of an interrupted initial snapshot", metadata: ["slot": "\(slot)"])
        }
        let created = try wrap { try replication.createSlot(slot, exportSnapshot: initialSnapshot) }
        state.slotCreated = true
        (state.slotConsistentPoint, state.initialSnapshotDurable) = (created.consistentPoint, nil)
        try state.save(to: context.stateDirectory)
        context.logger.info("created replication slot", metadata: ["slot": "\(slot)",
                                                                   "consistent_point": "\(formatLSN(created.consistentPoint))"])
        if initialSnapshot, let snapshotName = created.snapshotName {
            try InitialSnapshot(source: self, sql: sql, writer: writer, context: context)
                .copy(tables: scope, snapshotName: snapshotName, consistentPoint: created.consistentPoint)
            state.initialSnapshotDurable = true
            try state.save(to: context.stateDirectory)
        }
        return created.consistentPoint
    }
}

/// A table name kept as text (in backfill files), quoted for SQL.
func quoteQualified(_ table: String) -> String {
    if let name = try? TableName.parse(table) { return name.sql }
    let parts = table.split(separator: ".", maxSplits: 1).map(String.init)
    return parts.map(PGConnection.quoteIdentifier).joined(separator: ".")
}

import Foundation
import Logging
import PGOutput
import SluiceKit
import SluiceWire

/// Captures a PostgreSQL database through logical replication (pgoutput) into a topic.
///
/// On the first run it creates the publication and the slot if they are missing and, with
/// `snapshot: initial`, copies the existing rows from the slot's exported snapshot as one topic
/// transaction of `read` changes, so snapshot and stream meet with no gap and no overlap.
/// Afterwards it streams from the topic's last commit marker.
public final class PostgresSource: BackfillSource, VerifiableSource, OldRowSource, SchemaSource {
    public static let typeName = "postgres"

    let name: String
    let url: String
    let slot: String
    let publication: String
    /// The configured tables, with their row filters and column lists; nil means every table of the publication.
    let published: [PublishedTable]?
    /// The configured tables' names; nil means every table of the publication.
    var tables: [TableName]? { published?.map(\.name) }
    /// `tables: all`: the user opted in to a FOR ALL TABLES publication (see ``Prerequisites``).
    let allTables: Bool
    let initialSnapshot: Bool
    let heartbeatMillis: Int
    let retainedWALWarning: UInt64
    /// Rows per backfill chunk: held in memory between the two watermarks.
    let backfillChunkSize: Int
    /// `streaming`: ask PostgreSQL 14+ to send large transactions while they run (staged on local disk
    /// until their commit) instead of spilling them on the server and sending them at commit.
    let streaming: Bool
    /// Catch up through the SQL decoding interface when the slot is more than this much WAL behind
    /// at start; nil (`catch_up_threshold: off`) never does (see CatchUp.swift).
    let catchUpThreshold: UInt64?
    /// `upto_nchanges` of each catch-up batch.
    let catchUpBatch: Int
    /// `<data_dir>/sources/<name>`, where the runtime keeps this source's state.
    let stateDirectory: String

    public init(config: ConnectorConfig) throws {
        name = config.name
        url = try config.string("url")
        if let problem = connectionURLProblem(url) { throw config.error("url", "'\(redactURL(url))' \(problem)") }
        let defaultName = "sluice_" + config.name.lowercased().map { $0.isLetter || $0.isNumber ? String($0) : "_" }.joined()
        slot = try config.string("slot", default: defaultName)
        guard slot.count <= 63, slot.allSatisfy({ ($0.isLowercase && $0.isASCII) || $0.isNumber || $0 == "_" }) else {
            throw config.error("slot", "'\(slot)' is not a valid slot name: use lowercase letters, digits and _ (at most 63)")
        }
        publication = try config.string("publication", default: defaultName)
        guard publication.count <= 63 else { throw config.error("publication", "'\(publication)' is longer than 63 characters") }
        // `tables: all` (a bare word, not a list) opts in to a FOR ALL TABLES publication.
        if case let .scalar(text, _)? = config.value("tables"), text == "all" {
            allTables = true
            published = nil
        } else {
            allTables = false
            published = try PublishedTable.parseList(config.value("tables"), config: config)
        }
        initialSnapshot = try config.choice("snapshot", ["initial", "never"], default: "initial") == "initial"
        heartbeatMillis = try config.durationMillis("heartbeat_interval", default: 10_000, minimum: 100)
        retainedWALWarning = try config.bytes("retained_wal_warning", default: 1 << 30, minimum: 1 << 20)
        stateDirectory = DataDirectory(config.dataDirectory).sourceState(config.name)
        backfillChunkSize = try config.int("backfill_chunk_size", default: 20_000, range: 1...1_000_000)
        streaming = try config.bool("streaming", default: true)
        let catchUp = try config.string("catch_up_threshold", default: "64MB")
        if catchUp == "off" {
            catchUpThreshold = nil
        } else if let bytes = parseByteSize(catchUp) {
            guard bytes >= 1 << 20 else {
                throw config.error("catch_up_threshold", "'\(catchUp)' is too small: give at least 1MB, or off "
                                   + "(or leave the key out for the default, 64MB)", line: config.value("catch_up_threshold")?.line)
            }
            catchUpThreshold = bytes
        } else {
            throw config.error("catch_up_threshold", "'\(catchUp)' is neither a size such as 64MB or 1GB nor off",
                               line: config.value("catch_up_threshold")?.line)
        }
        catchUpBatch = try config.int("catch_up_batch", default: 250_000, range: 1_000...10_000_000)
        try config.rejectUnknownKeys()
    }

    public func check(logger: Logger) -> [CheckFinding] {
        do {
            let state: SourceState
            do {
                state = try SourceState.load(from: stateDirectory)
            } catch {
                return [CheckFinding(.error, "source \(name)", "\(error)")]
            }
            let sql = try connect { try PGConnection(url: url, applicationName: "sluice-check") }
            var findings = Prerequisites(source: self, sql: sql, state: state).findings()
            if let report = try? slotReport(sql), let warning = report.warning,
               report.details.contains(where: { $0.key == "wal_limit_in_seconds" && (Double($0.value) ?? .infinity) < WALForecast.warnWithin }) {
                findings.append(CheckFinding(.warning, "source \(name)", warning + " — within a day",
                                             fix: "keep `sluice run` running and caught up, raise max_slot_wal_keep_size, or drop the slot if it is abandoned"))
            }
            return findings
        } catch {
            return [CheckFinding(.error, "source \(name)", "\(error)",
                                 fix: (error as? PGError)?.connectionAdvice ?? PGError.connectionAdvice(for: "\(error)"))]
        }
    }

    public var verifyURL: String { url }
    public var verifySlot: String { slot }
    public var verifyPublication: String { publication }

    public func capturedTables() throws -> [TableName] {
        let sql = try connect { try PGConnection(url: url, applicationName: "sluice-verify") }
        let state = (try? SourceState.load(from: stateDirectory)) ?? SourceState()
        return try wrap { try Prerequisites(source: self, sql: sql, state: state).tablesInScope() }
    }

    public func backfillTables(_ requested: [String]) throws -> [String] {
        let sql = try connect { try PGConnection(url: url, applicationName: "sluice-backfill") }
        let state = (try? SourceState.load(from: stateDirectory)) ?? SourceState()
        let prerequisites = Prerequisites(source: self, sql: sql, state: state)
        let captured = try wrap { try prerequisites.tablesInScope() }
        let tables = try requested.isEmpty ? captured : requested.map { entry in
            do {
                return try TableName.parse(entry)
            } catch {
                throw ConnectorError.misconfigured("--table '\(entry)' \(error). Write schema.table; quote as SQL does: \"My Schema\".\"a.b\"")
            }
        }
        for table in tables {
            // A name that is not a table at all is a typo, not a table to add to the publication.
            let exists = try wrap { try sql.execute("SELECT to_regclass($1) IS NOT NULL", [table.sql]) }
            guard exists.string(0, 0) == "t" else {
                throw ConnectorError.misconfigured("""
                    table \(table) does not exist in \(redactURL(url))\(didYouMean(table.description, among: captured.map(\.description))); \
                    source \(name) captures: \(captured.map(\.description).joined(separator: ", "))
                    """)
            }
            guard captured.contains(table) else {
                throw ConnectorError.misconfigured("""
                    table \(table) is not captured by source \(name): it is not in its tables list or publication \
                    \(publication). Add it to tables: in the configuration (Sluice adds it to a publication it created), \
                    or ALTER PUBLICATION \(PGConnection.quoteIdentifier(publication)) ADD TABLE \(table.sql);
                    """)
            }
            let key = try wrap {
                try sql.execute("SELECT true, to_regclass($1) IS NOT NULL", [table.sql])
            }
            guard key.string(0, 1) == "t" else {
                throw ConnectorError.misconfigured("table \(table) does not exist in \(redactURL(url))")
            }
            let read = try wrap {
                try sql.execute("SELECT has_table_privilege(to_regclass($1), 'SELECT'), current_user", [table.sql])
            }
            guard read.string(0, 0) == "t" else {
                let role = read.string(0, 1) ?? "?"
                throw ConnectorError.misconfigured("""
                    role \(role) may not read table \(table), so it cannot be copied. \
                    Fix: GRANT SELECT ON \(table.sql) TO \(PGConnection.quoteIdentifier(role));
                    """)
            }
        }
        return tables.map(\.description)
    }

    public func tablesWithoutOldRows(among wanted: (TableName) -> Bool) throws -> [(table: TableName, fix: String)] {
        let sql = try connect { try PGConnection(url: url, applicationName: "sluice-check", connectTimeoutSeconds: 5) }
        let state = (try? SourceState.load(from: stateDirectory)) ?? SourceState()
        return try wrap { try Prerequisites(source: self, sql: sql, state: state).tablesWithoutFullIdentity(among: wanted) }
            .map { ($0, "ALTER TABLE \($0.description) REPLICA IDENTITY FULL;") }
    }

    public func currentSchemas(among wanted: (TableName) -> Bool) throws -> [RelationSchema] {
        let sql = try connect { try PGConnection(url: url, applicationName: "sluice-check", connectTimeoutSeconds: 5) }
        let state = (try? SourceState.load(from: stateDirectory)) ?? SourceState()
        return try wrap {
            try Prerequisites(source: self, sql: sql, state: state).tablesInScope().filter(wanted).compactMap { try copySource(of: $0, on: sql)?.schema }
        }
    }

    public func preflight() throws {
        let sql: PGConnection
        do {
            sql = try connect { try PGConnection(url: url, applicationName: "sluice-preflight", connectTimeoutSeconds: 5) }
        } catch ConnectorError.transient {
            return
        }
        let state = (try? SourceState.load(from: stateDirectory)) ?? SourceState()
        do {
            try Prerequisites(source: self, sql: sql, state: state).requireAll()
        } catch let error as PGError where error.isTransient {
            return
        }
    }

    public func status() -> SourceStatus {
        let sql: PGConnection
        do {
            sql = try PGConnection(url: url, applicationName: "sluice-status", connectTimeoutSeconds: 5)
        } catch {
            // The driver's error already says "cannot connect to" the (redacted) URL.
            return SourceStatus(details: [("slot", slot)], error: "\(error)")
        }
        do {
            return try slotReport(sql)
        } catch {
            return SourceStatus(details: [("slot", slot)], error: "cannot read slot \(slot) at \(redactURL(url)): \(error)")
        }
    }

    /// The slot's confirmed position and the WAL it retains, with a warning past `retained_wal_warning`
    /// or when, at its growth rate, the retained WAL would reach its limit within a day (``WALForecast``).
    func slotReport(_ sql: PGConnection) throws -> SourceStatus {
        let result = try sql.execute("""
            SELECT s.active, s.confirmed_flush_lsn::text, pg_current_wal_lsn()::text,
                   pg_wal_lsn_diff(pg_current_wal_lsn(), s.restart_lsn)::bigint, s.wal_status, s.safe_wal_size::text,
                   (SELECT setting FROM pg_settings WHERE name = 'data_directory')
            FROM pg_replication_slots s WHERE s.slot_name = $1
            """, [slot])
        guard result.rowCount == 1 else {
            return SourceStatus(details: [("slot", slot), ("slot_exists", "false")])
        }
        let retained = UInt64(max(0, Int64(result.string(0, 3) ?? "0") ?? 0))
        var details: [(key: String, value: String)] = [
            ("slot", slot), ("slot_exists", "true"), ("slot_active", result.string(0, 0) == "t" ? "true" : "false"),
            ("confirmed_flush_lsn", result.string(0, 1) ?? ""), ("current_wal_lsn", result.string(0, 2) ?? ""),
            ("wal_status", result.string(0, 4) ?? ""),
        ]
        // This machine's clock, as the daemon's samples use.
        let now = Date().timeIntervalSince1970
        var headroom: [(limit: String, bytes: UInt64)] = []
        if let safe = result.string(0, 5).flatMap({ Int64($0) }) { headroom.append(("max_slot_wal_keep_size", UInt64(max(0, safe)))) }
        if let free = localDiskFree(dataDirectory: result.string(0, 6)) { headroom.append(("the disk", free)) }
        let forecast = WALForecast(samples: WALSamples.read(stateDirectory), now: now, retained: retained, headroom: headroom)
        if let growth = forecast.growth { details.append(("wal_growth_bytes_per_second", String(format: "%.0f", growth))) }
        if let seconds = forecast.secondsToLimit, let limit = forecast.limit {
            details.append(("wal_limit", limit))
            details.append(("wal_limit_in_seconds", String(format: "%.0f", seconds)))
        }
        if let summary = forecast.summary { details.append(("wal_forecast", summary)) }
        var status = SourceStatus(details: details, retainedBytes: retained, retainedWarningBytes: retainedWALWarning)
        if retained > retainedWALWarning {
            status.warning = "slot \(slot) retains \(retained) bytes of WAL, more than retained_wal_warning (\(retainedWALWarning))"
        } else if forecast.isNear, let summary = forecast.summary {
            status.warning = "slot \(slot) retains WAL growing at \(summary) (at this rate)"
        }
        return status
    }

    /// Free bytes on the disk of the server's WAL, when the server runs on this machine and lets the
    /// role see its data directory (superuser or pg_read_all_settings); nil otherwise.
    private func localDiskFree(dataDirectory: String?) -> UInt64? {
        guard let dataDirectory, !dataDirectory.isEmpty else { return nil }
        let host = URLComponents(string: url)?.host ?? ""
        guard ["", "localhost", "127.0.0.1", "::1", "[::1]"].contains(host) || host.hasPrefix("/") || host.hasPrefix("%2F") else { return nil }
        var stats = statvfs()
        guard statvfs(dataDirectory + "/pg_wal", &stats) == 0 else { return nil }
        return UInt64(stats.f_bavail) * UInt64(stats.f_frsize)
    }

    /// Records the retained WAL the daemon just read, for the growth rate ``WALForecast`` measures.
    func recordRetained(_ status: SourceStatus) {
        guard let retained = status.retainedBytes else { return }
        WALSamples.record(WALSamples.Sample(time: Date().timeIntervalSince1970, retained: retained), stateDirectory)
    }

    public func run(into writer: TransactionWriter, context: SourceContext) throws {
        let logger = context.logger
        let sql = try connect { try PGConnection(url: url) }
        var state = try SourceState.load(from: context.stateDirectory)
        let prerequisites = Prerequisites(source: self, sql: sql, state: state)
        try wrap { try prerequisites.requireAll() }
        let scope = try wrap { try prerequisites.tablesInScope() }
        let replication = try connect { try ReplicationConnection(url: url) }
        let identity = try wrap { try replication.identifySystem() }
        if let known = state.systemID, known != identity.systemID {
            throw ConnectorError.misconfigured("""
                source '\(name)': the database at \(redactURL(url)) is cluster \(identity.systemID), but this data \
                directory holds a topic captured from cluster \(known). Use a new data_dir for a different database.
                """)
        }
        if state.systemID == nil {
            state.systemID = identity.systemID
            try state.save(to: context.stateDirectory)
        }
        try ensurePublication(sql, state: &state, context: context, resuming: writer.lastCommit != nil)

        let start: UInt64
        if let last = writer.lastCommit {
            guard let slotInfo = try wrap({ try slotStatus(sql) }) else {
                throw ConnectorError.fatal("""
                    source '\(name)': replication slot '\(slot)' is missing, but topic '\(context.name)' holds \
                    transactions up to LSN \(last.commit.endLSN). Changes made since then are lost to the slot, so \
                    Sluice will not start from scratch silently. To re-snapshot: stop sluice, delete \
                    \(context.stateDirectory) and the topic directory (data_dir/topics/\(context.name)), empty the \
                    target tables and their sluice_offsets rows, then run again.
                    """)
            }
            if slotInfo.active { throw ConnectorError.transient("replication slot '\(slot)' is in use by another process") }
            try requireSlotNotAhead(slotInfo, of: last, state: state, writer: writer, context: context)
            start = last.commit.endLSN.rawValue
        } else {
            start = try createSlotAndSnapshot(sql: sql, replication: replication, state: &state,
                                              scope: scope, writer: writer, context: context)
        }

        if state.tracksConfirms != true {
            state.tracksConfirms = true
            try state.save(to: context.stateDirectory)
        }
        // Not running while the topic cannot make commits durable (a broker still refusing them).
        try writer.writer.checkHealth()
        context.report(.running)
        let stream = try StreamLoop(source: self, replication: replication, catalog: RelationCatalog(connection: sql),
                                sql: sql, writer: writer, context: context,
                                tableFilter: tables.map(Set.init), state: state)
        try stream.catchUp()
        let from = max(start, writer.lastCommit?.commit.endLSN.rawValue ?? 0)
        // Protocol version 2 (PostgreSQL 14) brings streaming of in-progress transactions.
        let streamsInProgress = try streaming && wrap { Int(try sql.execute("SHOW server_version_num").string(0, 0) ?? "") ?? 0 } >= 140_000
        try wrap {
            try replication.startReplication(slot: slot, start: from, publications: [publication],
                                             protocolVersion: streamsInProgress ? 2 : 1, streaming: streamsInProgress)
        }
        logger.info("streaming", metadata: ["slot": "\(slot)", "from": "\(formatLSN(from))",
                                            "publication": "\(publication)", "in_progress": "\(streamsInProgress)"])
        try stream.run()
    }

    /// A slot that confirmed more than the topic holds (and more than this source recorded confirming
    /// past it) means transactions were confirmed and then lost from the topic: damaged or restored
    /// files. The slot cannot send them again, so capturing on would skip them without a word.
    func requireSlotNotAhead(_ slotInfo: SlotStatus, of last: CommittedPosition, state: SourceState,
                             writer: TransactionWriter, context: SourceContext) throws {
        var allowed = last.commit.endLSN.rawValue
        if let beyond = state.confirmedBeyond, beyond.offset == last.offset { allowed = max(allowed, beyond.lsn) }
        guard state.tracksConfirms == true, let confirmed = slotInfo.confirmedFlush, confirmed > allowed else {
            if writer.writer.topic.damage != nil {
                try writer.writer.recordDamage(nil)
                context.logger.notice("topic \(context.name) holds what slot \(slot) confirmed again: no longer damaged")
            }
            return
        }
        let reason = """
            replication slot '\(slot)' has confirmed LSN \(formatLSN(confirmed)), but topic '\(context.name)' ends at \
            LSN \(formatLSN(allowed)) (offset \(last.offset)): the transactions in LSN range \(formatLSN(allowed))–\
            \(formatLSN(confirmed)) were confirmed to PostgreSQL and then lost from the topic (damaged or restored files \
            in \(topicDirectory(context))), and the slot cannot send them again
            """
        try? writer.writer.recordDamage(reason)
        throw ConnectorError.fatal("""
            source '\(name)': \(reason). Sluice will not capture over the gap. Either restore the topic directory from \
            a copy that holds LSN \(formatLSN(confirmed)), or re-snapshot: stop sluice, drop the slot \
            (SELECT pg_drop_replication_slot('\(slot)');), delete \(context.stateDirectory) and the topic directory, \
            empty the target tables and their sluice_offsets rows, then run again.
            """)
    }

    /// `<data_dir>/topics/<topic>`, for messages.
    func topicDirectory(_ context: SourceContext) -> String {
        DataDirectory(URL(fileURLWithPath: context.stateDirectory).deletingLastPathComponent().deletingLastPathComponent().path)
            .topic(context.name)
    }

    // MARK: Errors

    /// Runs `body`, turning connection failures into transient errors worth a retry.
    @discardableResult
    func wrap<T>(_ body: () throws -> T) throws -> T {
        do {
            return try body()
        } catch let error as PGError where error.isTransient {
            throw ConnectorError.transient("source '\(name)': \(error.message)")
        } catch let error as PGError {
            throw ConnectorError.fatal("source '\(name)': \(error)")
        } catch let error as ConnectorError {
            throw error
        }
    }

    func connect<T>(_ body: () throws -> T) throws -> T {
        do {
            return try body()
        } catch let error as PGError {
            // An unreachable server is retried; a refused login or a missing database is not.
            let permanent = ["password authentication failed", "does not exist", "no pg_hba.conf entry",
                             "must be superuser or replication role", "permission denied", "invalid integer value",
                             "invalid connection option", "invalid sslmode value"]
            if permanent.contains(where: { error.message.contains($0) }) || error.isTLSFailure {
                throw ConnectorError.misconfigured("source '\(name)': \(error.message)")
            }
            throw ConnectorError.transient("source '\(name)': \(error.message)")
        }
    }
}

import Foundation
import Logging
import SluiceKit
import SluiceWire

/// Applies topics to a PostgreSQL database, exactly once: each batch of whole source transactions
/// is one target transaction that also upserts the sink's row in `public.sluice_offsets`.
///
/// Missing schemas and tables are created with the source's column types and primary key; columns
/// added or dropped on the source are added or dropped here. Statements are prepared once per table
/// and sent in libpq pipeline mode, so a batch costs a round trip per few hundred rows, not per row.
///
/// Batches commit with `synchronous_commit = off`, as a native subscription's apply worker does: the
/// next batch need not wait for the target's WAL flush. A target crash can lose the last commits, with
/// their `sluice_offsets` rows, and they are applied again from the topic; so the positions count for
/// retention only once the target reports its WAL flushed past their commit (`durablePositions`).
public final class PostgresSink: VerifiableSink {
    public static let typeName = "postgres"

    let name: String
    let url: String
    private var pipeline: PGPipeline?
    private var tables: [TableKey: PostgresTable] = [:]
    private var statementCounter = 0
    private var bulk: BulkLoad?
    private var changes: ChangeRun?
    private var logger = Logger(label: "sluice")
    private lazy var enumTypes = EnumTypes(url: url, applicationName: "sluice-sink-\(name)-types")
    private let aggregateDefinitions: [AggregateDefinition]
    private var aggregates: AggregateMaintainer?
    private var aggregateStore: PostgresAggregates?
    private var unflushed = UnflushedCommits()

    struct TableKey: Hashable {
        let topic: String
        let relation: UInt32
    }

    public var verifyTarget: VerifyTarget { .postgres(url: url) }

    public init(config: ConnectorConfig) throws {
        name = config.name
        url = try config.string("url")
        if let problem = connectionURLProblem(url) { throw config.error("url", "'\(redactURL(url))' \(problem)") }
        aggregateDefinitions = try AggregateDefinition.parseAll(config)
        for definition in aggregateDefinitions {
            // PostgreSQL cuts longer names without a word: two helper tables or columns would become one.
            let table = definition.table.table
            let names = [table, "_sluice_\(table)_rows"]
                + definition.measures.flatMap { ["_sluice_\(table)_\($0.name)", "_sluice_\($0.name)_n", "_sluice_\($0.name)_sum"] }
            if let long = names.first(where: { $0.utf8.count > 63 }) {
                throw ConfigError(file: config.file, key: definition.key, message: """
                    \(definition.table) needs the name \(long) (\(long.utf8.count) bytes), longer than PostgreSQL's 63: \
                    shorten the aggregate's table name or the measure's
                    """)
            }
        }
        try config.rejectUnknownKeys()
    }

    public func open(context: SinkContext) throws -> [String: SinkPosition] {
        logger = context.logger
        return try guarded {
            let connection = try PGConnection(url: url, applicationName: "sluice-sink-\(name)")
            try Self.createConcurrently(connection, """
                CREATE TABLE IF NOT EXISTS public.sluice_offsets (
                    sink text NOT NULL, topic text NOT NULL, "offset" bigint NOT NULL, lsn pg_lsn NOT NULL,
                    commit_time timestamptz, updated_at timestamptz NOT NULL DEFAULT now(),
                    PRIMARY KEY (sink, topic))
                """)
            if !aggregateDefinitions.isEmpty { try PostgresAggregates.createStateTable(connection) }
            let positions = try storedPositions(connection)
            // Read from a target that may have acknowledged them before they were durable.
            unflushed.reset()
            let wal = try walPositions(connection.execute(Self.walQuery))
            unflushed.committed(Array(positions.values), walEnd: wal.inserted)
            unflushed.flushed(through: wal.flushed)
            let pipeline = try PGPipeline(connection: connection)
            try pipeline.prepare("sluice_offset", """
                INSERT INTO public.sluice_offsets (sink, topic, "offset", lsn, commit_time, updated_at)
                VALUES ($1, $2, $3, $4, to_timestamp($5::double precision / 1000000), now())
                ON CONFLICT (sink, topic) DO UPDATE SET "offset" = excluded."offset", lsn = excluded.lsn,
                    commit_time = excluded.commit_time, updated_at = excluded.updated_at
                """)
            try pipeline.sync()
            self.pipeline = pipeline
            tables.removeAll()
            if !aggregateDefinitions.isEmpty {
                let store = PostgresAggregates(pipeline: pipeline, sink: name)
                let maintainer = AggregateMaintainer(definitions: aggregateDefinitions, sink: name, logger: logger)
                try maintainer.reset(store: store)
                (aggregates, aggregateStore) = (maintainer, store)
            }
            return positions
        }
    }

    /// `CREATE … IF NOT EXISTS` is not safe against a concurrent twin (two sinks into one database
    /// starting together): the loser fails on the catalog's unique index although the object now exists.
    static func createConcurrently(_ connection: PGConnection, _ statement: String) throws {
        do {
            try connection.execute(statement)
        } catch let error as PGError where error.sqlState == "23505" || error.sqlState == "42P07" || error.sqlState == "42710" {
            try connection.execute(statement)
        }
    }

    private func storedPositions(_ connection: PGConnection) throws -> [String: SinkPosition] {
        let result = try connection.execute(
            "SELECT topic, \"offset\", lsn::text, (extract(epoch from commit_time) * 1000000)::bigint FROM public.sluice_offsets WHERE sink = $1",
            [name])
        var positions: [String: SinkPosition] = [:]
        for row in 0..<result.rowCount {
            guard let topic = result.string(row, 0), let offset = result.string(row, 1).flatMap({ UInt64($0) }) else { continue }
            positions[topic] = SinkPosition(topic: topic, offset: offset,
                                            lsn: result.string(row, 2).flatMap { LSN($0) } ?? .zero,
                                            commitTime: result.string(row, 3).flatMap { Micros($0) } ?? 0)
        }
        return positions
    }

    public func readPositions() throws -> [String: SinkPosition]? {
        try guarded {
            let connection = try PGConnection(url: url, applicationName: "sluice-status")
            guard try connection.execute("SELECT to_regclass('public.sluice_offsets')").string(0, 0) != nil else { return nil }
            return try storedPositions(connection)
        }
    }

    public func check(logger: Logger) -> [CheckFinding] {
        let subject = "sink \(name)"
        do {
            let connection = try PGConnection(url: url, applicationName: "sluice-check")
            var findings = [CheckFinding(.ok, subject, "connected to \(redactURL(url)) (server \(connection.serverVersion / 10000))"),
                            CheckFinding(.ok, subject, connection.tls.summary)]
            if let warning = connectionTLSWarning(url) {
                findings.append(CheckFinding(.warning, subject, warning, fix: "add sslmode=verify-full&sslrootcert=<the server's CA file> to the url"))
            }
            findings += try privilegeFindings(connection, subject: subject)
            return findings
        } catch {
            let text = "\(error)"
            return [CheckFinding(.error, subject, text.hasPrefix("cannot connect to") ? text : "cannot connect to \(redactURL(url)): \(text)",
                                 fix: (error as? PGError)?.connectionAdvice ?? PGError.connectionAdvice(for: "\(error)"))]
        }
    }

    /// What `run` will need at the target: its offsets table (created in public, or written if it
    /// exists), new tables in public, and schemas for tables elsewhere.
    private func privilegeFindings(_ connection: PGConnection, subject: String) throws -> [CheckFinding] {
        let row = try connection.execute("""
            SELECT current_user, rolsuper, current_database(),
                   has_database_privilege(current_database(), 'CREATE'),
                   has_schema_privilege('public', 'USAGE') AND has_schema_privilege('public', 'CREATE'),
                   to_regclass('public.sluice_offsets') IS NOT NULL,
                   CASE WHEN to_regclass('public.sluice_offsets') IS NULL THEN NULL
                        ELSE has_table_privilege('public.sluice_offsets', 'SELECT, INSERT, UPDATE') END
            FROM pg_roles WHERE rolname = current_user
            """)
        let role = row.string(0, 0) ?? "?", quoted = PGConnection.quoteIdentifier(role)
        if row.string(0, 1) == "t" { return [CheckFinding(.ok, subject, "role \(role) is a superuser at the target")] }
        let database = row.string(0, 2) ?? "?"
        let createsInPublic = row.string(0, 4) == "t"
        var findings: [CheckFinding] = []
        if row.string(0, 5) == "t" {
            if row.string(0, 6) != "t" {
                findings.append(CheckFinding(.error, subject, "role \(role) may not read and write public.sluice_offsets, where this sink keeps its position",
                                             fix: "GRANT SELECT, INSERT, UPDATE ON public.sluice_offsets TO \(quoted);"))
            }
        } else if !createsInPublic {
            findings.append(CheckFinding(.error, subject, "role \(role) may not create public.sluice_offsets, where this sink keeps its position (no CREATE on schema public)",
                                         fix: "GRANT USAGE, CREATE ON SCHEMA public TO \(quoted); -- or create public.sluice_offsets for it (see README)"))
        }
        if !createsInPublic && row.string(0, 5) == "t" {
            findings.append(CheckFinding(.warning, subject, "role \(role) may not create tables in schema public: each table must exist at the target already",
                                         fix: "GRANT USAGE, CREATE ON SCHEMA public TO \(quoted);"))
        }
        if row.string(0, 3) != "t" {
            findings.append(CheckFinding(.warning, subject, """
                role \(role) may not create schemas in database \(database): tables of schemas other than public need their \
                schema to exist at the target with CREATE granted
                """, fix: "GRANT CREATE ON DATABASE \(PGConnection.quoteIdentifier(database)) TO \(quoted);"))
        }
        if findings.isEmpty { findings.append(CheckFinding(.ok, subject, "role \(role) may create and write what this sink needs")) }
        return findings
    }

    public func beginBatch() throws {
        try guarded {
            try pipeline!.send("BEGIN")
            try pipeline!.send("SET LOCAL synchronous_commit TO off")
        }
    }

    /// Read after a commit: the insert position is at or past the commit record's end.
    static let walQuery = "SELECT pg_current_wal_insert_lsn()::text, pg_current_wal_flush_lsn()::text"

    private func walPositions(_ result: PGResult) throws -> (inserted: LSN, flushed: LSN) {
        guard let inserted = result.string(0, 0).flatMap({ LSN($0) }), let flushed = result.string(0, 1).flatMap({ LSN($0) }) else {
            throw ConnectorError.fatal("sink \(name): the target answered \(Self.walQuery) without two LSNs")
        }
        return (inserted, flushed)
    }

    public func durablePositions() -> [String: SinkPosition]? { unflushed.durable }

    public func beginTransaction(_ begin: BeginRecord, topic: String, offset: UInt64) throws {
        aggregates?.beginTransaction(commitTime: begin.commitTime)
    }

    public func prepare(_ relation: RelationSchema, topic: String) throws {
        if let aggregates, let aggregateStore { try guarded { try aggregates.prepare(relation, store: aggregateStore) } }
        let key = TableKey(topic: topic, relation: relation.id)
        if let table = tables[key], table.schema == relation { return }
        if (relation.schema == "public" && ["sluice_offsets", "sluice_aggregates"].contains(relation.table)) || relation.table.hasPrefix("_sluice_") {
            // Mirroring it would rewrite the sink's own positions (or an aggregate's state) with the source's rows.
            let table = TableName(schema: relation.schema, table: relation.table)
            throw ConnectorError.fatal("""
                sink \(name): \(table) has the name of a table the sink keeps for its own use (public.sluice_offsets, \
                public.sluice_aggregates, _sluice_*); write it elsewhere on this sink with rename: {\(table): schema.other_name}, \
                or leave it out with tables: ["!\(table)"]
                """)
        }
        try guarded {
            try finishBulk()
            statementCounter += 1
            tables[key] = try PostgresTable(pipeline: pipeline!, schema: relation, statementPrefix: "s\(statementCounter)_",
                                            enumTypes: enumTypes, logger: logger)
        }
    }

    public func apply(_ change: Change) throws {
        guard let table = tables[TableKey(topic: change.topic, relation: change.relation.id)] else {
            throw ConnectorError.fatal("sink \(name): change to \(change.relation.qualifiedName) before its schema")
        }
        try guarded {
            let isInsert = change.operation == .insert || change.operation == .read
            if let aggregates, let aggregateStore {
                // Updates, deletes and truncates may read aggregate state: no COPY may be open then.
                if !isInsert { try finishInserts() }
                try aggregates.apply(change, store: aggregateStore)
            }
            // Updates and deletes of a keyed table, and the inserts among them, gather into a run applied set-wise.
            if table.hasKey && change.operation != .truncate && (!isInsert || changes?.table === table) {
                try finishInserts()
                if changes?.table !== table {
                    try finishChanges()
                    changes = ChangeRun(table: table)
                }
                switch changes!.add(change) {
                case .added: return
                case .full:
                    try finishChanges()
                    changes = ChangeRun(table: table)
                    if case .added = changes!.add(change) { return }
                    try finishChanges()
                case .alone:
                    try finishChanges()
                }
                try table.apply(change)
                return
            }
            try finishChanges()
            if isInsert, let new = change.new {
                if bulk?.table !== table {
                    try finishBulk()
                    try table.prepareStaging()
                    bulk = BulkLoad(table: table)
                }
                if try !bulk!.add(new, pipeline: pipeline!) {
                    try finishBulk()
                    bulk = BulkLoad(table: table)
                    _ = try bulk!.add(new, pipeline: pipeline!)
                }
                return
            }
            try finishBulk()
            try table.apply(change)
        }
    }

    /// Ends the open run of inserts or of changes, whichever it is.
    private func finishBulk() throws {
        try finishChanges()
        try finishInserts()
    }

    private func finishInserts() throws {
        guard var run = bulk else { return }
        bulk = nil
        try run.finish(pipeline: pipeline!)
    }

    private func finishChanges() throws {
        guard var run = changes else { return }
        changes = nil
        try run.finish(pipeline: pipeline!)
    }

    public func commitBatch(positions: [SinkPosition]) throws {
        try guarded {
            try finishBulk()
            if let aggregates, let aggregateStore { try aggregates.flush(store: aggregateStore) }
            var parameters = PGParameters()
            for position in positions {
                parameters.removeAll()
                parameters.append(name)
                parameters.append(position.topic)
                parameters.append(String(position.offset))
                parameters.append(position.lsn.description)
                parameters.append(String(position.commitTime))
                try pipeline!.send(prepared: "sluice_offset", parameters)
            }
            Failpoint.hit("sink.postgres.before_commit")
            try pipeline!.send("COMMIT")
            let wal = try walPositions(pipeline!.query(Self.walQuery))
            unflushed.committed(positions, walEnd: wal.inserted)
            unflushed.flushed(through: wal.flushed)
            Failpoint.hit("sink.postgres.after_commit")
        }
    }

    public func probe() throws {
        try guarded {
            guard !unflushed.isEmpty else { _ = try pipeline!.query("SELECT 1"); return }
            unflushed.flushed(through: try walPositions(pipeline!.query(Self.walQuery)).flushed)
        }
    }

    public func rollbackBatch() {
        bulk = nil
        changes = nil
        guard let pipeline, pipeline.connection.isConnected else { return }
        try? pipeline.send("ROLLBACK")
        try? pipeline.sync()
    }

    public func close() {
        bulk = nil
        changes = nil
        aggregates = nil
        aggregateStore = nil
        tables.removeAll()
        enumTypes.close()
        pipeline = nil
    }

    /// Connection failures and server restarts are retried; other errors (a type the target cannot
    /// take, a constraint the user added) stop the sink with the server's message.
    private func guarded<T>(_ body: () throws -> T) throws -> T {
        do {
            return try body()
        } catch let error as PGError {
            if error.isTLSFailure { throw ConnectorError.misconfigured("sink \(name): \(error.message)") }
            // Refused credentials or privileges are not outages: checked before the connection-lost rule.
            let permanent = ["password authentication failed", "does not exist", "no pg_hba.conf entry", "permission denied"]
            if error.sqlState == "42501" {
                let role = URLComponents(string: url)?.user ?? ProcessInfo.processInfo.environment["PGUSER"] ?? "the url's user"
                let fix = Grants.fix(for: error.message, role: role).map { " Fix: \($0)" } ?? " Grant the role what it needs (see sluice check)."
                throw ConnectorError.misconfigured("target \(redactURL(url)) refused: \(error.message).\(fix)")
            }
            if error.sqlState.map({ $0.hasPrefix("28") }) ?? false
                || (error.connectionLost && permanent.contains(where: { error.message.contains($0) })) {
                throw ConnectorError.misconfigured("""
                    authentication or authorization refused by \(redactURL(url)): \(error.message). Fix the user, password \
                    or grants in the url (or the target's pg_hba.conf)
                    """)
            }
            if error.isTransient || error.connectionLost { throw ConnectorError.transient("\(error.message)") }
            // A column or table dropped at the target by hand: the next attempt prepares the tables again,
            // which adds it back; the rows it held there are gone until a backfill copies them.
            if error.sqlState == "42703" || error.sqlState == "42P01" {
                throw ConnectorError.transient("""
                    \(error.message) at the target (dropped there by hand?): the sink creates it again and retries; rows the \
                    target held in it are gone until `sluice verify --repair` (or `sluice backfill --table …`) copies them again
                    """)
            }
            // Another writer (a second sink into this database) created the same table, schema or type at the
            // same moment: IF NOT EXISTS does not cover that race; the next attempt finds the object there.
            let catalogRace = ["42P07", "42P06", "42710"].contains(error.sqlState ?? "")
                || (error.sqlState == "23505" && (error.message.contains("pg_type_") || error.message.contains("pg_namespace_")
                                                  || error.message.contains("pg_class_")))
            if catalogRace { throw ConnectorError.transient("\(error.message) (created concurrently; retrying)") }
            throw ConnectorError.fatal("sink \(name) (\(redactURL(url))): \(error)")
        }
    }
}

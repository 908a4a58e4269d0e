import Foundation
import Logging
import SluiceKit
import SluiceWire

/// Applies topics to an SQLite file (WAL mode), exactly once: each batch of whole source
/// transactions commits in one SQLite transaction together with the sink's row in `sluice_offsets`.
///
/// Tables are named `T` for `public.T` and `schema_T` otherwise; integers are stored as INTEGER,
/// floats as REAL, booleans as 0/1, bytea as BLOB and everything else as TEXT in PostgreSQL's text
/// form (timestamptz in UTC).
public final class SQLiteSink: VerifiableSink {
    public static let typeName = "sqlite"
    /// Windows and groups an aggregate folds before writing them inside the batch (bounds memory).
    static let aggregateWriteAhead = 16_384

    let name: String
    let path: String
    private var database: SQLiteDatabase?
    private var tables: [TableKey: SQLiteTable] = [:]
    /// SQLite table (lower-cased: SQLite ignores ASCII case in names) → the source table written there.
    private var targetNames: [String: TableName] = [:]
    private var saveOffset: SQLiteStatement?
    private var inBatch = false
    private var logger = Logger(label: "sluice")
    private let aggregateDefinitions: [AggregateDefinition]
    private var aggregates: AggregateMaintainer?
    private var aggregateStore: SQLiteAggregates?

    struct TableKey: Hashable {
        let topic: String
        let relation: UInt32
    }

    public var verifyTarget: VerifyTarget { .sqlite(path: path) }

    public init(config: ConnectorConfig) throws {
        name = config.name
        path = config.resolvePath(try config.string("path"))
        aggregateDefinitions = try AggregateDefinition.parseAll(config)
        for definition in aggregateDefinitions {
            // SQLite's column names ignore case: "n" and "N" would be one column of the aggregate table.
            var seen: [String: String] = [:]
            for name in ["window_start", "window_end"] + definition.groupBy + definition.measures.map(\.name) {
                if let earlier = seen.updateValue(name, forKey: name.lowercased()) {
                    throw ConfigError(file: config.file, key: definition.key, message: """
                        \(definition.table) would have columns \(earlier) and \(name), one column in SQLite (its names ignore \
                        case): rename the measure
                        """)
                }
            }
        }
        try config.rejectUnknownKeys()
    }

    public func open(context: SinkContext) throws -> [String: SinkPosition] {
        logger = context.logger
        return try guarded {
            let directory = (path as NSString).deletingLastPathComponent
            if !directory.isEmpty { try? FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true) }
            Self.ownerOnlyIfNew(path)
            let database = try SQLiteDatabase(path: path)
            try database.execute("PRAGMA page_size=16384; PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;")
            try database.execute("""
                CREATE TABLE IF NOT EXISTS sluice_offsets (
                    sink TEXT NOT NULL, topic TEXT NOT NULL, "offset" INTEGER NOT NULL, lsn TEXT NOT NULL,
                    commit_time TEXT, updated_at TEXT NOT NULL, PRIMARY KEY (sink, topic))
                """)
            let positions = try storedPositions(database)
            saveOffset = try database.prepare("""
                INSERT INTO sluice_offsets (sink, topic, "offset", lsn, commit_time, updated_at)
                VALUES (?1, ?2, ?3, ?4, ?5, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
                ON CONFLICT (sink, topic) DO UPDATE SET "offset" = excluded."offset", lsn = excluded.lsn,
                    commit_time = excluded.commit_time, updated_at = excluded.updated_at
                """)
            self.database = database
            tables.removeAll()
            if !aggregateDefinitions.isEmpty {
                try SQLiteAggregates.createStateTable(database)
                let store = SQLiteAggregates(database: database, sink: name)
                let maintainer = AggregateMaintainer(definitions: aggregateDefinitions, sink: name, logger: logger)
                maintainer.writeAhead = Self.aggregateWriteAhead
                try maintainer.reset(store: store)
                (aggregates, aggregateStore) = (maintainer, store)
            }
            return positions
        }
    }

    /// A target file Sluice makes into a database is the owner's only, also when it exists empty
    /// (as `sqlite3 FILE` leaves it when the file is polled before the sink opens it). SQLite gives
    /// its -wal and -shm files the database file's mode.
    static func ownerOnlyIfNew(_ path: String) {
        var info = stat()
        guard stat(path, &info) != 0 || info.st_size == 0 else { return }
        for file in [path, path + "-wal", path + "-shm"] {
            let fd = file == path ? Glibc.open(file, O_WRONLY | O_CREAT | O_CLOEXEC, 0o600) : Glibc.open(file, O_WRONLY | O_CLOEXEC)
            guard fd >= 0 else { continue }
            fchmod(fd, 0o600)
            Glibc.close(fd)
        }
    }

    private func storedPositions(_ database: SQLiteDatabase) throws -> [String: SinkPosition] {
        var positions: [String: SinkPosition] = [:]
        for row in try database.query(
            "SELECT topic, \"offset\", lsn, commit_time FROM sluice_offsets WHERE sink = ?", [name]) {
            guard let topic = row[0], let offset = row[1].flatMap({ UInt64($0) }) else { continue }
            positions[topic] = SinkPosition(topic: topic, offset: offset, lsn: row[2].flatMap { LSN($0) } ?? .zero,
                                            commitTime: row[3].flatMap { Micros($0) } ?? 0)
        }
        return positions
    }

    public func readPositions() throws -> [String: SinkPosition]? {
        guard FileManager.default.fileExists(atPath: path) else { return nil }
        return try guarded {
            let database = try SQLiteDatabase(path: path, readOnly: true)
            guard try !database.query("SELECT 1 FROM sqlite_master WHERE name = 'sluice_offsets'").isEmpty else { return nil }
            return try storedPositions(database)
        }
    }

    public func check(logger: Logger) -> [CheckFinding] {
        let directory = (path as NSString).deletingLastPathComponent
        let subject = "sink \(name)"
        if FileManager.default.fileExists(atPath: path) {
            guard FileManager.default.isWritableFile(atPath: path) else {
                return [CheckFinding(.error, subject, "\(path) is not writable", fix: "chmod u+w \(path)")]
            }
            // Damaged, or another kind of file: run would fail this sink at its first batch.
            do {
                _ = try SQLiteDatabase(path: path, readOnly: true).query("SELECT count(*) FROM sqlite_master")
            } catch {
                return [CheckFinding(.error, subject, "\(path) is not a readable SQLite database: \(error)",
                                     fix: "restore it from a copy, or move it aside: the sink then builds a new one from the topic")]
            }
            return [CheckFinding(.ok, subject, "\(path) exists and is writable")]
        }
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory), isDirectory.boolValue {
            return FileManager.default.isWritableFile(atPath: directory)
                ? [CheckFinding(.ok, subject, "\(path) will be created")]
                : [CheckFinding(.error, subject, "cannot create \(path): \(directory) is not writable")]
        }
        return [CheckFinding(.ok, subject, "\(path) will be created (with its folder \(directory))")]
    }

    public func beginBatch() throws {
        try guarded {
            try database!.execute("BEGIN IMMEDIATE")
            inBatch = true
        }
    }

    public func beginTransaction(_ begin: BeginRecord, topic: String, offset: UInt64) throws {
        aggregates?.beginTransaction(commitTime: begin.commitTime)
    }

    public func prepare(_ relation: RelationSchema, topic: String) throws {
        if let aggregates, let aggregateStore { try guarded { try aggregates.prepare(relation, store: aggregateStore) } }
        let key = TableKey(topic: topic, relation: relation.id)
        if let table = tables[key], table.schema == relation { return }
        try claimTargetName(of: relation)
        try guarded {
            tables[key] = try SQLiteTable(database: database!, schema: relation, logger: logger)
        }
    }

    /// Refuses a table whose SQLite name is the sink's own table or one another source table is written
    /// to (`public.a_b` and `a.b` are both `a_b`; `"T"` and `t` are one table to SQLite): merged, their
    /// rows and columns would overwrite each other.
    private func claimTargetName(of relation: RelationSchema) throws {
        let target = SQLiteTable.targetName(relation)
        let source = TableName(schema: relation.schema, table: relation.table)
        let fix = "give one of them another name on this sink with rename: {\(source): schema.other_name}"
        let folded = target.lowercased()
        if ["sluice_offsets", "sluice_aggregates"].contains(folded) || folded.hasPrefix("_sluice_") || folded.hasPrefix("sqlite_") {
            throw ConnectorError.fatal("""
                sink \(name): \(source) would be written to the SQLite table \(target), a name the sink or SQLite keeps for its own \
                use (sluice_offsets, sluice_aggregates, _sluice_*, sqlite_*); \(fix), or leave it out with tables: ["!\(source)"]
                """)
        }
        if let other = targetNames[folded], other != source {
            throw ConnectorError.fatal("""
                sink \(name): \(source) and \(other) would both be written to the SQLite table \(target) (the SQLite sink names \
                a table T for public.T and schema_T otherwise, and SQLite ignores case in names); \(fix)
                """)
        }
        targetNames[folded] = source
    }

    public func apply(_ change: Change) throws {
        guard let table = tables[TableKey(topic: change.topic, relation: change.relation.id)] else {
            throw ConnectorError.fatal("sink \(name): change to \(change.relation.qualifiedName) before its schema")
        }
        try guarded {
            if let aggregates, let aggregateStore { try aggregates.apply(change, store: aggregateStore) }
            try table.apply(change)
        }
    }

    public func commitBatch(positions: [SinkPosition]) throws {
        try guarded {
            if let aggregates, let aggregateStore { try aggregates.flush(store: aggregateStore) }
            for position in positions {
                saveOffset!.bind(1, text: name)
                saveOffset!.bind(2, text: position.topic)
                saveOffset!.bind(3, int64: Int64(position.offset))
                saveOffset!.bind(4, text: position.lsn.description)
                saveOffset!.bind(5, text: String(position.commitTime))
                try saveOffset!.run()
            }
            Failpoint.hit("sink.sqlite.before_commit")
            try database!.execute("COMMIT")
            inBatch = false
            Failpoint.hit("sink.sqlite.after_commit")
        }
    }

    public func rollbackBatch() {
        guard inBatch, let database else { return }
        try? database.execute("ROLLBACK")
        inBatch = false
    }

    public func close() {
        rollbackBatch()
        tables.removeAll()
        aggregates = nil
        aggregateStore = nil
        saveOffset = nil
        database = nil
    }

    /// Busy, locked, full or I/O errors are worth a retry; anything else is a bug or a schema clash.
    private func guarded<T>(_ body: () throws -> T) throws -> T {
        do {
            return try body()
        } catch let error as SQLiteError {
            if error.isTransient { throw ConnectorError.transient("sink \(name): \(error)") }
            // A column or table dropped from the file by hand: the next attempt prepares the tables again,
            // which adds it back; the rows it held there are gone until a backfill copies them.
            if error.code & 0xFF == 1,  // SQLITE_ERROR
               ["no such column", "no such table", "has no column named"].contains(where: { error.message.contains($0) }) {
                throw ConnectorError.transient("""
                    sink \(name): \(error.message) in \(path) (dropped there by hand?): the sink creates it again and retries; \
                    rows the target held in it are gone until `sluice verify --repair` (or `sluice backfill --table …`) copies them again
                    """)
            }
            throw ConnectorError.fatal("sink \(name) (\(path)): \(error)")
        }
    }
}

import Foundation
import SluiceKit
import SluiceWire

/// A sink's target store, opened read-only in spirit: verify never writes it.
enum TargetStore {
    case postgres(PGConnection)
    case sqlite(SQLiteDatabase)

    static func open(_ target: VerifyTarget) throws -> TargetStore {
        switch target {
        case let .postgres(url): return .postgres(try PGConnection(url: url, applicationName: "sluice-verify"))
        case let .sqlite(path):
            guard FileManager.default.fileExists(atPath: path) else {
                throw VerifyFailure("the SQLite file \(path) does not exist yet (the sink has not run)")
            }
            return .sqlite(try SQLiteDatabase(path: path, readOnly: true))
        }
    }

    var isSQLite: Bool { if case .sqlite = self { return true } else { return false } }

    /// The sink's stored position in a topic (offset, commit LSN), read from `sluice_offsets`.
    func position(sink: String, topic: String) throws -> (offset: UInt64, lsn: LSN)? {
        switch self {
        case let .postgres(connection):
            guard try connection.execute("SELECT to_regclass('public.sluice_offsets')").string(0, 0) != nil else { return nil }
            let result = try connection.execute(
                "SELECT \"offset\"::text, lsn::text FROM public.sluice_offsets WHERE sink = $1 AND topic = $2", [sink, topic])
            guard result.rowCount == 1, let offset = result.string(0, 0).flatMap({ UInt64($0) }),
                  let lsn = result.string(0, 1).flatMap({ LSN($0) }) else { return nil }
            return (offset, lsn)
        case let .sqlite(database):
            guard try !database.query("SELECT 1 FROM sqlite_master WHERE name = 'sluice_offsets'").isEmpty else { return nil }
            let rows = try database.query("SELECT \"offset\", lsn FROM sluice_offsets WHERE sink = ? AND topic = ?", [sink, topic])
            guard let row = rows.first, let offset = row[0].flatMap({ UInt64($0) }), let lsn = row[1].flatMap({ LSN($0) }) else { return nil }
            return (offset, lsn)
        }
    }

    /// The columns of `shape` the target's table lacks (dropped there by hand, or not made yet), in
    /// the shape's order; a reader would fail on them with the database's own error.
    func missingColumns(_ shape: TableShape) throws -> [String] {
        let present: Set<String>
        switch self {
        case let .postgres(connection):
            let result = try connection.execute("""
                SELECT attname FROM pg_attribute WHERE attrelid = to_regclass($1) AND attnum > 0 AND NOT attisdropped
                """, [shape.table.sql])
            present = Set((0..<result.rowCount).compactMap { result.string($0, 0) })
        case let .sqlite(database):
            // SQLite matches column names without regard to ASCII case.
            present = Set(try database.query("SELECT name FROM pragma_table_info(?)", [shape.sqliteName]).compactMap { $0[0]?.lowercased() })
            return shape.columns.map(\.name).filter { !present.contains($0.lowercased()) }
        }
        return shape.columns.map(\.name).filter { !present.contains($0) }
    }

    /// The reader of one table, nil when the target does not have it.
    /// `values`: what each column is compared as at a PostgreSQL target (default: the column itself).
    func table(_ shape: TableShape, values: [String]? = nil) throws -> TargetTable? {
        switch self {
        case let .postgres(connection):
            guard try connection.execute("SELECT to_regclass($1)", [shape.table.sql]).string(0, 0) != nil else { return nil }
            return .postgres(PostgresTableReader(connection: connection, shape: shape, qualifiedName: shape.table.sql, textOrder: false,
                                                 values: values))
        case let .sqlite(database):
            let reader = SQLiteTableReader(database: database, shape: shape)
            return reader.exists ? .sqlite(reader) : nil
        }
    }
}

/// One table at the target, read the same way whichever store holds it.
enum TargetTable {
    case postgres(PostgresTableReader)
    case sqlite(SQLiteTableReader)

    func summary(_ range: KeyRange) throws -> ChunkSummary {
        switch self {
        case let .postgres(reader): return try reader.summary(range)
        case let .sqlite(reader): return try reader.summary(range)
        }
    }

    func rows(in range: KeyRange) throws -> [CanonicalRow] {
        switch self {
        case let .postgres(reader): return try reader.rows(in: range)
        case let .sqlite(reader):
            var rows: [CanonicalRow] = []
            try reader.rows(in: range) { rows.append($0) }
            return rows
        }
    }

    func rows(withKeys keys: [[String]]) throws -> [CanonicalRow] {
        switch self {
        case let .postgres(reader): return try reader.rows(withKeys: keys)
        case let .sqlite(reader): return try reader.rows(withKeys: keys)
        }
    }

    func bucketSummaries(count: Int) throws -> [ChunkSummary] {
        switch self {
        case let .postgres(reader): return try reader.bucketSummaries(count: count)
        case let .sqlite(reader): return try reader.bucketSummaries(count: count)
        }
    }

    func rows(inBuckets buckets: Set<Int>, of count: Int) throws -> [CanonicalRow] {
        switch self {
        case let .postgres(reader): return try reader.rows(inBuckets: buckets, of: count)
        case let .sqlite(reader): return try reader.rows(inBuckets: buckets, of: count)
        }
    }
}

/// Verify could not run to the end (exit 1): a store unreachable, a sink that does not catch up.
public struct VerifyFailure: Error, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}

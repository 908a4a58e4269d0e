/// A source whose tables `sluice verify` can compare with its sinks: a PostgreSQL database, read
/// with a plain role (SELECT) at REPEATABLE READ snapshots.
public protocol VerifiableSource: Source {
    /// The libpq URL of the source database.
    var verifyURL: String { get }
    /// The replication slot: its confirmed flush LSN tells how far the topic holds the stream.
    var verifySlot: String { get }
    /// The publication: its row filters and column lists say what of each table the sinks receive.
    var verifyPublication: String { get }
    /// Every captured table, with a primary key or without (REPLICA IDENTITY FULL).
    func capturedTables() throws -> [TableName]
}

/// Where a SQL sink keeps its tables, for `sluice verify` to read them without changing them.
public enum VerifyTarget: Sendable, Equatable {
    /// `schema.table` as at the source, the source's column types.
    case postgres(url: String)
    /// `T` for `public.T`, `schema_T` otherwise; values in PostgreSQL's text form where not INTEGER,
    /// REAL (floats), 0/1 (bool) or BLOB (bytea).
    case sqlite(path: String)
}

/// A sink that mirrors tables in a SQL store `sluice verify` can read.
public protocol VerifiableSink: Sink {
    var verifyTarget: VerifyTarget { get }
}

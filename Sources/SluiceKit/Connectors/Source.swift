import Logging

/// What the runtime gives a source.
public struct SourceContext: Sendable {
    public let name: String
    public let logger: Logger
    /// A folder for the source's own small state files (e.g. what it set up in its database).
    public let stateDirectory: String
    /// True once the daemon is shutting down: return from `run` at the next transaction boundary.
    public let isStopping: @Sendable () -> Bool
    /// Sets the source's health and its one-line reason, for `status` and `/health`.
    public let report: @Sendable (ConnectorState) -> Void
    /// Whether a backfill of the table must replace its rows at the sinks in one transaction (a whole
    /// copy) rather than upsert them in chunks: a sink keeps an aggregate over it, and re-sent rows
    /// would be counted twice.
    public let backfillReplaces: @Sendable (TableName) -> Bool

    public init(name: String, logger: Logger, stateDirectory: String, isStopping: @escaping @Sendable () -> Bool,
                report: @escaping @Sendable (ConnectorState) -> Void = { _ in },
                backfillReplaces: @escaping @Sendable (TableName) -> Bool = { _ in false }) {
        self.name = name
        self.logger = logger
        self.stateDirectory = stateDirectory
        self.isStopping = isStopping
        self.report = report
        self.backfillReplaces = backfillReplaces
    }
}

/// A connector's health, as `status` and `/health` show it.
public enum ConnectorState: Sendable, Equatable, CustomStringConvertible {
    case starting
    case running
    case retrying(String)
    /// Stopped by an error retrying cannot fix; the rest of the pipeline goes on.
    case failed(String)
    case stopped

    public var description: String {
        switch self {
        case .starting: return "starting"
        case .running: return "running"
        case let .retrying(reason): return "retrying: \(reason)"
        case let .failed(reason): return "failed: \(reason)"
        case .stopped: return "stopped"
        }
    }
}

/// Captures a database's committed transactions into a topic.
///
/// Guarantees a source must keep:
/// - Every committed source transaction is written once, whole, in commit order, through a
///   ``TransactionWriter`` (begin, changes, commit marker); nothing from rolled-back transactions.
/// - The database may forget a transaction (e.g. a replication slot's confirmed position may move)
///   only after the topic's ``Topic/durableCommit`` covers it.
/// - After any restart it resumes after ``TransactionWriter/lastCommit`` and drops whatever the
///   database sends again up to there.
///
/// `init` only reads and validates the configuration (no I/O): the command line builds every
/// connector first so a bad file fails before any database is touched.
public protocol Source: AnyObject {
    /// The `type` this source has in the configuration file.
    static var typeName: String { get }

    init(config: ConnectorConfig) throws

    /// Validates the configuration against the live database without changing anything:
    /// one finding per prerequisite, each problem with what fixes it. Used by `sluice check`.
    func check(logger: Logger) -> [CheckFinding]

    /// The source's position in its database and what it retains there (`sluice status`, metrics).
    func status() -> SourceStatus

    /// Called once before anything starts: throw ``ConnectorError/misconfigured(_:)`` for a problem
    /// that must stop `sluice run` before any sink touches its target. An unreachable database is
    /// not such a problem (the source retries it).
    func preflight() throws

    /// Captures transactions until `context.isStopping()`; returns normally then.
    /// Throw ``ConnectorError/transient(_:)`` for faults worth retrying (the runtime drops the open
    /// transaction and calls `run` again after a backoff); anything else stops the daemon.
    func run(into writer: TransactionWriter, context: SourceContext) throws
}

extension Source {
    public func check(logger: Logger) -> [CheckFinding] { [] }
    public func status() -> SourceStatus { SourceStatus() }
    public func preflight() throws {}
}

/// What `sluice status` shows for a source, read from its database without changing anything.
public struct SourceStatus: Sendable {
    /// Connector-specific facts in display order (e.g. slot, confirmed_flush_lsn).
    public var details: [(key: String, value: String)] = []
    /// Bytes of WAL (or the store's equivalent) the source's position keeps from being recycled.
    public var retainedBytes: UInt64?
    /// The threshold past which retained data is warned about, if the source has one.
    public var retainedWarningBytes: UInt64?
    /// Set when retained data passes the configured threshold.
    public var warning: String?
    /// Set when the database could not be asked.
    public var error: String?

    public init(details: [(key: String, value: String)] = [], retainedBytes: UInt64? = nil, retainedWarningBytes: UInt64? = nil,
                warning: String? = nil, error: String? = nil) {
        self.details = details
        self.retainedBytes = retainedBytes
        self.retainedWarningBytes = retainedWarningBytes
        self.warning = warning
        self.error = error
    }
}

/// One result of `sluice check`.
public struct CheckFinding: Sendable, Equatable {
    public enum Severity: String, Sendable { case ok, warning, error }
    public var severity: Severity
    public var subject: String
    public var message: String
    /// SQL or a command that fixes the problem, when there is one.
    public var fix: String?

    public init(_ severity: Severity, _ subject: String, _ message: String, fix: String? = nil) {
        self.severity = severity
        self.subject = subject
        self.message = message
        self.fix = fix
    }
}

/// Errors a connector reports to the runtime.
public enum ConnectorError: Error, CustomStringConvertible, Sendable {
    /// Worth retrying: the store is unreachable, restarting, or refused for a passing reason.
    case transient(String)
    /// Retrying will not help: something broke that the configuration cannot fix (exit status 1).
    case fatal(String)
    /// The configuration or a prerequisite it relies on is wrong: a missing table, a table without a
    /// key, wal_level, credentials (exit status 2, like a bad file). `sluice check` reports the same.
    case misconfigured(String)

    public var description: String {
        switch self {
        case let .transient(reason), let .fatal(reason), let .misconfigured(reason): return reason
        }
    }
}

/// A source that can say which of its tables send the whole old row with each update and delete
/// (PostgreSQL: REPLICA IDENTITY FULL). An aggregate retracts the old row, so the tables a sink
/// aggregates need it; `check` and `run` ask before anything starts.
public protocol OldRowSource: Source {
    /// The captured tables that `wanted` selects whose updates and deletes carry only the old key,
    /// each with the statement that fixes it. Throws when the database cannot be asked.
    func tablesWithoutOldRows(among wanted: (TableName) -> Bool) throws -> [(table: TableName, fix: String)]
}

/// A source that can give the current schemas of the tables it captures, as its change stream would
/// describe them: `check` and `run` bind each sink's transforms to them before anything starts.
public protocol SchemaSource: Source {
    /// The schemas of the captured tables that `wanted` selects. Throws when the database cannot be asked.
    func currentSchemas(among wanted: (TableName) -> Bool) throws -> [RelationSchema]
}

import Logging

/// The durable position of a sink in one topic: the commit marker of the last source transaction
/// it applied. Stored by the sink in the same target transaction as the data it covers.
public struct SinkPosition: Sendable, Equatable {
    public var topic: String
    /// Offset of the last applied commit marker.
    public var offset: UInt64
    /// The source LSN of that transaction's commit.
    public var lsn: LSN
    /// Source commit time of that transaction.
    public var commitTime: Micros

    public init(topic: String, offset: UInt64, lsn: LSN, commitTime: Micros) {
        self.topic = topic
        self.offset = offset
        self.lsn = lsn
        self.commitTime = commitTime
    }
}

/// One row change handed to a sink, with the schema of its table.
public struct Change: Sendable {
    public var topic: String
    /// The topic offset of this change.
    public var offset: UInt64
    public var operation: ChangeOperation
    public var relation: RelationSchema
    public var lsn: LSN
    public var oldKind: OldValuesKind
    /// The old key (others null) or, under REPLICA IDENTITY FULL, the whole old row.
    public var old: Tuple?
    /// The new row of a read, insert or update; unchanged TOASTed columns are ``Value/unchanged``.
    public var new: Tuple?
    /// For truncate: 1 cascade, 2 restart identity, 4 a backfill replacing the table's rows (its rows
    /// follow in the same transaction; ``ChangeRecord/backfillTruncate``).
    public var truncateOptions: UInt8

    public init(topic: String, offset: UInt64, record: ChangeRecord, relation: RelationSchema) {
        self.topic = topic
        self.offset = offset
        operation = record.operation
        self.relation = relation
        lsn = record.lsn
        oldKind = record.oldKind
        old = record.old
        new = record.new
        truncateOptions = record.truncateOptions
    }
}

/// What the runtime gives a sink.
public struct SinkContext: Sendable {
    public let name: String
    public let logger: Logger
    /// For a sink that retries inside a call (the same batch again): report the failure of an attempt,
    /// so `status` and `/health` show the sink retrying at once, and nil once an attempt succeeds.
    public let retrying: @Sendable (String?) -> Void
    /// True once the process is stopping and its deadline has passed: a sink that retries inside a
    /// call stops retrying and throws (the runtime rolls the batch back; the stored position is safe).
    public let shouldGiveUp: @Sendable () -> Bool

    public init(name: String, logger: Logger, retrying: @escaping @Sendable (String?) -> Void = { _ in },
                shouldGiveUp: @escaping @Sendable () -> Bool = { false }) {
        self.name = name
        self.logger = logger
        self.retrying = retrying
        self.shouldGiveUp = shouldGiveUp
    }
}

/// Applies whole source transactions to a target store, exactly once.
///
/// The runtime drives a sink from one thread, in this order, forever:
/// `open` once (and again after any error), then batches of
/// `beginBatch`, for each source transaction in topic order (`beginTransaction`, `prepare` and
/// `apply`…, `commitTransaction`), then `commitBatch`. A batch holds one or more whole transactions, never part
/// of one; the next batch starts only after `commitBatch` returns, which is what throttles reading
/// (backpressure) and bounds memory.
///
/// Guarantees a sink must keep:
/// - `commitBatch` makes the batch's changes and `positions` durable atomically, or neither: a reader
///   of the target never sees part of a source transaction, and a crash never applies one twice.
///   A target may acknowledge the commit before it is durable if a crash then loses the changes and
///   the positions together; such a sink reports what is durable in `durablePositions`, and only that
///   counts for retention (the topic keeps what a target crash would make the sink apply again).
/// - `open` returns exactly the positions the last successful `commitBatch` stored; the runtime
///   resumes after them.
/// - Applies are idempotent where the target allows (upsert by key, delete by key), so a target that
///   cannot store positions atomically still converges.
///
/// Throw ``ConnectorError/transient(_:)`` when the target is unreachable: the runtime calls
/// `rollbackBatch`, waits with capped backoff, calls `open` again and replays from its positions.
public protocol Sink: AnyObject {
    /// The `type` this sink has in the configuration file.
    static var typeName: String { get }

    /// Reads and validates the configuration; no I/O.
    init(config: ConnectorConfig) throws

    /// Connects, prepares the target, and returns the stored position per topic.
    func open(context: SinkContext) throws -> [String: SinkPosition]

    func beginBatch() throws
    func beginTransaction(_ begin: BeginRecord, topic: String, offset: UInt64) throws
    /// The schema of a table the transaction changes, before its first change: create or alter the
    /// target table here. Called once per table per transaction, so comparing with a cache is cheap.
    func prepare(_ relation: RelationSchema, topic: String) throws
    func apply(_ change: Change) throws
    func commitTransaction(_ commit: CommitRecord, position: SinkPosition) throws
    /// Stores `positions` (one per topic the batch touched) with the batch, atomically.
    func commitBatch(positions: [SinkPosition]) throws
    /// Per topic, the last stored position the target holds durably, when that may lag `commitBatch`;
    /// nil when every position is durable once `commitBatch` returns. Asked after each batch and probe.
    func durablePositions() -> [String: SinkPosition]?
    /// Abandons the open batch after an error; may be called when no batch is open.
    func rollbackBatch()
    func close()

    /// Called while the sink is idle (about once a second) so an unreachable target is noticed and
    /// reported before there is anything to apply. Throw as from the other calls.
    func probe() throws

    /// The stored positions, read without changing the target (for `sluice status`); nil when the
    /// target holds none yet.
    func readPositions() throws -> [String: SinkPosition]?

    /// Checks the target can be reached and written, without changing it. Used by `sluice check`.
    func check(logger: Logger) -> [CheckFinding]

    /// Called once before anything starts, without I/O to the target: throw
    /// ``ConnectorError/misconfigured(_:)`` for a mistake that must stop `sluice run` before any
    /// database is touched (a plugin program that does not exist). An unreachable target is not one.
    func preflight() throws
}

extension Sink {
    public func check(logger: Logger) -> [CheckFinding] { [] }
    public func preflight() throws {}
    public func probe() throws {}
    public func durablePositions() -> [String: SinkPosition]? { nil }
    public func beginTransaction(_ begin: BeginRecord, topic: String, offset: UInt64) throws {}
    public func prepare(_ relation: RelationSchema, topic: String) throws {}
    public func commitTransaction(_ commit: CommitRecord, position: SinkPosition) throws {}
}

/// Where a simulated crash strikes inside a batch: after `commits` transactions were handed over
/// whole (`commitTransaction` called), and `changes` changes of the next one.
public struct CrashPoint: Sendable, Equatable {
    public var commits: Int
    public var changes: Int

    public init(commits: Int, changes: Int) {
        self.commits = commits
        self.changes = changes
    }
}

/// What one batch handed to a sink.
public struct AppliedBatch: Sendable {
    /// The stored position (the batch's last commit marker); nil when the batch held no whole
    /// transaction, or was abandoned at a crash point.
    public var position: SinkPosition?
    public var events = 0
    public var transactions = 0
    /// Source commit time of each transaction, for commit-to-apply latency.
    public var commitTimes: [Micros] = []
    /// The topic's event count up to the last commit marker handed over.
    public var totalEvents: UInt64 = 0
}

/// The one loop that hands a sink batches of whole transactions read from a topic, in the order
/// the ``Sink`` contract states. The runtime applies every batch through it, and SluiceConformance
/// drives sinks through it too (with crash points), so the check tests the code that runs.
public struct BatchApplier {
    public let sink: any Sink
    public let topic: any Topic
    /// A batch ends at the first commit marker once this many changes were handed over.
    public let maxBatchEvents: Int
    /// Wraps an error thrown by the sink with the call that threw it (the conformance check names
    /// calls); nil passes errors through unchanged.
    public let naming: ((String, any Error) -> any Error)?

    public init(sink: any Sink, topic: any Topic, maxBatchEvents: Int,
                naming: ((String, any Error) -> any Error)? = nil) {
        self.sink = sink
        self.topic = topic
        self.maxBatchEvents = maxBatchEvents
        self.naming = naming
    }

    @inline(__always)
    private func call(_ what: @autoclosure () -> String, _ body: () throws -> Void) throws {
        guard let naming else { return try body() }
        do { try body() } catch { throw naming(what(), error) }
    }

    /// Reads from `reader` up to `limit` (just after a commit marker) and applies one batch: `beginBatch`,
    /// whole transactions, `commitBatch` with the last position. With a `crash` point it stops there
    /// instead and abandons the batch as the runtime does after an error (`rollbackBatch`, `close`).
    public func applyBatch(from reader: any TopicReader, limit: UInt64, crash: CrashPoint? = nil) throws -> AppliedBatch {
        let name = topic.name
        try call("beginBatch") { try sink.beginBatch() }
        var relations: [UInt32: RelationSchema] = [:]
        var batch = AppliedBatch()
        var last: SinkPosition?
        var open = false
        var changesInOpen = 0
        reading: while let raw = try reader.next(limit: limit) {
            switch try raw.decode() {
            case let .begin(begin):
                open = true
                changesInOpen = 0
                try call("beginTransaction(xid \(begin.xid), offset \(raw.offset))") {
                    try sink.beginTransaction(begin, topic: name, offset: raw.offset)
                }
            case let .relation(relation):
                relations[relation.id] = relation
                try call("prepare(\(relation.qualifiedName))") { try sink.prepare(relation, topic: name) }
            case let .change(change):
                if let crash, batch.transactions == crash.commits, changesInOpen == crash.changes { break reading }
                guard let relation = relations[change.relationID] else {
                    throw ConnectorError.fatal("topic \(name): change at offset \(raw.offset) has no schema record")
                }
                try call("apply(\(change.operation.name) on \(relation.qualifiedName), offset \(raw.offset))") {
                    try sink.apply(Change(topic: name, offset: raw.offset, record: change, relation: relation))
                }
                batch.events += 1
                changesInOpen += 1
            case let .commit(commit):
                let position = SinkPosition(topic: name, offset: raw.offset, lsn: commit.commitLSN,
                                            commitTime: commit.commitTime)
                try call("commitTransaction(xid \(commit.xid), offset \(raw.offset))") {
                    try sink.commitTransaction(commit, position: position)
                }
                open = false
                last = position
                batch.transactions += 1
                batch.commitTimes.append(commit.commitTime)
                batch.totalEvents = commit.totalEvents
                if crash == nil && batch.events >= maxBatchEvents { break reading }
            }
        }
        if crash != nil {
            sink.rollbackBatch()
            sink.close()
            return batch
        }
        // The limit sits just after a commit marker, so a batch never ends inside a transaction.
        precondition(!open, "a batch ended inside a transaction")
        guard let last else {
            sink.rollbackBatch()
            return batch
        }
        try call("commitBatch(offset \(last.offset))") { try sink.commitBatch(positions: [last]) }
        batch.position = last
        return batch
    }
}

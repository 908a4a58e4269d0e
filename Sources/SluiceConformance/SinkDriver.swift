import Logging
import SluiceKit

/// A call to the sink that threw.
struct SinkCallError: Error, CustomStringConvertible {
    let call: String
    let error: any Error

    var description: String { "\(call) threw: \(error)" }
}

/// One topic read from a position up to a limit, as the runtime reads it for a sink.
final class TopicFeed {
    let topic: any Topic
    let reader: any TopicReader
    /// One past the last offset to hand over: always just after a commit marker.
    let limit: UInt64

    init(topic: any Topic, from position: SinkPosition?, limit: UInt64) throws {
        self.topic = topic
        reader = try topic.makeReader(from: position.map { $0.offset + 1 } ?? 0)
        self.limit = limit
    }

    var isDone: Bool { reader.position >= limit }
}

/// Where a simulated crash strikes inside a batch: after `commits` transactions were handed over
/// whole (`commitTransaction` called), and `changes` changes of the next one.
struct CrashPoint {
    var commits: Int
    var changes: Int
}

/// Drives a sink exactly as the runtime does (SluiceRuntime's `SinkRunner`): `open`, then batches
/// of `beginBatch`, for each whole transaction `beginTransaction`, `prepare` for each table before its
/// first change, `apply`…, `commitTransaction`, then `commitBatch` with the batch's last position;
/// after an error, `rollbackBatch` and `close`.
struct SinkDriver {
    let sink: any Sink
    let name: String
    let logger: Logger

    /// Runs one call to the sink, naming it if it throws.
    @discardableResult
    func call<T>(_ what: String, _ body: () throws -> T) throws -> T {
        do {
            return try body()
        } catch {
            throw SinkCallError(call: what, error: error)
        }
    }

    func open() throws -> [String: SinkPosition] {
        try call("open") { try sink.open(context: SinkContext(name: name, logger: logger)) }
    }

    /// Applies one batch of whole transactions from `feed`: it ends at the first commit marker once
    /// `maxBatchEvents` changes were handed over, or at the feed's limit. Returns the stored position.
    @discardableResult
    func applyBatch(_ feed: TopicFeed, maxBatchEvents: Int) throws -> SinkPosition? {
        try call("beginBatch") { try sink.beginBatch() }
        var relations: [UInt32: RelationSchema] = [:]
        var events = 0
        var last: SinkPosition?
        var open = false
        reading: while let raw = try feed.reader.next(limit: feed.limit) {
            switch try raw.decode() {
            case let .begin(begin):
                open = true
                try call("beginTransaction(xid \(begin.xid), offset \(raw.offset))") {
                    try sink.beginTransaction(begin, topic: feed.topic.name, offset: raw.offset)
                }
            case let .relation(relation):
                relations[relation.id] = relation
                try call("prepare(\(relation.qualifiedName))") { try sink.prepare(relation, topic: feed.topic.name) }
            case let .change(change):
                let relation = relations[change.relationID]!
                try call("apply(\(change.operation.name) on \(relation.qualifiedName), offset \(raw.offset))") {
                    try sink.apply(Change(topic: feed.topic.name, offset: raw.offset, record: change, relation: relation))
                }
                events += 1
            case let .commit(commit):
                let position = SinkPosition(topic: feed.topic.name, offset: raw.offset, lsn: commit.commitLSN,
                                            commitTime: commit.commitTime)
                try call("commitTransaction(xid \(commit.xid), offset \(raw.offset))") {
                    try sink.commitTransaction(commit, position: position)
                }
                open = false
                last = position
                if events >= maxBatchEvents { break reading }
            }
        }
        // The feed's limit sits just after a commit marker, so a batch never ends inside a transaction.
        precondition(!open, "conformance driver: a batch ended inside a transaction")
        guard let last else {
            sink.rollbackBatch()
            return nil
        }
        try call("commitBatch(offset \(last.offset))") { try sink.commitBatch(positions: [last]) }
        return last
    }

    /// Applies the feeds in turns, one batch from each per round (as the runtime serves several
    /// topics), until every feed reaches its limit.
    func applyAll(_ feeds: [TopicFeed], maxBatchEvents: Int) throws {
        while feeds.contains(where: { !$0.isDone }) {
            for feed in feeds where !feed.isDone { try applyBatch(feed, maxBatchEvents: maxBatchEvents) }
        }
    }

    /// Starts a batch, hands over records up to `crash`, then abandons it as the runtime does after
    /// an error: `rollbackBatch` and `close`. Nothing of the batch was acknowledged.
    func crashInBatch(_ feed: TopicFeed, at crash: CrashPoint) throws {
        try call("beginBatch") { try sink.beginBatch() }
        var relations: [UInt32: RelationSchema] = [:]
        var commits = 0
        var changes = 0
        reading: while let raw = try feed.reader.next(limit: feed.limit) {
            switch try raw.decode() {
            case let .begin(begin):
                try call("beginTransaction(xid \(begin.xid))") {
                    try sink.beginTransaction(begin, topic: feed.topic.name, offset: raw.offset)
                }
            case let .relation(relation):
                relations[relation.id] = relation
                try call("prepare(\(relation.qualifiedName))") { try sink.prepare(relation, topic: feed.topic.name) }
            case let .change(change):
                if commits == crash.commits && changes == crash.changes { break reading }
                let relation = relations[change.relationID]!
                try call("apply(\(change.operation.name) on \(relation.qualifiedName), offset \(raw.offset))") {
                    try sink.apply(Change(topic: feed.topic.name, offset: raw.offset, record: change, relation: relation))
                }
                if commits == crash.commits { changes += 1 }
            case let .commit(commit):
                try call("commitTransaction(xid \(commit.xid))") {
                    try sink.commitTransaction(commit, position: SinkPosition(
                        topic: feed.topic.name, offset: raw.offset, lsn: commit.commitLSN, commitTime: commit.commitTime))
                }
                commits += 1
            }
        }
        sink.rollbackBatch()
        sink.close()
    }
}

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

    /// Applies one batch of whole transactions from `feed` through the runtime's own ``BatchApplier``:
    /// it ends at the first commit marker once `maxBatchEvents` changes were handed over, or at the
    /// feed's limit. Returns the stored position.
    @discardableResult
    func applyBatch(_ feed: TopicFeed, maxBatchEvents: Int) throws -> SinkPosition? {
        try applier(feed, maxBatchEvents: maxBatchEvents).applyBatch(from: feed.reader, limit: feed.limit).position
    }

    private func applier(_ feed: TopicFeed, maxBatchEvents: Int) -> BatchApplier {
        BatchApplier(sink: sink, topic: feed.topic, maxBatchEvents: maxBatchEvents) { call, error in
            SinkCallError(call: call, error: error)
        }
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
        _ = try applier(feed, maxBatchEvents: .max).applyBatch(from: feed.reader, limit: feed.limit, crash: crash)
    }
}

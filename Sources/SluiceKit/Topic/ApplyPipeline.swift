import Foundation

/// Applies batches as ``BatchApplier`` does, on two threads: a prepare thread reads and decodes the
/// batch's records and, for a ``TransformingSink``, runs the transforms, ahead of the sink's thread,
/// which only makes the sink's calls (the same calls, in the same order, with the same batches; C
/// handles stay on the sink's thread). The calls wait in a bounded queue between the two.
///
/// An error of the prepare side (a record that does not decode, a change before its schema, a
/// transform that fails) takes its place in the queue and is thrown on the sink's thread where the
/// single-thread loop would have thrown it; nothing after it is handed over.
public final class ApplyPipeline: @unchecked Sendable {
    /// Calls per chunk handed over (one lock per chunk, not per call), and chunks waiting at most:
    /// with the byte bound, what the queue holds stays small whatever the batch size.
    public static let chunkCalls = 256
    public static let chunkBytes = 1 << 20
    public static let maxChunks = 4

    private let condition = NSCondition()
    private var job: (() -> Void)?
    private var stopped = false

    public init(name: String) {
        let thread = Thread { [self] in serve() }
        thread.name = name
        thread.stackSize = 4 << 20
        thread.start()
    }

    /// Ends the prepare thread once its current batch is done.
    public func stop() {
        condition.lock()
        stopped = true
        condition.broadcast()
        condition.unlock()
    }

    private func serve() {
        while true {
            condition.lock()
            while job == nil && !stopped { condition.wait() }
            guard let next = job else { condition.unlock(); return }
            job = nil
            condition.unlock()
            next()
        }
    }

    private func submit(_ work: @escaping () -> Void) {
        condition.lock()
        precondition(job == nil && !stopped, "one batch at a time")
        job = work
        condition.broadcast()
        condition.unlock()
    }

    /// One batch, as ``BatchApplier/applyBatch(from:limit:crash:)`` without a crash point.
    public func applyBatch(_ applier: BatchApplier, from reader: any TopicReader, limit: UInt64) throws -> AppliedBatch {
        let queue = CallQueue()
        let transforming = applier.sink as? TransformingSink
        let target = transforming?.inner ?? applier.sink
        let producer = Producer(applier: applier, transforming: transforming, reader: reader, limit: limit, queue: queue)
        submit { producer.run() }
        // The prepare thread stops and lets go of the reader before this returns or throws.
        defer {
            queue.cancel()
            queue.waitDone()
        }
        try applier.sink.beginBatch()
        while true {
            for call in queue.take() {
                switch call {
                case let .begin(begin, topic, offset): try target.beginTransaction(begin, topic: topic, offset: offset)
                case let .prepare(schema, topic): try target.prepare(schema, topic: topic)
                case let .apply(change): try target.apply(change)
                case let .commit(commit, position): try target.commitTransaction(commit, position: position)
                case let .failure(error): throw error
                case let .end(batch):
                    guard let last = batch.position else {
                        applier.sink.rollbackBatch()
                        return batch
                    }
                    try applier.sink.commitBatch(positions: [last])
                    return batch
                }
            }
        }
    }
}

/// A call for the sink's thread, made ready on the prepare thread.
enum PreparedCall {
    case begin(BeginRecord, String, UInt64)
    case prepare(RelationSchema, String)
    case apply(Change)
    case commit(CommitRecord, SinkPosition)
    /// Thrown where it stands; nothing follows it.
    case failure(any Error)
    /// The batch's tally, its position set when it holds a whole transaction.
    case end(AppliedBatch)
}

/// The bounded queue of chunks of calls between the prepare thread and the sink's thread.
final class CallQueue: @unchecked Sendable {
    private let condition = NSCondition()
    private var chunks: [[PreparedCall]] = []
    private var cancelled = false
    private var done = false

    /// Waits for room; false once the sink's thread gave up on the batch.
    func put(_ chunk: [PreparedCall]) -> Bool {
        condition.lock()
        defer { condition.unlock() }
        while chunks.count >= ApplyPipeline.maxChunks && !cancelled { condition.wait() }
        guard !cancelled else { return false }
        chunks.append(chunk)
        condition.broadcast()
        return true
    }

    /// Chunks waiting (for tests).
    var pending: Int {
        condition.lock()
        defer { condition.unlock() }
        return chunks.count
    }

    func take() -> [PreparedCall] {
        condition.lock()
        defer { condition.unlock() }
        while chunks.isEmpty { condition.wait() }
        condition.broadcast()
        return chunks.removeFirst()
    }

    func cancel() {
        condition.lock()
        cancelled = true
        chunks.removeAll()
        condition.broadcast()
        condition.unlock()
    }

    /// Called by the prepare thread once it no longer touches the reader or the transforms.
    func finish() {
        condition.lock()
        done = true
        condition.broadcast()
        condition.unlock()
    }

    func waitDone() {
        condition.lock()
        while !done { condition.wait() }
        condition.unlock()
    }
}

/// The prepare side of one batch: the single-thread loop of ``BatchApplier``, queuing calls instead
/// of making them. Used by the prepare thread only, then dropped.
private final class Producer: @unchecked Sendable {
    let applier: BatchApplier
    let transforming: TransformingSink?
    let reader: any TopicReader
    let limit: UInt64
    let queue: CallQueue
    private var chunk: [PreparedCall] = []
    private var bytes = 0

    init(applier: BatchApplier, transforming: TransformingSink?, reader: any TopicReader, limit: UInt64, queue: CallQueue) {
        self.applier = applier
        self.transforming = transforming
        self.reader = reader
        self.limit = limit
        self.queue = queue
        chunk.reserveCapacity(ApplyPipeline.chunkCalls)
    }

    func run() {
        defer { queue.finish() }
        var batch = AppliedBatch()
        do {
            guard try read(&batch) else { return }
        } catch {
            chunk.append(.failure(error))
        }
        chunk.append(.end(batch))
        _ = queue.put(chunk)
    }

    /// Queues the batch's calls; false once the sink's thread gave up.
    private func read(_ batch: inout AppliedBatch) throws -> Bool {
        let name = applier.topic.name
        var relations: [UInt32: RelationSchema] = [:]
        var open = false
        while let raw = try reader.next(limit: limit) {
            switch try raw.decode() {
            case let .begin(begin):
                open = true
                transforming?.began(begin)
                guard add(.begin(begin, name, raw.offset)) else { return false }
            case let .relation(relation):
                relations[relation.id] = relation
                if let transforming {
                    if let target = try transforming.targetSchema(relation, topic: name) {
                        guard add(.prepare(target, name)) else { return false }
                    }
                } else {
                    guard add(.prepare(relation, name)) else { return false }
                }
            case let .change(record):
                guard let relation = relations[record.relationID] else {
                    throw ConnectorError.fatal("topic \(name): change at offset \(raw.offset) has no schema record")
                }
                let change = Change(topic: name, offset: raw.offset, record: record, relation: relation)
                if let transforming {
                    var going = true
                    try transforming.transformed(change) { out in if going { going = add(.apply(out)) } }
                    guard going else { return false }
                } else {
                    guard add(.apply(change)) else { return false }
                }
                batch.events += 1
            case let .commit(commit):
                let position = SinkPosition(topic: name, offset: raw.offset, lsn: commit.commitLSN, commitTime: commit.commitTime)
                guard add(.commit(commit, position)) else { return false }
                open = false
                batch.position = position
                batch.transactions += 1
                batch.commitTimes.append(commit.commitTime)
                batch.totalEvents = commit.totalEvents
                if batch.events >= applier.maxBatchEvents { return true }
            }
        }
        // The limit sits just after a commit marker, so a batch never ends inside a transaction.
        precondition(!open, "a batch ended inside a transaction")
        return true
    }

    /// Adds a call to the chunk, handing the chunk over when full; false once the sink's thread gave up.
    private func add(_ call: PreparedCall) -> Bool {
        chunk.append(call)
        if case let .apply(change) = call { bytes += (change.new?.range.count ?? 0) + (change.old?.range.count ?? 0) }
        guard chunk.count >= ApplyPipeline.chunkCalls || bytes >= ApplyPipeline.chunkBytes else { return true }
        defer {
            chunk = []
            chunk.reserveCapacity(ApplyPipeline.chunkCalls)
            bytes = 0
        }
        return queue.put(chunk)
    }
}

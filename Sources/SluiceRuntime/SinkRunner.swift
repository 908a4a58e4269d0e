import Foundation
import Logging
import SluiceKit
import SluiceLog

/// Runs one sink on its own thread: reads its topics from the positions stored in the target,
/// hands it batches of whole transactions, and retries a failing target with capped backoff.
final class SinkRunner: @unchecked Sendable {
    let sink: any Sink
    let name: String
    let topics: [any Topic]
    /// Set once every source has stopped: apply what the topics hold, then stop.
    let drain: StopSignal
    let health: ConnectorHealth
    let logger: Logger
    let maxBatchEvents: Int
    let onFatal: @Sendable (String, Int32) -> Void
    let progress: SinkProgress
    private let finished = DispatchSemaphore(value: 0)

    /// How long a draining sink keeps retrying an unreachable target before giving up.
    static let drainTimeoutMillis = 10_000

    init(sink: any Sink, name: String, topics: [any Topic], drain: StopSignal, health: ConnectorHealth,
         logger: Logger, maxBatchEvents: Int = 20_000, progress: SinkProgress,
         onFatal: @escaping @Sendable (String, Int32) -> Void) {
        self.sink = sink
        self.name = name
        self.topics = topics
        self.drain = drain
        self.health = health
        self.logger = logger
        self.maxBatchEvents = maxBatchEvents
        self.progress = progress
        self.onFatal = onFatal
    }

    func start() {
        let thread = Thread { [self] in
            run()
            finished.signal()
        }
        thread.name = "sluice-sink-\(name)"
        thread.stackSize = 4 << 20
        thread.start()
    }

    func wait() { finished.wait() }

    private func run() {
        health.set("sink", name, .starting, logger: logger)
        var backoff = Backoff()
        var drainStarted: Date?
        while true {
            do {
                try runConnected(backoff: &backoff)
                break
            } catch let error as ConnectorError {
                sink.rollbackBatch()
                sink.close()
                if case let .misconfigured(reason) = error {
                    health.set("source", name, .stopped, logger: logger)
                    onFatal(reason, 2)
                    return
                }
                if case let .fatal(reason) = error {
                    health.set("sink", name, .stopped, logger: logger)
                    onFatal(reason, 1)
                    return
                }
                health.set("sink", name, .retrying(error.description), logger: logger)
                if drain.isStopped {
                    drainStarted = drainStarted ?? Date()
                    if Date().timeIntervalSince(drainStarted!) * 1000 > Double(Self.drainTimeoutMillis) {
                        logger.warning("sink \(name) stopped before catching up: its target is unreachable")
                        break
                    }
                }
                Thread.sleep(forTimeInterval: Double(backoff.next()) / 1000)
            } catch {
                sink.rollbackBatch()
                sink.close()
                health.set("sink", name, .stopped, logger: logger)
                onFatal("sink \(name): \(error)", 1)
                return
            }
        }
        sink.close()
        health.set("sink", name, .stopped, logger: logger)
    }

    private func runConnected(backoff: inout Backoff) throws {
        let positions = try sink.open(context: SinkContext(name: name, logger: logger))
        var readers: [(topic: any Topic, reader: any TopicReader)] = []
        for topic in topics {
            let stored = positions[topic.name]
            try checkResumable(topic: topic, stored: stored)
            let start = stored.map { $0.offset + 1 } ?? 0
            let reader = try topic.makeReader(from: start)
            if reader.position > start {
                throw ConnectorError.fatal("""
                    sink \(name) needs topic \(topic.name) from offset \(start), but retention already deleted \
                    offsets before \(reader.position). Re-snapshot this target (sluice backfill) or raise retention.
                    """)
            }
            readers.append((topic, reader))
            progress.update(topic: topic.name, position: stored)
        }
        health.set("sink", name, .running, logger: logger)
        backoff.reset()
        while true {
            var applied = false
            for (topic, reader) in readers {
                guard let durable = topic.durableCommit, reader.position <= durable.offset else { continue }
                try applyBatch(topic: topic, reader: reader, limit: durable.offset + 1)
                applied = true
            }
            if !applied {
                if drain.isStopped { return }
                _ = readers[0].topic.waitForCommit(after: readers[0].reader.position == 0 ? nil : readers[0].reader.position - 1,
                                                   timeoutMillis: readers.count == 1 ? 200 : 20)
            }
        }
    }

    /// A stored position past the topic's end means the topic was recreated: refuse to guess.
    private func checkResumable(topic: any Topic, stored: SinkPosition?) throws {
        guard let stored else { return }
        let end = topic.durableCommit?.offset
        guard let end, stored.offset <= end else {
            throw ConnectorError.fatal("""
                sink \(name) has applied topic \(topic.name) up to offset \(stored.offset) (LSN \(stored.lsn)), \
                but the topic ends \(end.map { "at offset \($0)" } ?? "empty"): the topic was deleted or recreated. \
                Empty the target (and its sluice_offsets rows) to replicate from scratch.
                """)
        }
    }

    private func applyBatch(topic: any Topic, reader: any TopicReader, limit: UInt64) throws {
        try sink.beginBatch()
        var relations: [UInt32: RelationSchema] = [:]
        var events = 0
        var last: SinkPosition?
        var transactions = 0
        let started = DispatchTime.now()
        reading: while let raw = try reader.next(limit: limit) {
            switch try raw.decode() {
            case let .begin(begin):
                try sink.beginTransaction(begin, topic: topic.name)
            case let .relation(relation):
                relations[relation.id] = relation
                try sink.prepare(relation, topic: topic.name)
            case let .change(change):
                guard let relation = relations[change.relationID] else {
                    throw ConnectorError.fatal("topic \(topic.name): change at offset \(raw.offset) has no schema record")
                }
                try sink.apply(Change(topic: topic.name, offset: raw.offset, record: change, relation: relation))
                events += 1
            case let .commit(commit):
                let position = SinkPosition(topic: topic.name, offset: raw.offset, lsn: commit.commitLSN,
                                            commitTime: commit.commitTime)
                try sink.commitTransaction(commit, position: position)
                last = position
                transactions += 1
                if events >= maxBatchEvents { break reading }
            }
        }
        guard let last else {
            sink.rollbackBatch()
            return
        }
        try sink.commitBatch(positions: [last])
        progress.applied(topic: topic.name, position: last, events: events, transactions: transactions,
                         nanos: DispatchTime.now().uptimeNanoseconds - started.uptimeNanoseconds)
    }
}

/// What a sink has applied, for status and metrics.
public final class SinkProgress: @unchecked Sendable {
    public let sink: String
    private let lock = NSLock()
    private var positions: [String: SinkPosition] = [:]
    public private(set) var appliedEvents: UInt64 = 0
    public private(set) var appliedTransactions: UInt64 = 0
    /// Called after each applied batch (metrics hook).
    public var onApplied: (@Sendable (_ topic: String, _ events: Int, _ transactions: Int, _ nanos: UInt64) -> Void)?

    init(sink: String) { self.sink = sink }

    func update(topic: String, position: SinkPosition?) {
        lock.lock()
        positions[topic] = position
        lock.unlock()
    }

    func applied(topic: String, position: SinkPosition, events: Int, transactions: Int, nanos: UInt64) {
        lock.lock()
        positions[topic] = position
        appliedEvents += UInt64(events)
        appliedTransactions += UInt64(transactions)
        let hook = onApplied
        lock.unlock()
        hook?(topic, events, transactions, nanos)
    }

    public var allPositions: [SinkPosition] {
        lock.lock()
        defer { lock.unlock() }
        return positions.values.sorted { $0.topic < $1.topic }
    }

    public func position(topic: String) -> SinkPosition? {
        lock.lock()
        defer { lock.unlock() }
        return positions[topic]
    }
}

import Foundation
import Logging
import Metrics
import SluiceKit

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
    private let batchTimer: Timer
    private let delayTimer: Timer
    private let retries: Counter

    /// How long a stop waits for sinks to apply what the topics hold while a target is unreachable.
    static let drainTimeoutMillis = 10_000
    /// Set by the pipeline: true once a stop's deadline passed (a sink retrying inside a call gives up).
    let deadlinePassed: @Sendable () -> Bool

    init(sink: any Sink, name: String, topics: [any Topic], drain: StopSignal, health: ConnectorHealth,
         logger: Logger, maxBatchEvents: Int = 100_000, progress: SinkProgress,
         deadlinePassed: @escaping @Sendable () -> Bool = { false },
         onFatal: @escaping @Sendable (String, Int32) -> Void) {
        self.deadlinePassed = deadlinePassed
        self.sink = sink
        self.name = name
        self.topics = topics
        self.drain = drain
        self.health = health
        self.logger = logger
        self.maxBatchEvents = maxBatchEvents
        self.progress = progress
        self.onFatal = onFatal
        batchTimer = Timer(label: "sluice_sink_batch_duration_seconds", dimensions: [("sink", name)],
                           preferredDisplayUnit: .seconds)
        delayTimer = Timer(label: "sluice_sink_commit_to_apply_seconds", dimensions: [("sink", name)],
                           preferredDisplayUnit: .seconds)
        retries = Counter(label: "sluice_sink_retries_total", dimensions: [("sink", name)])
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

    /// Waits until `deadline`; false if the runner is still busy then.
    func wait(until deadline: DispatchTime) -> Bool { finished.wait(timeout: deadline) == .success }

    private func run() {
        health.set("sink", name, .starting, logger: logger)
        var supervisor = Supervisor(role: .sink)
        supervisor.drainMillis = Self.drainTimeoutMillis
        while true {
            let failure: Supervisor.Failure
            do {
                try runConnected(supervisor: &supervisor)
                break
            } catch let error as TopicUnreadable {
                failure = .damaged(error.description)
            } catch let error as ConnectorError {
                failure = Supervisor.Failure(error)
            } catch {
                failure = .fatal("\(error)")
            }
            sink.rollbackBatch()
            sink.close()
            let draining = drain.isStopped
            if draining { supervisor.draining(at: Date()) }
            var action = supervisor.failed(failure, at: Date())
            if draining, deadlinePassed(), case .retry = action { action = .stop(report: .stopped, exitCode: nil) }
            switch action {
            case let .retry(after, report):
                health.set("sink", name, report, logger: logger)
                retries.increment()
                // A drain that begins meanwhile wakes the sleep: its deadline then bounds the next waits.
                if draining { Thread.sleep(forTimeInterval: Double(after) / 1000) } else { drain.sleep(millis: after) }
            case let .stop(report, exitCode):
                if let exitCode {
                    health.set("sink", name, report, logger: logger)
                    let named = withSubject(failure.reason, kind: "sink", name: name)
                    onFatal(named, exitCode)
                    return
                }
                if case .failed = report {
                    health.set("sink", name, report, logger: logger)
                    return
                }
                logger.warning("sink \(name) stopped before catching up: its target is unreachable")
                sink.close()
                health.set("sink", name, .stopped, logger: logger)
                return
            }
        }
        sink.close()
        health.set("sink", name, .stopped, logger: logger)
    }

    private func runConnected(supervisor: inout Supervisor) throws {
        let health = self.health, name = self.name, logger = self.logger
        let context = SinkContext(name: name, logger: logger, retrying: { reason in
            health.set("sink", name, reason.map { .retrying($0) } ?? .running, logger: logger)
        }, shouldGiveUp: deadlinePassed)
        let positions = try sink.open(context: context)
        var readers: [(topic: any Topic, reader: any TopicReader)] = []
        for topic in topics {
            let stored = positions[topic.name]
            try checkResumable(topic: topic, stored: stored)
            let start = stored.map { $0.offset + 1 } ?? 0
            let reader = TopicUnreadable.Marking(try topic.makeReader(from: start))
            if reader.position > start {
                throw ConnectorError.fatal("""
                    sink \(name) needs topic \(topic.name) from offset \(start), but retention already deleted \
                    offsets before \(reader.position): it fell behind retention. Re-copy this target (empty it, delete its \
                    sluice_offsets row, then run sluice backfill) or raise retention.
                    """)
            }
            readers.append((topic, reader))
            progress.update(topic: topic.name, position: stored,
                            totalEvents: try stored.flatMap { try topic.commitMarker(at: $0.offset)?.totalEvents } ?? 0)
        }
        // A reopened target counts as recovered only once it has applied a batch (or, with nothing to
        // apply, answered a probe): connecting alone proves little.
        var proven = false
        func healthy() {
            guard !proven else { return }
            proven = true
            health.set("sink", name, supervisor.healthy(at: Date()), logger: logger)
        }
        if health.state("sink", name).map({ if case .starting = $0 { return true } else { return false } }) ?? true {
            // The first start counts as running only once the target answers.
            try sink.probe()
            healthy()
        }
        var idleSince = DispatchTime.now()
        while true {
            var applied = false
            for (topic, reader) in readers {
                guard let durable = topic.durableCommit, reader.position <= durable.offset else { continue }
                try applyBatch(topic: topic, reader: reader, limit: durable.offset + 1)
                applied = true
                healthy()
            }
            if applied {
                idleSince = DispatchTime.now()
            } else {
                if let (topic, damage) = readers.lazy.compactMap({ entry in entry.topic.damage.map { (entry.topic, $0) } }).first {
                    throw TopicUnreadable(description: """
                        sink \(name) applied topic \(topic.name) up to its last commit marker and stops there: \(damage). \
                        It is not caught up: see the source's message for how to recover.
                        """)
                }
                if drain.isStopped { return }
                if !proven || DispatchTime.now().uptimeNanoseconds - idleSince.uptimeNanoseconds > 1_000_000_000 {
                    // Idle because the topic cannot be read (its servers down) is retrying, not running.
                    for (topic, _) in readers { try topic.requireReadable() }
                    try sink.probe()
                    if let durable = sink.durablePositions() { progress.durable(durable) }
                    healthy()
                    idleSince = DispatchTime.now()
                }
                _ = readers[0].topic.waitForCommit(after: readers[0].reader.position == 0 ? nil : readers[0].reader.position - 1,
                                                   timeoutMillis: readers.count == 1 ? 200 : 20)
            }
        }
    }

    /// A stored position past the topic's end, or one where the topic now holds another transaction,
    /// means the topic lost transactions or was recreated: refuse to guess.
    private func checkResumable(topic: any Topic, stored: SinkPosition?) throws {
        guard let stored else { return }
        // No end known may be servers that do not answer, not an empty topic: retry, do not judge.
        if topic.durableCommit == nil { try topic.requireReadable() }
        let end = topic.durableCommit?.offset
        let damage = topic.damage.map { " (\($0))" } ?? ""
        if let found = topic.damage, end.map({ stored.offset > $0 }) ?? true {
            // Damage, not an empty or recreated topic: the fix starts with the damaged file, named here.
            throw TopicUnreadable(description: """
                sink \(name) has applied topic \(topic.name) up to offset \(stored.offset) (LSN \(stored.lsn)), but the \
                topic is damaged and \(end.map { "can be read only up to offset \($0)" } ?? "none of it can be read"): \(found). \
                If the source is re-snapshotted instead of the topic restored, empty the target (and its sluice_offsets rows) too.
                """)
        }
        guard let end, stored.offset <= end else {
            throw ConnectorError.fatal("""
                sink \(name) has applied topic \(topic.name) up to offset \(stored.offset) (LSN \(stored.lsn)), \
                but the topic ends \(end.map { "at offset \($0)" } ?? "empty"): the topic lost transactions or was \
                deleted or recreated\(damage). Empty the target (and its sluice_offsets rows) to replicate from scratch.
                """)
        }
        guard stored.offset >= topic.firstOffset else { return }
        let marker = try topic.commitMarker(at: stored.offset)
        guard let marker, marker.commitLSN == stored.lsn else {
            throw ConnectorError.fatal("""
                sink \(name) has applied topic \(topic.name) up to offset \(stored.offset) (LSN \(stored.lsn)), but \
                the topic holds \(marker.map { "the commit of LSN \($0.commitLSN)" } ?? "no commit marker") at that \
                offset: the topic lost transactions or was recreated since\(damage), and continuing would skip or \
                repeat some. Empty the target (and its sluice_offsets rows) to replicate from scratch.
                """)
        }
    }

    private func applyBatch(topic: any Topic, reader: any TopicReader, limit: UInt64) throws {
        let started = DispatchTime.now()
        let batch = try BatchApplier(sink: sink, topic: topic, maxBatchEvents: maxBatchEvents)
            .applyBatch(from: reader, limit: limit)
        guard let last = batch.position else { return }
        batchTimer.recordNanoseconds(Int64(DispatchTime.now().uptimeNanoseconds - started.uptimeNanoseconds))
        let applied = nowMicros()
        for time in batch.commitTimes { delayTimer.recordMicroseconds(max(0, applied - time)) }
        progress.applied(topic: topic.name, position: last, totalEvents: batch.totalEvents, events: batch.events,
                         transactions: batch.transactions)
        if let durable = sink.durablePositions() { progress.durable(durable) }
    }
}

/// A topic a sink cannot read on from its position: a damaged record, or transactions its source
/// recorded as lost. Not the target's fault, and possibly repaired by the operator while the daemon
/// runs, so the sink fails but reads again now and then (``Supervisor``) instead of for good.
struct TopicUnreadable: Error, CustomStringConvertible {
    let description: String

    /// A reader whose failures, other than an outage of the topic's store, are the topic's.
    final class Marking: TopicReader {
        let reader: any TopicReader
        var position: UInt64 { reader.position }

        init(_ reader: any TopicReader) { self.reader = reader }

        func next(limit: UInt64) throws -> RawRecord? {
            do {
                return try reader.next(limit: limit)
            } catch let error as ConnectorError {
                guard case let .fatal(reason) = error else { throw error }
                throw TopicUnreadable(description: reason)
            } catch {
                throw TopicUnreadable(description: "\(error)")
            }
        }
    }
}

/// What a sink has applied, for status and metrics.
public final class SinkProgress: @unchecked Sendable {
    struct Entry {
        var position: SinkPosition?
        /// The topic's event count up to the applied commit marker.
        var totalEvents: UInt64
    }

    public let sink: String
    private let lock = NSLock()
    private var entries: [String: Entry] = [:]
    /// What the target holds durably, for a sink whose commits become durable later (nil: as applied).
    private var durable: [String: SinkPosition]?
    private var counters: [String: (events: Counter, transactions: Counter)] = [:]

    init(sink: String) { self.sink = sink }

    func update(topic: String, position: SinkPosition?, totalEvents: UInt64) {
        lock.lock()
        entries[topic] = Entry(position: position, totalEvents: totalEvents)
        lock.unlock()
        _ = counters(topic)  // published from the first scrape, at 0
    }

    private func counters(_ topic: String) -> (events: Counter, transactions: Counter) {
        lock.lock()
        defer { lock.unlock() }
        if let existing = counters[topic] { return existing }
        let made = (Counter(label: "sluice_sink_events_total", dimensions: [("sink", sink), ("topic", topic)]),
                    Counter(label: "sluice_sink_transactions_total", dimensions: [("sink", sink), ("topic", topic)]))
        counters[topic] = made
        return made
    }

    func applied(topic: String, position: SinkPosition, totalEvents: UInt64, events: Int, transactions: Int) {
        lock.lock()
        entries[topic] = Entry(position: position, totalEvents: totalEvents)
        lock.unlock()
        let counter = counters(topic)
        counter.events.increment(by: Int64(events))
        counter.transactions.increment(by: Int64(transactions))
    }

    func durable(_ positions: [String: SinkPosition]) {
        lock.lock()
        durable = positions
        lock.unlock()
    }

    /// The offset this sink would read next in `topic` after a crash of its target: retention keeps it.
    /// Nil until it has read its stored position.
    public func nextOffset(topic: String) -> UInt64? {
        lock.lock()
        defer { lock.unlock() }
        guard let entry = entries[topic] else { return nil }
        if let durable { return durable[topic].map { $0.offset + 1 } ?? 0 }
        return entry.position.map { $0.offset + 1 } ?? 0
    }

    /// Events applied, over every topic (the topics' event counts up to each applied commit marker).
    public var appliedEvents: UInt64 {
        lock.lock()
        defer { lock.unlock() }
        return entries.values.reduce(0) { $0 + $1.totalEvents }
    }

    /// Whether the sink has read its stored positions from its target.
    public var knowsPositions: Bool {
        lock.lock()
        defer { lock.unlock() }
        return !entries.isEmpty
    }

    public var allPositions: [SinkPosition] {
        lock.lock()
        defer { lock.unlock() }
        return entries.values.compactMap(\.position).sorted { $0.topic < $1.topic }
    }

    /// Events committed to `topic` but not applied yet, and how long the oldest of them has waited.
    /// Until the sink has read its position (its target unreachable since the start), every retained
    /// event counts, as `sluice status` counts them when it cannot read the target's offsets.
    public func lag(in topic: any Topic) -> (events: UInt64, seconds: Double) {
        lock.lock()
        let entry = entries[topic.name]
        lock.unlock()
        return Self.lag(in: topic, applied: entry?.totalEvents ?? 0, position: entry?.position)
    }

    /// The lag of a sink that has applied `applied` events, up to `position` (nil: none yet).
    public static func lag(in topic: any Topic, applied: UInt64 = 0, position: SinkPosition? = nil) -> (events: UInt64, seconds: Double) {
        guard let durable = topic.durableCommit, durable.commit.totalEvents > applied else { return (0, 0) }
        let next = position.map { $0.offset + 1 } ?? topic.firstOffset
        var seconds = 0.0
        if case let .begin(begin)? = try? topic.record(at: next) {
            seconds = max(0, Double(nowMicros() - begin.commitTime) / 1_000_000)
        }
        return (durable.commit.totalEvents - applied, seconds)
    }
}

import Foundation
import SluiceKit
import SluiceNATS

/// Appends a source's transactions to its topic's stream. The source's thread fills a ``Batcher``;
/// a publisher thread with its own connection sends the messages in order, each with a deterministic
/// `Nats-Msg-Id` and the expected last sequence, and publishes the durable commit once the server
/// acknowledged the batch holding it. While the publisher is busy, committed transactions gather
/// into the next batch (group commit); at most `maxQueued` messages wait, which throttles the source.
final class JetStreamTopicWriter: TopicWriter, @unchecked Sendable {
    let jetStreamTopic: JetStreamTopic
    var topic: any Topic { jetStreamTopic }
    private let subjects: Subjects

    // Guarded by `state` (the topic's condition).
    private var batcher: Batcher
    private var queue: [Batcher.Outgoing] = []
    private var failure: ConnectorError?
    private var stopping = false
    private var publisherDone = false
    private(set) var lastCommit: CommittedPosition?
    private var publisher: Thread?
    // The publisher's, guarded by `state`: queue[0..<sent] are published and await their acks.
    private var sent = 0
    private var outstanding = 0
    private var acknowledged = Set<UInt64>()
    private var resending = false
    private var drainDeadline = Date.distantPast

    /// Messages waiting or in flight at most: past that the source waits (memory stays bounded,
    /// at most this many messages of up to 900 KB).
    static let maxQueued = 48
    /// Bytes waiting or in flight at most (the source waits past it): at replicas 3 on an idle
    /// machine the source outran the acknowledgements and 48 messages of half the maximum size
    /// took the process to 160 MB.
    static let maxQueuedBytes = 16 << 20
    private var queuedBytes = 0
    /// Messages published and not yet acknowledged at most.
    static let maxInFlight = 32
    /// Below this many in flight a committed transaction is sent at once; above, it waits for an ack
    /// or for half a message's worth of others. One: while a message is in flight the next gathers
    /// (each transaction waits one acknowledgement at most), so a steady trickle of transactions is
    /// not a message each, whose replication cost the servers' CPU (three nodes: 35 s in 30 s at
    /// 2,000 tx/s with 4), which the whole machine then waited for.
    static let eagerInFlight = 1
    /// At least this long between two messages of whole transactions, unless half a message is
    /// waiting: each replicated message costs the servers 1.2–2 ms of CPU however small (three
    /// nodes), so a fast stream of small transactions goes as at most 100 messages a second. A
    /// transaction after a quiet moment goes at once. 4 ms left the servers busy enough to delay
    /// PostgreSQL's walsender (p99 170–250 ms at 2,000 tx/s; 12 ms: 53 ms, 25 ms: 58 ms).
    static let minPublishIntervalNanos: UInt64 = 10_000_000
    private var lastHandOff: UInt64 = 0
    /// The publisher waits out the interval (a commit need not wake it).
    private var lingering = false
    static let ackTimeoutMillis = 5_000
    static let resendTimeoutMillis = 2_000
    /// Seconds of failed publishing before the source reports the outage.
    static let reportOutageAfter: TimeInterval = 3
    private var failingSince: Date?
    var nextOffset: UInt64 {
        state.lock()
        defer { state.unlock() }
        return batcher.nextOffset
    }

    private var state: NSCondition { jetStreamTopic.state }

    /// Connects, creates the stream if missing (or refuses one with other settings), and finds the
    /// last commit marker: the source resumes after it.
    init(topic: JetStreamTopic) throws {
        jetStreamTopic = topic
        subjects = topic.subjects
        let store = topic.store
        var options = JetStreamOptions()
        options.maxPendingAsync = Self.maxInFlight * 2
        options.asyncAckTimeoutMilliseconds = Self.ackTimeoutMillis
        let wake = topic.state
        options.onAsyncAck = { _ in
            wake.lock()
            wake.broadcast()
            wake.unlock()
        }
        let jetStream = try store.context(purpose: "writer", options: options)
        let wanted = store.streamConfig(topic.name)
        var info = try topic.info()
        if let existing = info {
            let config = existing.config
            if config.replicas != wanted.replicas || Set(config.subjects) != Set(wanted.subjects) {
                throw ConnectorError.misconfigured("""
                    stream \(topic.stream) exists with replicas \(config.replicas) and subjects \
                    \(config.subjects.joined(separator: ", ")), but the configuration asks for replicas \(wanted.replicas) \
                    and subjects \(wanted.subjects.joined(separator: ", ")). Sluice does not change an existing stream: \
                    edit it (nats stream edit \(topic.stream)), or set topics.replicas / stream_prefix to match
                    """)
            }
        } else {
            do {
                info = try store.wrap("create stream \(topic.stream) (replicas \(wanted.replicas))") { try jetStream.addStream(wanted) }
            } catch let error as ConnectorError where ["JetStream error 10005", "JetStream error 10074"].contains(where: "\(error)".contains) {
                // No suitable peers, or not clustered: fewer JetStream servers than replicas asks for.
                throw ConnectorError.misconfigured("""
                    topics.replicas is \(wanted.replicas), but the NATS cluster cannot place \(wanted.replicas) replicas of stream \
                    \(topic.stream) (\(error)): set topics.replicas to at most the number of JetStream servers in the cluster
                    """)
            }
            store.logger.info("created stream", metadata: ["stream": "\(topic.stream)", "replicas": "\(wanted.replicas)"])
        }
        // A replicated stream answers only once its group has a leader (just created, or failing over).
        let deadline = Date(timeIntervalSinceNow: 30)
        while wanted.replicas > 1, info?.cluster?.leader == nil, Date() < deadline {
            usleep(20_000)
            info = (try? topic.info()) ?? info
        }
        let batches = topic.subjects.batches
        let last = try store.wrap("read the last batch of \(topic.stream)") {
            try jetStream.lastMessage(topic.stream, subject: batches)
        }
        let recovered: CommittedPosition?
        do {
            recovered = try last.flatMap(lastCommit(of:))
        } catch {
            throw ConnectorError.fatal("topic \(topic.name): the last batch of stream \(topic.stream) is unreadable: \(error)")
        }
        batcher = Batcher(nextSequence: (info?.state.lastSequence ?? 0) + 1, maxBytes: JetStreamStore.maxMessageBytes)
        lastCommit = recovered
        topic.state.lock()
        topic.hasWriter = true
        topic.writerDurable = recovered
        topic.recent.reset(next: batcher.nextSequence)
        topic.state.unlock()
        // The context moves to the publisher thread; this thread does not touch it again.
        let handOff = Confined(jetStream)
        let thread = Thread { [self] in publish(using: handOff.value) }
        thread.name = "sluice-publish-\(topic.name)"
        publisher = thread
        thread.start()
    }

    deinit { close() }

    private var closed = false

    func close() {
        guard !closed else { return }
        closed = true
        try? flush()
        state.lock()
        stopping = true
        state.broadcast()
        while !publisherDone { state.wait() }
        jetStreamTopic.hasWriter = false
        jetStreamTopic.recent.reset()
        state.unlock()
    }

    @discardableResult
    func append(_ kind: RecordKind, _ encode: (inout RecordBody) throws -> Void) throws -> UInt64 {
        state.lock()
        defer { state.unlock() }
        if let failure { throw failure }
        // Encoded straight into the next message (under the lock, which the publisher takes per message).
        let offset = try batcher.append(kind: kind, encode)
        if kind == .commit {
            lastCommit = try batcher.commitLast(offset: offset)
            // With few messages in flight the batch goes now (latency); with more, transactions gather
            // into bigger messages until one is acknowledged (throughput: group commit).
            if batcher.committedBytes >= JetStreamStore.maxMessageBytes / 2 {
                handOff()
            } else if queue.count < Self.eagerInFlight {
                if lingered() { handOff() } else if !lingering { state.broadcast() }
            }
            try enqueue()
        } else if batcher.hasOutgoing {
            try enqueue()
        }
        return offset
    }

    /// Whether the interval since the last message of whole transactions has passed. Called with `state` locked.
    private func lingered(now: UInt64 = DispatchTime.now().uptimeNanoseconds) -> Bool {
        now &- lastHandOff >= Self.minPublishIntervalNanos
    }

    /// Called with `state` locked.
    private func handOff() {
        batcher.handOffCommitted()
        lastHandOff = DispatchTime.now().uptimeNanoseconds
    }

    /// Called with `state` locked.
    private func queueUp(_ handed: [Batcher.Outgoing]) {
        queue += handed
        queuedBytes += handed.reduce(0) { $0 + $1.body.count }
    }

    /// Moves handed-off messages to the queue, waiting while it is full.
    private func enqueue() throws {
        // Wake the publisher only for new messages: a wake per record cost more CPU than the publishing.
        let handed = batcher.takeOutgoing()
        if !handed.isEmpty {
            queueUp(handed)
            state.broadcast()
        }
        while queue.count > Self.maxQueued || (queuedBytes > Self.maxQueuedBytes && queue.count > 1) {
            if let failure { throw failure }
            state.wait()
        }
    }

    func checkHealth() throws {
        state.lock()
        defer { state.unlock() }
        if let failure { throw failure }
    }

    func abortTransaction() throws {
        state.lock()
        defer { state.unlock() }
        batcher.abort()
    }

    func flush() throws {
        state.lock()
        defer { state.unlock() }
        handOff()
        try enqueue()
        guard let target = lastCommit?.offset else { return }
        while (jetStreamTopic.writerDurable?.offset ?? 0) < target {
            if let failure { throw failure }
            if publisherDone { throw ConnectorError.transient("topic \(topic.name): the publisher stopped") }
            state.wait()
        }
    }

    func recordDamage(_ reason: String?) throws {
        guard reason != nil || jetStreamTopic.damage != nil else { return }
        let jetStream = try jetStreamTopic.store.context(purpose: "damage")
        // Not in the batches' sequence order: the next publish learns the new last sequence.
        _ = try jetStreamTopic.store.wrap("record the damage of \(topic.name)") {
            try jetStream.publish(subjects.damage, Array((reason ?? "").utf8))
        }
        state.lock()
        batcher.skipSequence()
        state.unlock()
    }

    // MARK: Publisher thread

    /// Publishes the queue in order, up to `maxInFlight` messages without waiting for their acks.
    /// Each expects the previous sequence, so a message lost in flight makes every later one fail
    /// too: then the publisher waits for the outstanding acks and republishes from the first message
    /// not acknowledged, synchronously until one succeeds (same message ids: what was stored comes
    /// back as a duplicate), and goes on asynchronously.
    private func publish(using jetStream: JetStream) {
        var pause = 50
        state.lock()
        while true {
            absorbAcks(jetStream)
            if case .fatal? = failure { break }
            // Transactions gathered while the window was full go as soon as it has room.
            if sent >= queue.count && queue.count < Self.eagerInFlight && batcher.hasCommitted {
                let now = DispatchTime.now().uptimeNanoseconds
                if lingered(now: now) || stopping {
                    handOff()
                    queueUp(batcher.takeOutgoing())
                } else if queue.isEmpty {
                    let due = Double(Self.minPublishIntervalNanos - (now &- lastHandOff)) / 1e9
                    lingering = true
                    _ = state.wait(until: Date(timeIntervalSinceNow: due))
                    lingering = false
                    continue
                }
            }
            if queue.isEmpty {
                if stopping { break }
                state.wait()
                continue
            }
            if resending {
                // Drain what is in flight first (bounded: libnats times each one out).
                if outstanding > 0 && Date() < drainDeadline {
                    _ = state.wait(until: min(drainDeadline, Date(timeIntervalSinceNow: 0.05)))
                    continue
                }
                if stopping && failure != nil { break }
                if resendFirst(jetStream, pause: &pause) {
                    resending = false
                    sent = 0
                }
                continue
            }
            guard sent < queue.count && sent < Self.maxInFlight else {
                state.wait()
                continue
            }
            let message = queue[sent]
            sent += 1
            outstanding += 1
            state.unlock()
            let refused: NATSError?
            do {
                try jetStream.publishAsync(subject(of: message), message.body, messageID: messageID(of: message),
                                           expectedLastSequence: message.sequence - 1, tag: message.sequence)
                refused = nil
            } catch {
                refused = error
            }
            state.lock()
            if refused != nil {
                outstanding -= 1
                startResending()
            }
        }
        publisherDone = true
        state.broadcast()
        state.unlock()
    }

    /// Takes the acks that arrived; drops the acknowledged prefix of the queue. Called with `state` locked.
    private func absorbAcks(_ jetStream: JetStream) {
        let acks = jetStream.takeAsyncAcks()
        guard !acks.isEmpty else { return }
        for ack in acks {
            outstanding -= 1
            switch ack.result {
            case let .success(pubAck) where pubAck.sequence == ack.tag:
                acknowledged.insert(ack.tag)
            case let .success(pubAck):
                fail(.fatal("topic \(topic.name): stream \(jetStreamTopic.stream) stored message \(ack.tag) as sequence \(pubAck.sequence): another process writes this topic"))
            case .failure:
                // Lost, timed out or refused (maybe only because an earlier one was): the resend decides.
                if !resending { startResending() }
            }
        }
        outstanding = max(outstanding, 0)
        var advanced = false
        while let first = queue.first, acknowledged.remove(first.sequence) != nil {
            queue.removeFirst()
            queuedBytes -= first.body.count
            if sent > 0 { sent -= 1 }
            if jetStreamTopic.localReaders > 0 {
                jetStreamTopic.recent.append(.init(sequence: first.sequence, kind: first.kind, body: first.body))
            } else {
                jetStreamTopic.recent.reset(next: first.sequence + 1)
            }
            if let commit = first.lastCommit { jetStreamTopic.writerDurable = commit }
            advanced = true
        }
        if advanced {
            // The outage is over: the source may write again (a transient failure must not stick).
            if case .transient? = failure { failure = nil }
            state.broadcast()
        }
    }

    private func startResending() {
        resending = true
        if failingSince == nil { failingSince = Date() }
        drainDeadline = Date(timeIntervalSinceNow: Double(Self.ackTimeoutMillis) / 1000 + 2)
    }

    /// Publishes the queue's first message synchronously; true once it is stored. Called with `state`
    /// locked (unlocked around the publish and the back-off).
    private func resendFirst(_ jetStream: JetStream, pause: inout Int) -> Bool {
        let message = queue[0]
        state.unlock()
        let result: Result<PubAck, NATSError>
        do {
            result = .success(try jetStream.publish(subject(of: message), message.body, messageID: messageID(of: message),
                                                    expectedLastSequence: message.sequence - 1,
                                                    timeoutMilliseconds: Self.resendTimeoutMillis))
        } catch {
            result = .failure(error)
        }
        state.lock()
        switch result {
        case let .success(ack) where ack.sequence == message.sequence:
            acknowledged.insert(message.sequence)
            pause = 50
            failingSince = nil
            absorbAcks(jetStream)
            return true
        case let .success(ack):
            fail(.fatal("topic \(topic.name): stream \(jetStreamTopic.stream) stored message \(message.sequence) as sequence \(ack.sequence): another process writes this topic"))
        case let .failure(error) where error.kind == .wrongLastSequence:
            fail(.fatal("""
                topic \(topic.name): stream \(jetStreamTopic.stream) has last sequence \(error.lastSequence.map(String.init) ?? "?") \
                where \(message.sequence - 1) was expected: another process writes this topic (one source per topic)
                """))
        case let .failure(error) where error.isTransient || error.kind == .noResponders:
            // Retried with the same message id: a lost acknowledgement comes back as a duplicate.
            // An outage of a few seconds is reported (status, /health), a lost ack is not.
            let since = failingSince ?? Date()
            failingSince = since
            if failure == nil && Date().timeIntervalSince(since) >= Self.reportOutageAfter {
                // No responders: nothing stores the subject; the stream is created only at start.
                let hint = error.kind == .noResponders ? " (no stream stores it: was stream \(jetStreamTopic.stream) deleted?)" : ""
                failure = .transient("JetStream publish to \(jetStreamTopic.stream): \(error)\(hint)")
                state.broadcast()
            }
            if stopping && failure != nil { return false }
            state.unlock()
            usleep(useconds_t(pause * 1000))
            pause = min(pause * 2, 2000)
            state.lock()
        case let .failure(error):
            fail(.fatal("JetStream publish to \(jetStreamTopic.stream): \(error)"))
        }
        return false
    }

    private func subject(of message: Batcher.Outgoing) -> String {
        message.kind == .batch ? subjects.batches : subjects.chunks
    }

    private func messageID(of message: Batcher.Outgoing) -> String { "\(jetStreamTopic.stream):\(message.sequence)" }

    /// Called with `state` locked.
    private func fail(_ error: ConnectorError) {
        failure = error
        state.broadcast()
    }
}

/// A handle moved to another thread, which alone uses it from then on.
final class Confined<Value>: @unchecked Sendable {
    let value: Value
    init(_ value: Value) { self.value = value }
}

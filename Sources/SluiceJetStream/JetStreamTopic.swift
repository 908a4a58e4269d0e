import Foundation
import SluiceKit
import SluiceNATS

/// One topic's stream, for every thread of a process. With this process's writer open, the durable
/// commit is what its publisher last had acknowledged; otherwise it is the stream's last batch,
/// asked of the server (and cached for a moment, since sinks ask often).
final class JetStreamTopic: Topic, @unchecked Sendable {
    let name: String
    let store: JetStreamStore
    let stream: String
    let subjects: Subjects

    // Guarded by `state`.
    let state = NSCondition()
    var writerDurable: CommittedPosition?
    var hasWriter = false
    /// What this process's writer had acknowledged last, kept while this process has readers.
    var recent = RecentMessages(maxCount: 256, maxBytes: 8 << 20)
    var localReaders = 0
    private var cached: (at: UInt64, durable: CommittedPosition?)?
    /// Queries from any thread go through one connection, one at a time (guarded by `queryLock`).
    private var queries: JetStream?
    private let queryLock = NSLock()

    static let cacheNanos: UInt64 = 50_000_000

    init(name: String, store: JetStreamStore) {
        self.name = name
        self.store = store
        stream = store.streamName(name)
        subjects = Subjects(store: store, topic: name)
    }

    /// Runs `body` with the shared query context, reconnecting after a failure. Requests are short
    /// and retried for up to `queryMillis`: a request sent while a replicated stream elects its
    /// leader goes unanswered, and one long timeout would stall a sink for its whole length.
    func query<T>(_ what: @autoclosure () -> String, _ body: (JetStream) throws -> T) throws -> T {
        // Not `state`: a query to a dead server waits seconds, and must not hold up the writer meanwhile.
        queryLock.lock()
        defer { queryLock.unlock() }
        let deadline = DispatchTime.now().uptimeNanoseconds + UInt64(Self.queryMillis) * 1_000_000
        while true {
            do {
                if queries == nil {
                    var options = JetStreamOptions()
                    options.requestTimeoutMilliseconds = Self.queryAttemptMillis
                    queries = try store.context(purpose: "query", options: options)
                }
                let jetStream = queries!
                return try store.wrap(what()) {
                    do {
                        return try body(jetStream)
                    } catch let error as NATSError where error.kind == .timeout
                                && DispatchTime.now().uptimeNanoseconds < deadline {
                        // A direct get from a stream that does not exist goes unanswered: not worth waiting for.
                        if case .some(.none) = try? jetStream.streamInfo(stream) { throw error }
                        throw RetryQuery()
                    }
                }
            } catch is RetryQuery {
                continue
            } catch {
                if queries?.connection.state == .closed { queries = nil }
                throw error
            }
        }
    }

    private struct RetryQuery: Error {}
    static let queryMillis = 5_000
    static let queryAttemptMillis = 400

    var durableCommit: CommittedPosition? {
        state.lock()
        if hasWriter {
            defer { state.unlock() }
            return writerDurable
        }
        let now = DispatchTime.now().uptimeNanoseconds
        if let cached, now &- cached.at < Self.cacheNanos || now < cached.at {
            state.unlock()
            return cached.durable
        }
        state.unlock()
        guard let message = try? query("read the last batch of \(stream)", { try $0.lastMessage(stream, subject: subjects.batches, direct: true) })
        else { return cachedDurable }
        let durable = try? lastCommit(of: message)
        state.lock()
        cached = (now, durable)
        state.unlock()
        return durable
    }

    private var cachedDurable: CommittedPosition? {
        state.lock()
        defer { state.unlock() }
        return cached?.durable ?? nil
    }

    func requireReadable() throws { _ = try info() }

    func info() throws -> StreamInfo? {
        try query("look up stream \(stream)") { try $0.streamInfo(stream) }
    }

    var firstOffset: UInt64 {
        guard let first = try? info()?.state.firstSequence, first > 1 else { return 0 }
        return MessageBatch.offset(base: first, index: 0)
    }

    var sizeBytes: UInt64 { (try? info()?.state.bytes) ?? 0 }

    func waitForCommit(after offset: UInt64?, timeoutMillis: Int) -> Bool {
        let deadline = Date(timeIntervalSinceNow: Double(timeoutMillis) / 1000)
        while true {
            if let durable = durableCommit, offset.map({ durable.offset > $0 }) ?? true { return true }
            state.lock()
            if hasWriter {
                let woke = state.wait(until: deadline)
                state.unlock()
                if !woke { return false }
            } else {
                state.unlock()
                if Date() >= deadline { return false }
                usleep(20_000)
            }
        }
    }

    /// The first batch from `sequence` on, from what this process's writer had acknowledged.
    func recentBatch(from sequence: UInt64) -> RecentMessages.Lookup {
        state.lock()
        defer { state.unlock() }
        return hasWriter ? recent.batch(from: sequence) : .missing
    }

    func recentMessage(at sequence: UInt64) -> JetStreamMessage? {
        state.lock()
        defer { state.unlock() }
        guard hasWriter, let entry = recent.message(at: sequence) else { return nil }
        return JetStreamMessage(sequence: entry.sequence, subject: entry.kind == .batch ? subjects.batches : subjects.chunks,
                                data: entry.body)
    }

    func makeReader(from offset: UInt64) throws -> any TopicReader {
        try JetStreamTopicReader(topic: self, from: offset)
    }

    func record(at offset: UInt64) throws -> TopicRecord? {
        guard let end = durableCommit?.offset, offset <= end else { return nil }
        let reader = try JetStreamTopicReader(topic: self, from: offset, streaming: false)
        guard let raw = try reader.next(limit: end + 1) else { return nil }
        return try raw.decode()
    }

    func commitMarker(at offset: UInt64) throws -> CommitRecord? {
        guard let end = durableCommit?.offset, offset <= end else { return nil }
        let reader = try JetStreamTopicReader(topic: self, from: offset, streaming: false)
        guard let raw = try reader.next(limit: end + 1), raw.offset == offset,
              case let .commit(commit) = try raw.decode() else { return nil }
        return commit
    }

    /// Asked by idle sinks several times a second: one round trip a second at most.
    private var damageCache: (at: UInt64, note: String?)?

    var damage: String? {
        let now = DispatchTime.now().uptimeNanoseconds
        queryLock.lock()
        if let damageCache, now &- damageCache.at < 1_000_000_000 || now < damageCache.at {
            queryLock.unlock()
            return damageCache.note
        }
        queryLock.unlock()
        let note = currentDamage
        queryLock.lock()
        damageCache = (now, note)
        queryLock.unlock()
        return note
    }

    private var currentDamage: String? {
        guard let message = try? query("read the damage note of \(stream)", { try $0.lastMessage(stream, subject: subjects.damage, direct: true) }),
              !message.data.isEmpty else { return nil }
        return String(decoding: message.data, as: UTF8.self)
    }
}

/// Reads a topic's batches in order from an offset, with its own connection (on the reader's thread).
/// A batch that closes chunks yields the chunks' records first, one chunk in memory at a time.
/// Streaming, batches come through a pull consumer on the batches' subject, many per round trip
/// (chunks, rare, are got one by one); otherwise (a single lookup) each message is got by sequence.
final class JetStreamTopicReader: TopicReader {
    let topic: JetStreamTopic
    private(set) var position: UInt64
    private let streaming: Bool
    private var jetStream: JetStream?
    private var consumer: StreamReader?
    private var buffered: ArraySlice<JetStreamMessage> = []
    /// When a fetch first came back empty although committed batches were due: a consumer left on a
    /// node that lost the stream's leadership delivers nothing, and is made anew after a while.
    private var drySince: Date?

    /// Batches per fetch: at most ~29 MB in memory with messages of 900 KB.
    static let fetchBatch = 32
    /// The next sequence to fetch.
    private var sequence: UInt64
    /// The stream's last sequence as last seen: a missing message below it was purged or deleted.
    private var knownLast: UInt64 = 0
    private var current: Current?

    /// The records being handed out: a chunk's, then its batch's own.
    struct Current {
        var data: [UInt8]
        var records: MessageBatch.Records
        var base: UInt64
        var index: Int
        /// Chunks still to read before the batch's own records, and the batch itself.
        var pendingChunks: ClosedRange<UInt64>?
        var batch: JetStreamMessage?
    }

    init(topic: JetStreamTopic, from offset: UInt64, streaming: Bool = true) throws {
        self.topic = topic
        self.streaming = streaming
        position = offset
        sequence = max(1, MessageBatch.base(of: offset))
        if streaming {
            topic.state.lock()
            topic.localReaders += 1
            topic.state.unlock()
        }
        if let info = try topic.info() {
            knownLast = info.state.lastSequence
            // Purged by retention: the reader starts at what is left (the runtime then says it fell behind).
            if info.state.firstSequence > 1 && sequence < info.state.firstSequence {
                sequence = info.state.firstSequence
                position = max(position, MessageBatch.offset(base: sequence, index: 0))
            }
        }
    }

    deinit {
        guard streaming else { return }
        topic.state.lock()
        topic.localReaders -= 1
        topic.state.unlock()
    }

    private func context() throws -> JetStream {
        if let jetStream, jetStream.connection.state != .closed { return jetStream }
        let made = try topic.store.context(purpose: "reader")
        jetStream = made
        return made
    }

    /// The message at `sequence` as the stream's leader has it: a direct get may be answered by a
    /// replica still catching up, whose "not found" would look like a deleted message and skip it.
    private func fetch(_ sequence: UInt64) throws -> JetStreamMessage? {
        if let recent = topic.recentMessage(at: sequence) { return recent }
        let js = try context()
        return try topic.store.wrap("read \(topic.stream) sequence \(sequence)") {
            try js.message(topic.stream, sequence: sequence, direct: false)
        }
    }

    func next(limit: UInt64) throws -> RawRecord? {
        while true {
            if var current {
                if let record = current.records.next() {
                    let offset = MessageBatch.offset(base: current.base, index: current.index)
                    guard offset < limit else { return nil }
                    current.index += 1
                    self.current = current
                    guard offset >= position else { continue }
                    position = offset + 1
                    return RawRecord(offset: offset, kind: record.kind, storage: current.data, body: record.body)
                }
                if let failure = current.records.failure {
                    throw ConnectorError.fatal("topic \(topic.name): \(failure)")
                }
                try advance(&current)
                self.current = current
                if current.records.remaining == 0 && current.pendingChunks == nil && current.batch == nil { self.current = nil }
                continue
            }
            // Nothing new can be below the limit once the reader is past the durable end.
            if let end = topic.durableCommit?.offset, position > end { return nil }
            if streaming {
                guard let message = try streamed() else { return nil }
                sequence = message.sequence + 1
                try take(message)
                continue
            }
            guard let message = try fetch(sequence) else {
                if sequence > knownLast {
                    knownLast = try topic.info()?.state.lastSequence ?? knownLast
                    if sequence > knownLast { return nil }
                }
                sequence += 1
                continue
            }
            sequence = message.sequence + 1
            guard message.subject == topic.subjects.batches else { continue }
            try take(message)
        }
    }

    /// Makes a batch the current one, unless all its records are below the position.
    private func take(_ message: JetStreamMessage) throws {
        let header = try decode(message.data, at: message.sequence)
        let base = header.chunks?.lowerBound ?? message.sequence
        if MessageBatch.offset(base: base, index: header.chunkRecords + header.count) <= position { return }
        var next = Current(data: [], records: MessageBatch.Records([], count: 0),
                           base: base, index: 0, pendingChunks: header.chunks, batch: message)
        try advance(&next)
        current = next
    }

    /// The next batch from the consumer (made at `sequence` when there is none), or nil when none
    /// arrived in a moment.
    private func streamed() throws -> JetStreamMessage? {
        while buffered.isEmpty {
            // Just acknowledged by this process's writer: from memory, and the consumer is no longer needed.
            switch topic.recentBatch(from: sequence) {
            case let .found(entry):
                consumer = nil
                drySince = nil
                return JetStreamMessage(sequence: entry.sequence, subject: topic.subjects.batches, data: entry.body)
            case .notYet:
                return nil
            case .missing:
                break
            }
            let reader: StreamReader
            if let consumer {
                reader = consumer
            } else {
                let js = try context()
                let start = sequence
                reader = try topic.store.wrap("read \(topic.stream) from sequence \(start)") {
                    try StreamReader(js, stream: topic.stream, subject: topic.subjects.batches, startSequence: start,
                                     mode: .pull(batch: Self.fetchBatch))
                }
                consumer = reader
            }
            let messages: [JetStreamMessage]
            do {
                messages = try topic.store.wrap("read \(topic.stream) at sequence \(sequence)") {
                    try reader.next(max: Self.fetchBatch, timeoutMilliseconds: 250)
                }
            } catch {
                consumer = nil
                throw error
            }
            guard !messages.isEmpty else {
                let since = drySince ?? Date()
                drySince = since
                if Date().timeIntervalSince(since) > 2 {
                    consumer = nil
                    drySince = nil
                }
                return nil
            }
            drySince = nil
            buffered = messages.drop(while: { $0.sequence < sequence })
        }
        return buffered.popFirst()
    }

    /// Moves to the next chunk, or to the batch's own records once the chunks are done.
    private func advance(_ current: inout Current) throws {
        if let chunks = current.pendingChunks {
            guard let chunk = try fetch(chunks.lowerBound) else {
                throw ConnectorError.fatal("topic \(topic.name): chunk \(chunks.lowerBound) of a committed transaction is missing (purged by the stream's limits?)")
            }
            let header = try decode(chunk.data, at: chunk.sequence)
            guard header.kind == .chunk else {
                throw ConnectorError.fatal("topic \(topic.name): sequence \(chunk.sequence) is not a chunk")
            }
            current.pendingChunks = chunks.lowerBound < chunks.upperBound ? (chunks.lowerBound + 1)...chunks.upperBound : nil
            current.data = chunk.data
            current.records = records(of: current.data, count: header.count)
            return
        }
        if let batch = current.batch {
            let header = try decode(batch.data, at: batch.sequence)
            current.data = batch.data
            current.records = records(of: current.data, count: header.count)
            current.batch = nil
        }
    }

    private func records(of data: [UInt8], count: Int) -> MessageBatch.Records { MessageBatch.Records(data, count: count) }

    private func decode(_ data: [UInt8], at sequence: UInt64) throws -> MessageBatch.Header {
        do {
            return try data.withUnsafeBytes { try MessageBatch.decodeHeader($0) }
        } catch {
            throw ConnectorError.fatal("topic \(topic.name), stream \(topic.stream) sequence \(sequence): \(error)")
        }
    }
}

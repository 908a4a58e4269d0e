internal import CNATS

/// Reads a stream in sequence order from a start sequence, through an ephemeral consumer that
/// needs no acks (AckNone): the server forgets it shortly after the reader is dropped.
///
/// Two ways to get the messages, same results:
/// - `.orderedPush` (the default, the fastest): an ordered push consumer; the server streams with
///   flow control and libnats recreates the consumer from the last sequence seen if it detects a
///   gap. 1 KB messages from one local server: 100–200k msg/s, against 45–70k for `.pull(batch: 100)`
///   and 80–150k for `.pull(batch: 1000)` (ThroughputTests, release build, 2 shared cores).
/// - `.pull(batch:)`: a pull consumer; each `next` call fetches up to `batch` messages (one round
///   trip per batch), returning as soon as one has arrived. Nothing is sent that was not asked for.
///
/// Confinement: the connection's rule (one thread at a time; keeps its `JetStream` alive).
/// Errors: `NATSError`; `next` returns an empty array, not an error, when nothing arrived in time.
public final class StreamReader {
    /// How messages are fetched (see the type's comment for which is faster).
    public enum Mode: Sendable, Equatable {
        case pull(batch: Int)
        case orderedPush
    }

    public let jetStream: JetStream
    public let stream: String
    public let mode: Mode
    /// The sequence after the last message returned (the start sequence before the first).
    public private(set) var nextSequence: UInt64
    private let subscription: OpaquePointer

    /// A reader of `stream` from `startSequence` (1 = from the beginning), of the messages on
    /// `subject` (the stream's subjects, or a narrower filter).
    public init(_ jetStream: JetStream, stream: String, subject: String, startSequence: UInt64,
                mode: Mode = .orderedPush) throws(NATSError) {
        self.jetStream = jetStream
        self.stream = stream
        self.mode = mode
        nextSequence = max(startSequence, 1)
        var options = jsSubOptions()
        jsSubOptions_Init(&options)
        var pointer: OpaquePointer?
        var code = jsErrCode(0)
        let status: natsStatus = stream.withCString { streamName in
            options.Stream = streamName
            options.Config.DeliverPolicy = js_DeliverByStartSequence
            options.Config.OptStartSeq = max(startSequence, 1)
            switch mode {
            case .pull:
                options.Config.AckPolicy = js_AckNone
                options.Config.InactiveThreshold = 30_000_000_000
                return js_PullSubscribe(&pointer, jetStream.context, subject, nil, nil, &options, &code)
            case .orderedPush:
                options.Ordered = true
                return js_SubscribeSync(&pointer, jetStream.context, subject, nil, &options, &code)
            }
        }
        try check(status, "cannot read \(stream) from sequence \(startSequence)", jetStreamCode: code)
        guard let pointer else { throw NATSError("cannot read \(stream): no subscription") }
        subscription = pointer
        if case .orderedPush = mode {
            // The flow control window bounds what is queued here; never drop on the client side.
            natsSubscription_SetPendingLimits(subscription, -1, -1)
        }
    }

    deinit {
        natsSubscription_Unsubscribe(subscription)
        natsSubscription_Destroy(subscription)
    }

    /// Up to `max` next messages in sequence order, waiting at most `timeoutMilliseconds` for the
    /// first; empty when none arrived in that time (the reader is at the end of the stream).
    public func next(max: Int = 512, timeoutMilliseconds: Int = 1_000) throws(NATSError) -> [JetStreamMessage] {
        var messages: [JetStreamMessage] = []
        switch mode {
        case .pull(let batch):
            // What the consumer has now, without waiting; when that is nothing, wait for the first
            // message only. (libnats' Fetch waits until the whole batch or the expiry: at the end of a
            // stream each message would sit there for up to the timeout.)
            messages = try fetch(batch: Swift.min(batch, max), noWait: true, timeoutMilliseconds: timeoutMilliseconds)
            if messages.isEmpty {
                messages = try fetch(batch: 1, noWait: false, timeoutMilliseconds: timeoutMilliseconds)
            }
        case .orderedPush:
            var timeout = Int64(timeoutMilliseconds)
            while messages.count < max {
                var pointer: OpaquePointer?
                let status = natsSubscription_NextMsg(&pointer, subscription, timeout)
                if status == NATS_TIMEOUT { break }
                try check(status, "read \(stream) at sequence \(nextSequence)")
                guard let message = pointer else { break }
                defer { natsMsg_Destroy(message) }
                if let read = consumed(message) { messages.append(read) }
                timeout = 0   // Then only what is already queued.
            }
        }
        return messages
    }

    private func fetch(batch: Int, noWait: Bool, timeoutMilliseconds: Int) throws(NATSError) -> [JetStreamMessage] {
        var request = jsFetchRequest()
        jsFetchRequest_Init(&request)
        request.Batch = Int32(batch)
        request.NoWait = noWait
        request.Expires = Int64(Swift.max(timeoutMilliseconds, 1)) * 1_000_000
        var list = natsMsgList()
        let status = natsSubscription_FetchRequest(&list, subscription, &request)
        if status == NATS_TIMEOUT || status == NATS_NOT_FOUND { return [] }
        try check(status, "read \(stream) at sequence \(nextSequence)")
        defer { natsMsgList_Destroy(&list) }
        var messages: [JetStreamMessage] = []
        messages.reserveCapacity(Int(list.Count))
        for index in 0..<Int(list.Count) {
            if let message = list.Msgs[index], let read = consumed(message) { messages.append(read) }
        }
        return messages
    }

    /// The message with its stream sequence from the delivery's reply subject; nil for anything
    /// that is not a stream message (a heartbeat, a flow-control request).
    private func consumed(_ message: OpaquePointer) -> JetStreamMessage? {
        guard let reply = natsMsg_GetReply(message), let metadata = AckMetadata(reply) else { return nil }
        nextSequence = metadata.streamSequence + 1
        return JetStreamMessage(message, sequence: metadata.streamSequence, time: metadata.timestamp)
    }
}

/// The stream sequence and timestamp in a delivery's ack subject, parsed in place:
/// `$JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>.<consumer seq>.<time>.<pending>`, or the
/// newer `$JS.ACK.<domain>.<account>.<stream>.<consumer>.<delivered>.<stream seq>.…` (12 tokens).
struct AckMetadata {
    var streamSequence: UInt64
    var timestamp: Int64

    init?(_ reply: UnsafePointer<CChar>) {
        var tokens: [(start: Int, end: Int)] = []
        tokens.reserveCapacity(12)
        var index = 0
        var start = 0
        while true {
            let byte = reply[index]
            if byte == 0x2E || byte == 0 {   // "."
                tokens.append((start, index))
                if byte == 0 { break }
                start = index + 1
            }
            index += 1
        }
        guard tokens.count >= 9, Self.equals(reply, tokens[0], "$JS"), Self.equals(reply, tokens[1], "ACK") else { return nil }
        let offset = tokens.count == 9 ? 0 : 2
        guard tokens.count == 9 || tokens.count >= 11,
              let sequence = Self.number(reply, tokens[5 + offset]),
              let time = Self.number(reply, tokens[7 + offset]) else { return nil }
        streamSequence = sequence
        timestamp = Int64(truncatingIfNeeded: time)
    }

    private static func equals(_ text: UnsafePointer<CChar>, _ token: (start: Int, end: Int), _ word: StaticString) -> Bool {
        guard token.end - token.start == word.utf8CodeUnitCount else { return false }
        let bytes = word.utf8Start
        for index in 0..<word.utf8CodeUnitCount where UInt8(bitPattern: text[token.start + index]) != bytes[index] {
            return false
        }
        return true
    }

    private static func number(_ text: UnsafePointer<CChar>, _ token: (start: Int, end: Int)) -> UInt64? {
        guard token.end > token.start else { return nil }
        var value: UInt64 = 0
        for index in token.start..<token.end {
            let digit = UInt8(bitPattern: text[index])
            guard digit >= 0x30, digit <= 0x39 else { return nil }
            let (times, overflow1) = value.multipliedReportingOverflow(by: 10)
            let (sum, overflow2) = times.addingReportingOverflow(UInt64(digit - 0x30))
            guard !overflow1, !overflow2 else { return nil }
            value = sum
        }
        return value
    }
}

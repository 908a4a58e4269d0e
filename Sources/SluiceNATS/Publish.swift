internal import CNATS

/// The server's acknowledgement of a stored message. A value (Sendable, any thread).
public struct PubAck: Sendable, Equatable {
    public var stream: String
    /// The sequence the message got — or, for a duplicate, the sequence it got the first time.
    public var sequence: UInt64
    /// The `Nats-Msg-Id` was already stored inside the duplicate window: nothing was added.
    public var duplicate: Bool

    public init(stream: String, sequence: UInt64, duplicate: Bool) {
        self.stream = stream
        self.sequence = sequence
        self.duplicate = duplicate
    }
}

/// How an asynchronous publish ended: the caller's `tag`, its message id, and the ack or the
/// `NATSError` (a timed-out one may still have been stored: republish with the same id). A value
/// (Sendable): made on libnats' reply thread, read on the owner's.
public struct AsyncPublishAck: Sendable {
    public var tag: UInt64
    public var messageID: String?
    public var result: Result<PubAck, NATSError>

    public init(tag: UInt64, messageID: String?, result: Result<PubAck, NATSError>) {
        self.tag = tag
        self.messageID = messageID
        self.result = result
    }
}

extension JetStream {
    /// Publishes one message and waits for the stream's acknowledgement.
    ///
    /// `messageID` sets `Nats-Msg-Id`: a re-publish with the same id inside the stream's duplicate
    /// window stores nothing and comes back `duplicate`, so a retry after a timeout is safe.
    /// `expectedLastSequence` sets `Nats-Expected-Last-Sequence` (0: the stream must be empty);
    /// a mismatch throws `.wrongLastSequence`.
    @discardableResult
    public func publish(_ subject: String, _ data: [UInt8], headers: NATSHeaders = NATSHeaders(),
                        messageID: String? = nil, expectedLastSequence: UInt64? = nil,
                        timeoutMilliseconds: Int? = nil) throws(NATSError) -> PubAck {
        let message = try makeMessage(subject: subject, data: data, headers: Self.headers(headers, messageID, expectedLastSequence))
        defer { natsMsg_Destroy(message) }
        var pubOptions = jsPubOptions()
        jsPubOptions_Init(&pubOptions)
        pubOptions.MaxWait = Int64(timeoutMilliseconds ?? options.requestTimeoutMilliseconds)
        var ack: UnsafeMutablePointer<jsPubAck>?
        var code = jsErrCode(0)
        let status = js_PublishMsg(&ack, context, message, &pubOptions, &code)
        try check(status, "publish to \(subject)", jetStreamCode: code)
        guard let ack else { throw NATSError("publish to \(subject): no acknowledgement") }
        defer { jsPubAck_Destroy(ack) }
        return PubAck(ack.pointee)
    }

    /// Publishes one message without waiting: its outcome arrives later, tagged with `tag`, in
    /// `takeAsyncAcks()` (and `JetStreamOptions.onAsyncAck`). At most `maxPendingAsync` are in
    /// flight: past that this call waits for acknowledgements, and throws `.timeout` after
    /// `stallWaitMilliseconds`. An error here means the message was not sent (no ack will come).
    ///
    /// Acks of one connection arrive in publish order when all succeed; a failed or timed-out one
    /// may have been stored anyway — republish it with the same `messageID`.
    public func publishAsync(_ subject: String, _ data: [UInt8], headers: NATSHeaders = NATSHeaders(),
                             messageID: String? = nil, expectedLastSequence: UInt64? = nil,
                             tag: UInt64 = 0) throws(NATSError) {
        var message: OpaquePointer? = try makeMessage(subject: subject, data: data,
                                                      headers: Self.headers(headers, messageID, expectedLastSequence))
        let key = UInt(bitPattern: Int(bitPattern: UnsafeRawPointer(message)))
        acks.register(key, tag: tag, messageID: messageID)
        var pubOptions = jsPubOptions()
        jsPubOptions_Init(&pubOptions)
        pubOptions.MaxWait = Int64(options.asyncAckTimeoutMilliseconds)
        let status = js_PublishMsgAsync(context, &message, &pubOptions)
        if status != NATS_OK {
            // Not handed over: libnats left the message to us and will never ack it.
            acks.unregister(key)
            natsMsg_Destroy(message)
            throw NATSError.last(status, "publish to \(subject)")
        }
    }

    /// Asynchronous publishes sent and not yet acknowledged (nor failed).
    public var pendingAsyncCount: Int { acks.pendingCount }

    /// The outcomes of asynchronous publishes that arrived since the last call, in arrival order.
    public func takeAsyncAcks() -> [AsyncPublishAck] { acks.take() }

    /// Waits until every asynchronous publish has its outcome (`js_PublishAsyncComplete`); throws
    /// `.timeout` if some have none after `timeoutMilliseconds`. Outcomes are then in `takeAsyncAcks()`.
    public func waitForAsyncAcks(timeoutMilliseconds: Int) throws(NATSError) {
        var pubOptions = jsPubOptions()
        jsPubOptions_Init(&pubOptions)
        pubOptions.MaxWait = Int64(timeoutMilliseconds)
        try check(js_PublishAsyncComplete(context, &pubOptions),
                  "waiting for \(pendingAsyncCount) asynchronous publish acknowledgements")
    }

    static func headers(_ headers: NATSHeaders, _ messageID: String?, _ expectedLastSequence: UInt64?) -> NATSHeaders {
        var all = headers
        if let messageID { all[NATSHeaders.messageID] = messageID }
        // Set here rather than through jsPubOptions.ExpectLastSeq, where 0 means "no expectation".
        if let expectedLastSequence { all[NATSHeaders.expectedLastSequence] = String(expectedLastSequence) }
        return all
    }
}

extension PubAck {
    init(_ ack: jsPubAck) {
        stream = ack.Stream.map { String(cString: $0) } ?? ""
        sequence = ack.Sequence
        duplicate = ack.Duplicate
    }
}

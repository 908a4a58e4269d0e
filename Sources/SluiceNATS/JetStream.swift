internal import CNATS
import Foundation

/// Settings of a JetStream context: request timeouts and the bound on asynchronous publishes.
/// A value (Sendable); `onAsyncAck` must be `@Sendable`, as libnats calls it on its own thread.
public struct JetStreamOptions: Sendable {
    /// How long a JetStream API request (stream info, get, purge, a synchronous publish) waits for
    /// its answer.
    public var requestTimeoutMilliseconds: Int = 5_000
    /// Asynchronous publishes in flight at most (`jsOptions.PublishAsync.MaxPending`); one more
    /// waits for an acknowledgement, up to `stallWaitMilliseconds`, then fails with `.timeout`.
    public var maxPendingAsync: Int = 1_024
    public var stallWaitMilliseconds: Int = 5_000
    /// An asynchronous publish not acknowledged in this time is reported failed (`.timeout`): it may
    /// or may not have been stored — republish it with the same message id.
    public var asyncAckTimeoutMilliseconds: Int = 5_000
    /// Called on a libnats thread for each asynchronous publish's outcome, as well as collecting
    /// it for `takeAsyncAcks()`. Must be quick and must not touch the connection.
    public var onAsyncAck: (@Sendable (AsyncPublishAck) -> Void)?

    public init() {}
}

/// A JetStream context on a `NATSConnection`: stream management, publishing (synchronous and
/// asynchronous with a bound in flight), reading by sequence, sequential readers, purging.
///
/// Confinement: the connection's rule — one thread at a time, with the connection it came from
/// (it keeps that connection alive). Only the internal acknowledgement box is shared with libnats'
/// threads, behind a lock.
///
/// Errors: `NATSError`, carrying the JetStream error code when the server gave one; "not there"
/// (a stream, a message) is nil, not an error; an expected-last-sequence mismatch is
/// `.wrongLastSequence`, with the stream's actual last sequence in `lastSequence`.
public final class JetStream {
    public let connection: NATSConnection
    let context: OpaquePointer
    let options: JetStreamOptions
    let acks: AsyncAckBox
    let acksClosure: UnsafeMutableRawPointer

    init(connection: NATSConnection, options: JetStreamOptions) throws(NATSError) {
        self.connection = connection
        self.options = options
        acks = AsyncAckBox(handler: options.onAsyncAck)
        acksClosure = asyncAckBoxes.add(acks)
        var jsOptions = jsOptions()
        jsOptions_Init(&jsOptions)
        jsOptions.Wait = Int64(options.requestTimeoutMilliseconds)
        jsOptions.PublishAsync.MaxPending = Int64(options.maxPendingAsync)
        jsOptions.PublishAsync.StallWait = Int64(options.stallWaitMilliseconds)
        jsOptions.PublishAsync.AckHandler = onPublishAck
        jsOptions.PublishAsync.AckHandlerClosure = acksClosure
        var pointer: OpaquePointer?
        let status = natsConnection_JetStream(&pointer, connection.connection, &jsOptions)
        guard status == NATS_OK, let pointer else {
            asyncAckBoxes.remove(acksClosure)
            throw NATSError.last(status, "cannot open a JetStream context")
        }
        context = pointer
    }

    deinit {
        jsCtx_Destroy(context)
        asyncAckBoxes.remove(acksClosure)
    }

    // MARK: Streams

    /// The stream's configuration, state and cluster placement, or nil when there is no such stream.
    public func streamInfo(_ name: String) throws(NATSError) -> StreamInfo? {
        var info: UnsafeMutablePointer<jsStreamInfo>?
        var code = jsErrCode(0)
        let status = js_GetStreamInfo(&info, context, name, nil, &code)
        if code == JSStreamNotFoundErr || (status == NATS_NOT_FOUND && code.rawValue == 0) { return nil }
        try check(status, "stream info of \(name)", jetStreamCode: code)
        guard let info else { return nil }
        defer { jsStreamInfo_Destroy(info) }
        return StreamInfo(info.pointee)
    }

    /// Creates the stream; an existing one with the same configuration is returned as is, one
    /// with another configuration is an error (JetStream 10058).
    @discardableResult
    public func addStream(_ config: StreamConfig) throws(NATSError) -> StreamInfo {
        try configure(config, js_AddStream, "create")
    }

    /// Changes a stream's limits (replicas, max bytes/age, …); the name and storage cannot change.
    @discardableResult
    public func updateStream(_ config: StreamConfig) throws(NATSError) -> StreamInfo {
        try configure(config, js_UpdateStream, "update")
    }

    private typealias StreamCall = (UnsafeMutablePointer<UnsafeMutablePointer<jsStreamInfo>?>?, OpaquePointer?,
                                    UnsafeMutablePointer<jsStreamConfig>?, UnsafeMutablePointer<jsOptions>?,
                                    UnsafeMutablePointer<jsErrCode>?) -> natsStatus

    private func configure(_ config: StreamConfig, _ call: StreamCall, _ verb: String) throws(NATSError) -> StreamInfo {
        try config.withC { (cConfig) throws(NATSError) -> StreamInfo in
            var info: UnsafeMutablePointer<jsStreamInfo>?
            var code = jsErrCode(0)
            let status = call(&info, context, &cConfig, nil, &code)
            try check(status, "cannot \(verb) stream \(config.name)", jetStreamCode: code)
            guard let info else { throw NATSError("no stream info for \(config.name)") }
            defer { jsStreamInfo_Destroy(info) }
            return StreamInfo(info.pointee)
        }
    }

    /// Deletes the stream and everything in it. False when there was none.
    @discardableResult
    public func deleteStream(_ name: String) throws(NATSError) -> Bool {
        var code = jsErrCode(0)
        let status = js_DeleteStream(context, name, nil, &code)
        if code == JSStreamNotFoundErr || (status == NATS_NOT_FOUND && code.rawValue == 0) { return false }
        try check(status, "cannot delete stream \(name)", jetStreamCode: code)
        return true
    }

    /// Removes every message below `sequence` (not `sequence` itself): retention by position.
    /// The stream's first sequence becomes `sequence`. Careful past the end: with `sequence` above
    /// last + 1 the server moves the stream forward, and the next message gets `sequence`.
    public func purge(_ stream: String, below sequence: UInt64) throws(NATSError) {
        var jsOptions = jsOptions()
        jsOptions_Init(&jsOptions)
        jsOptions.Stream.Purge.Sequence = sequence
        var code = jsErrCode(0)
        let status = js_PurgeStream(context, stream, &jsOptions, &code)
        try check(status, "cannot purge \(stream) below \(sequence)", jetStreamCode: code)
    }

    // MARK: Reading one message

    /// The message at `sequence`, or nil when there is none (never written, purged or deleted).
    /// `direct` asks any replica (the stream must allow direct gets), not only the leader.
    public func message(_ stream: String, sequence: UInt64, direct: Bool = false) throws(NATSError) -> JetStreamMessage? {
        var message: OpaquePointer?
        var code = jsErrCode(0)
        let status: natsStatus
        if direct {
            var get = jsDirectGetMsgOptions()
            jsDirectGetMsgOptions_Init(&get)
            get.Sequence = sequence
            status = js_DirectGetMsg(&message, context, stream, nil, &get)
        } else {
            status = js_GetMsg(&message, context, stream, sequence, nil, &code)
        }
        return try received(message, status, code, "get \(stream) sequence \(sequence)")
    }

    /// The last message stored on `subject` (no wildcards), or nil when none is.
    public func lastMessage(_ stream: String, subject: String, direct: Bool = false) throws(NATSError) -> JetStreamMessage? {
        var message: OpaquePointer?
        var code = jsErrCode(0)
        let status: natsStatus
        if direct {
            var get = jsDirectGetMsgOptions()
            jsDirectGetMsgOptions_Init(&get)
            status = subject.withCString { subjectText in
                get.LastBySubject = subjectText
                return js_DirectGetMsg(&message, context, stream, nil, &get)
            }
        } else {
            status = js_GetLastMsg(&message, context, stream, subject, nil, &code)
        }
        return try received(message, status, code, "get the last message of \(stream) on \(subject)")
    }

    private func received(_ message: OpaquePointer?, _ status: natsStatus, _ code: jsErrCode,
                          _ action: @autoclosure () -> String) throws(NATSError) -> JetStreamMessage? {
        if code == JSNoMessageFoundErr || (status == NATS_NOT_FOUND && code.rawValue == 0) { return nil }
        try check(status, action(), jetStreamCode: code)
        guard let message else { return nil }
        defer { natsMsg_Destroy(message) }
        return JetStreamMessage(message, sequence: natsMsg_GetSequence(message), time: natsMsg_GetTime(message))
    }
}

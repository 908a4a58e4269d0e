internal import CNATS
import Foundation

/// Where a connection stands. libnats reconnects by itself; this is what a caller polls to tell
/// "retry soon" (`reconnecting`) from "give up" (`closed`: the reconnect attempts ran out, or
/// `close()` was called). A value (Sendable).
public enum NATSConnectionState: String, Sendable {
    case connecting, connected, reconnecting, disconnected, draining, closed
}

/// What the connection's callbacks saw since it was opened: a value (Sendable), copied out of the
/// locked box libnats' threads write.
public struct NATSConnectionEvents: Sendable, Equatable {
    /// Times the connection was lost (each starts a round of reconnection).
    public var disconnects = 0
    /// Times it came back.
    public var reconnects = 0
    /// The connection closed for good (after `close()` or when reconnection gave up).
    public var closed = false
    /// The last error libnats reported: why the connection dropped, or an asynchronous error
    /// (a slow consumer, a permissions violation).
    public var lastError: NATSError?
}

/// One connection to a NATS server or cluster, reconnecting by itself (see `NATSOptions`).
///
/// Confinement: not thread-safe by contract. Create, use and drop it, and every `JetStream`,
/// `StreamReader` and `AsyncPublisher` made from it, on one thread at a time — the handles
/// (`natsConnection*`, `jsCtx*`, `natsSubscription*`) are OpaquePointers and the class is not
/// Sendable. libnats' own threads only ever touch the internal, locked event box behind `events`.
///
/// Errors: every call throws `NATSError`; a lost connection is `.connection` (transient — libnats
/// is already reconnecting unless `state` is `.closed`).
public final class NATSConnection {
    let connection: OpaquePointer
    private let eventsClosure: UnsafeMutableRawPointer
    private let eventsBox = ConnectionEventsBox()
    /// The server list with secrets hidden, for messages.
    public let displayServers: String

    public init(options: NATSOptions) throws(NATSError) {
        displayServers = options.displayServers
        let natsOptions = try options.make()
        defer { natsOptions_Destroy(natsOptions) }
        let closure = connectionEventBoxes.add(eventsBox)
        eventsClosure = closure
        do throws(NATSError) {
            try check(natsOptions_SetDisconnectedCB(natsOptions, onDisconnected, closure), "cannot set callback")
            try check(natsOptions_SetReconnectedCB(natsOptions, onReconnected, closure), "cannot set callback")
            try check(natsOptions_SetClosedCB(natsOptions, onClosed, closure), "cannot set callback")
            try check(natsOptions_SetErrorHandler(natsOptions, onAsyncError, closure), "cannot set callback")
            var pointer: OpaquePointer?
            let status = natsConnection_Connect(&pointer, natsOptions)
            guard status == NATS_OK || status == NATS_NOT_YET_CONNECTED, let pointer else {
                let error = NATSError.last(status, "cannot connect to \(displayServers)")
                // OpenSSL's verify codes name no file: say which CA did not verify the server.
                let text = error.message.lowercased()
                guard text.contains("ssl handshake error"), ["issuer", "self-signed", "self signed", "verify"].contains(where: text.contains)
                else { throw error }
                let trust = options.caFile.map { "the CA of ca_file \($0)" } ?? "a CA this system trusts (or set ca_file)"
                throw NATSError(error.message + ": the server's certificate is not signed by \(trust)", status: status)
            }
            connection = pointer
        } catch {
            connectionEventBoxes.remove(closure)
            throw error
        }
    }

    deinit {
        natsConnection_Destroy(connection)
        connectionEventBoxes.remove(eventsClosure)
    }

    /// The state now, from libnats itself (the callbacks in `events` may trail it by a moment).
    public var state: NATSConnectionState {
        switch natsConnection_Status(connection) {
        case NATS_CONN_STATUS_CONNECTED: return .connected
        case NATS_CONN_STATUS_CONNECTING: return .connecting
        case NATS_CONN_STATUS_RECONNECTING: return .reconnecting
        case NATS_CONN_STATUS_CLOSED: return .closed
        case NATS_CONN_STATUS_DRAINING_SUBS, NATS_CONN_STATUS_DRAINING_PUBS: return .draining
        default: return .disconnected
        }
    }

    /// Disconnects, reconnects and errors seen so far.
    public var events: NATSConnectionEvents { eventsBox.snapshot }

    /// The URL of the server connected to now, or nil while disconnected.
    public var connectedURL: String? {
        var buffer = [CChar](repeating: 0, count: 256)
        guard natsConnection_GetConnectedUrl(connection, &buffer, buffer.count) == NATS_OK, buffer[0] != 0 else { return nil }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// The servers the client knows: those given and those the cluster announced.
    public var knownServers: [String] {
        var list: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?
        var count: Int32 = 0
        guard natsConnection_GetServers(connection, &list, &count) == NATS_OK, let list else { return [] }
        defer {
            for index in 0..<Int(count) { free(list[index]) }
            free(list)
        }
        return (0..<Int(count)).compactMap { list[$0].map { String(cString: $0) } }
    }

    /// Waits until the server has processed everything sent so far (a PING/PONG round trip).
    public func flush(timeoutMilliseconds: Int = 5_000) throws(NATSError) {
        try check(natsConnection_FlushTimeout(connection, Int64(timeoutMilliseconds)), "flush to \(displayServers)")
    }

    /// Closes the connection for good; `state` becomes `.closed`. Also done when it is dropped.
    public func close() {
        natsConnection_Close(connection)
    }

    /// A JetStream context on this connection (see `JetStream`).
    public func jetStream(options: JetStreamOptions = JetStreamOptions()) throws(NATSError) -> JetStream {
        try JetStream(connection: self, options: options)
    }
}

/// The connection's callback-written state, behind a lock: libnats threads write, the owner reads.
final class ConnectionEventsBox: @unchecked Sendable {
    private let lock = NSLock()
    private var events = NATSConnectionEvents()

    var snapshot: NATSConnectionEvents {
        lock.lock()
        defer { lock.unlock() }
        return events
    }

    func update(_ change: (inout NATSConnectionEvents) -> Void) {
        lock.lock()
        defer { lock.unlock() }
        change(&events)
    }
}

let connectionEventBoxes = CallbackRegistry<ConnectionEventsBox>()

/// The connection's own last error, read inside a callback (where the connection is still valid).
private func lastConnectionError(_ connection: OpaquePointer?, _ what: String) -> NATSError? {
    guard let connection else { return nil }
    var text: UnsafePointer<CChar>?
    let status = natsConnection_GetLastError(connection, &text)
    guard status != NATS_OK else { return nil }
    let detail = text.map { String(cString: $0) } ?? ""
    return NATSError("\(what): \(detail.isEmpty ? String(cString: natsStatus_GetText(status)) : detail)", status: status)
}

private let onDisconnected: natsConnectionHandler = { connection, closure in
    guard let box = connectionEventBoxes.box(closure) else { return }
    // libnats often keeps no error for a dropped socket (it is already reconnecting): say so anyway.
    let error = lastConnectionError(connection, "disconnected")
        ?? NATSError("disconnected: the connection to the server was lost", status: NATS_CONNECTION_DISCONNECTED)
    box.update {
        $0.disconnects += 1
        $0.lastError = error
    }
}

private let onReconnected: natsConnectionHandler = { _, closure in
    connectionEventBoxes.box(closure)?.update { $0.reconnects += 1 }
}

private let onClosed: natsConnectionHandler = { connection, closure in
    guard let box = connectionEventBoxes.box(closure) else { return }
    let error = lastConnectionError(connection, "closed")
    box.update {
        $0.closed = true
        if let error { $0.lastError = error }
    }
}

private let onAsyncError: natsErrHandler = { _, _, status, closure in
    connectionEventBoxes.box(closure)?.update {
        $0.lastError = NATSError("asynchronous error: \(String(cString: natsStatus_GetText(status)))", status: status)
    }
}

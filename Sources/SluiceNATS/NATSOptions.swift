internal import CNATS
import Foundation

/// How to reach a NATS server or cluster: the server URLs, credentials, TLS and reconnection.
/// A value (Sendable): build it anywhere, hand it to `NATSConnection(options:)` on the thread that
/// will own the connection. Nothing is checked until then: a bad URL or an unreadable credentials or
/// CA file is a `NATSError` from `NATSConnection.init`.
public struct NATSOptions: Sendable {
    /// `nats://host:port` (or `tls://host:port`) of one or more servers; the client also learns the
    /// other members of a cluster from the servers themselves.
    public var servers: [String]
    public var user: String?
    public var password: String?
    public var token: String?
    /// A NATS credentials file (a user JWT and its NKey seed, as `nsc` writes them).
    public var credentialsFile: String?
    /// CA certificates (PEM) to verify the servers with; setting it turns TLS on.
    public var caFile: String?
    /// The client name the server shows in its connection list.
    public var name: String = "sluice"
    /// Time to establish each TCP connection and handshake.
    public var connectTimeoutMilliseconds: Int = 2_000
    /// Reconnection attempts per server after a connection was lost; nil retries forever.
    public var maxReconnectAttempts: Int? = nil
    /// Pause between two passes over the server list while reconnecting.
    public var reconnectWaitMilliseconds: Int = 250
    /// Bytes of publishes buffered while reconnecting (libnats' reconnect buffer); a publish that
    /// does not fit fails at once instead of waiting.
    public var reconnectBufferBytes: Int = 8 * 1024 * 1024
    /// Interval of client pings; two unanswered pings mark the connection stale and reconnect it.
    public var pingIntervalMilliseconds: Int = 2_000
    /// Keep retrying the first connection (in the background) instead of failing when no server
    /// answers. Off: `NATSConnection.init` throws `.connection` at once, the caller decides when to retry.
    public var retryOnFailedConnect: Bool = false

    public init(servers: [String]) {
        self.servers = servers
    }

    public init(server: String) {
        self.servers = [server]
    }

    /// The libnats options; the caller destroys them.
    func make() throws(NATSError) -> OpaquePointer {
        var pointer: OpaquePointer?
        try check(natsOptions_Create(&pointer), "cannot create NATS options")
        guard let options = pointer else { throw NATSError("cannot create NATS options", status: NATS_NO_MEMORY) }
        do {
            try apply(to: options)
            return options
        } catch {
            natsOptions_Destroy(options)
            throw error
        }
    }

    private func apply(to options: OpaquePointer) throws(NATSError) {
        guard !servers.isEmpty else { throw NATSError("no NATS server given", status: NATS_INVALID_ARG) }
        let status = withCStringArray(servers) { natsOptions_SetServers(options, $0, Int32(servers.count)) }
        try check(status, "bad NATS server list \(servers.joined(separator: ","))")
        if user != nil || password != nil {
            try check(natsOptions_SetUserInfo(options, user, password), "cannot set NATS user")
        }
        if let token { try check(natsOptions_SetToken(options, token), "cannot set NATS token") }
        if let credentialsFile {
            try check(natsOptions_SetUserCredentialsFromFiles(options, credentialsFile, nil),
                      "cannot use NATS credentials \(credentialsFile)")
        }
        if caFile != nil || servers.contains(where: { $0.hasPrefix("tls://") }) {
            try check(natsOptions_SetSecure(options, true), "cannot turn on TLS")
        }
        if let caFile {
            try check(natsOptions_LoadCATrustedCertificates(options, caFile), "cannot load CA file \(caFile)")
        }
        try check(natsOptions_SetName(options, name), "cannot set NATS client name")
        try check(natsOptions_SetTimeout(options, Int64(connectTimeoutMilliseconds)), "bad connect timeout")
        try check(natsOptions_SetAllowReconnect(options, true), "cannot allow reconnect")
        try check(natsOptions_SetMaxReconnect(options, Int32(clamping: maxReconnectAttempts ?? -1)), "bad reconnect attempts")
        try check(natsOptions_SetReconnectWait(options, Int64(reconnectWaitMilliseconds)), "bad reconnect wait")
        try check(natsOptions_SetReconnectBufSize(options, Int32(clamping: reconnectBufferBytes)), "bad reconnect buffer")
        try check(natsOptions_SetPingInterval(options, Int64(pingIntervalMilliseconds)), "bad ping interval")
        try check(natsOptions_SetMaxPingsOut(options, 2), "bad max pings out")
        // A request waiting for its reply when the connection drops fails at once (.connection)
        // rather than after its whole timeout: the caller retries it with the same message id.
        try check(natsOptions_SetFailRequestsOnDisconnect(options, true), "cannot set fail-requests-on-disconnect")
        if retryOnFailedConnect {
            try check(natsOptions_SetRetryOnFailedConnect(options, true, { _, _ in }, nil), "cannot set retry on failed connect")
        }
    }

    /// The server list with any password or token hidden, for messages.
    public var displayServers: String {
        servers.map(redactNATSURL).joined(separator: ",")
    }
}

/// `nats://user:secret@host:4222` → `nats://user:***@host:4222`; `nats://token@host` → `nats://***@host`.
public func redactNATSURL(_ url: String) -> String {
    guard let scheme = url.range(of: "://"), let at = url[scheme.upperBound...].lastIndex(of: "@") else { return url }
    let userInfo = url[scheme.upperBound..<at]
    if let colon = userInfo.firstIndex(of: ":") {
        return String(url[..<url.index(after: colon)]) + "***" + String(url[at...])
    }
    return String(url[..<scheme.upperBound]) + "***" + String(url[at...])
}

func withCStringArray<R>(_ strings: [String], _ body: (UnsafeMutablePointer<UnsafePointer<CChar>?>) -> R) -> R {
    let duplicated = strings.map { strdup($0) }
    defer { duplicated.forEach { free($0) } }
    var pointers: [UnsafePointer<CChar>?] = duplicated.map { UnsafePointer($0) }
    return pointers.withUnsafeMutableBufferPointer { body($0.baseAddress!) }
}

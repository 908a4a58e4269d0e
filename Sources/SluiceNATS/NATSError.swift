internal import CNATS

/// A libnats failure: the status and its text, libnats' detailed message, and for a JetStream API
/// error the server's JetStream error code (`10059` stream not found, `10071` wrong last sequence).
///
/// Error rule: every throwing call of this module throws a `NATSError` and nothing else; a call that
/// can legitimately find nothing (a stream, a message) returns nil instead of throwing `notFound`.
/// Values only: safe to send to any thread.
public struct NATSError: Error, CustomStringConvertible, Sendable, Equatable {
    /// What kind of failure, for callers that must react differently to each.
    public enum Kind: Sendable, Equatable {
        /// `Nats-Expected-Last-Sequence` did not match (JetStream 10071): someone else wrote, or an
        /// earlier attempt of this write already landed. `lastSequence` holds the server's actual one.
        case wrongLastSequence
        /// The stream does not exist (JetStream 10059).
        case streamNotFound
        /// The message does not exist (JetStream 10037, or a direct get's 404).
        case messageNotFound
        /// No answer in time: the server, or the stream's leader, may be gone or being elected.
        case timeout
        /// Not connected: disconnected, reconnecting, closed, or no server reachable.
        case connection
        /// No JetStream server answered the request (JetStream disabled, or no stream leader yet).
        case noResponders
        /// The server refused the login (user and password, token or credentials): retrying with the
        /// same settings cannot help.
        case authentication
        /// Anything else: a bad argument, a refused configuration, a server-side JetStream error.
        case other
    }

    public let kind: Kind
    let status: natsStatus
    /// The JetStream API error code when the server answered with one (`jsErrCode`), else nil.
    public let jetStreamCode: Int?
    /// What was being done, and libnats' or the server's description.
    public let message: String

    init(_ message: String, status: natsStatus = NATS_ERR, jetStreamCode: Int? = nil) {
        self.message = message
        self.status = status
        self.jetStreamCode = jetStreamCode
        self.kind = Self.classify(status: status, jetStreamCode: jetStreamCode)
    }

    static func classify(status: natsStatus, jetStreamCode: Int?) -> Kind {
        switch jetStreamCode {
        case 10071: return .wrongLastSequence
        case 10059: return .streamNotFound
        case 10037: return .messageNotFound
        default: break
        }
        switch status {
        case NATS_TIMEOUT: return .timeout
        case NATS_NO_RESPONDERS: return .noResponders
        case NATS_CONNECTION_CLOSED, NATS_CONNECTION_DISCONNECTED, NATS_NO_SERVER, NATS_IO_ERROR,
             NATS_STALE_CONNECTION, NATS_NOT_YET_CONNECTED,
             NATS_INSUFFICIENT_BUFFER:   // While reconnecting: the buffer of messages to send on reconnect is full.
            return .connection
        case NATS_CONNECTION_AUTH_FAILED: return .authentication
        case NATS_NOT_FOUND: return .messageNotFound
        default: return .other
        }
    }

    /// The libnats status (`natsStatus`, e.g. 26 for `NATS_TIMEOUT`).
    public var statusCode: Int { Int(status.rawValue) }
    /// The libnats text of the status ("Timeout", "Connection Closed", …).
    public var statusText: String { String(cString: natsStatus_GetText(status)) }

    /// For `.wrongLastSequence`: the stream's actual last sequence, from the server's
    /// "wrong last sequence: N".
    public var lastSequence: UInt64? {
        guard kind == .wrongLastSequence, let colon = message.range(of: "wrong last sequence: ") else { return nil }
        return UInt64(message[colon.upperBound...].prefix(while: \.isNumber))
    }

    /// Worth retrying after a pause (with the same `Nats-Msg-Id`, so a write that did land is not
    /// stored twice): the connection is down or reconnecting, or no leader answered in time.
    public var isTransient: Bool {
        switch kind {
        case .timeout, .connection, .noResponders: return true
        case .other: return jetStreamCode == 10008   // JetStream system temporarily unavailable
        case .wrongLastSequence, .streamNotFound, .messageNotFound, .authentication: return false
        }
    }

    public var description: String {
        var text = message
        if let jetStreamCode { text += " (JetStream error \(jetStreamCode))" }
        return text
    }

    /// The error libnats recorded on this thread for `status`: its detailed text when there is one.
    static func last(_ status: natsStatus, _ action: String, jetStreamCode: jsErrCode = jsErrCode(0)) -> NATSError {
        var detail = ""
        var lastStatus = NATS_OK
        if let text = nats_GetLastError(&lastStatus) { detail = String(cString: text) }
        if detail.isEmpty { detail = String(cString: natsStatus_GetText(status)) }
        let code = Int(jetStreamCode.rawValue)
        return NATSError("\(action): \(detail)", status: status, jetStreamCode: code == 0 ? nil : code)
    }
}

/// Throws the thread's last libnats error unless `status` is `NATS_OK`.
@inline(__always)
func check(_ status: natsStatus, _ action: @autoclosure () -> String,
           jetStreamCode: jsErrCode = jsErrCode(0)) throws(NATSError) {
    guard status == NATS_OK else { throw NATSError.last(status, action(), jetStreamCode: jetStreamCode) }
}

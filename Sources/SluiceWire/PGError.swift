import Foundation

/// A libpq failure: the server's message and SQLSTATE when there is one.
public struct PGError: Error, CustomStringConvertible, Sendable {
    public let message: String
    public let sqlState: String?
    /// The connection itself is gone or unusable (as opposed to a failed statement).
    public let connectionLost: Bool

    public init(_ message: String, sqlState: String? = nil, connectionLost: Bool = false) {
        // libpq breaks long messages over lines; one line reads better in logs and tables.
        self.message = message.split(whereSeparator: \.isNewline)
            .map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }.joined(separator: " ")
        self.sqlState = sqlState
        self.connectionLost = connectionLost
    }

    /// Worth retrying after a pause: the server is unreachable, restarting or shutting down,
    /// or the statement lost a concurrency race.
    public var isTransient: Bool {
        if connectionLost { return true }
        guard let state = sqlState else { return false }
        return state.hasPrefix("08") || state.hasPrefix("57P") || state == "40001" || state == "40P01"
            || state == "53300" || state == "55006"
    }

    /// Connecting failed on TLS (a wrong CA, a host name the certificate does not list, a missing
    /// file, a server without TLS): the URL or the server must change, retrying cannot help.
    public var isTLSFailure: Bool { message.contains(" -- TLS: ") }

    public var description: String {
        if let sqlState { return "\(message) (SQLSTATE \(sqlState))" }
        return message
    }
}

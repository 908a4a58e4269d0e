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

extension PGError {
    /// What to do about a failed connection, from what libpq said (instead of one generic hint).
    public var connectionAdvice: String { Self.connectionAdvice(for: message, tls: isTLSFailure) }

    /// The same, from an error's text (when a wrapper kept only the text).
    public static func connectionAdvice(for text: String, tls: Bool = false) -> String {
        if text.contains("password authentication failed") || text.contains("no password supplied") {
            return "the server refused the password for the url's user: correct it in the url (or in the ${VAR} / ${file:…} it comes from)"
        }
        if text.contains("no pg_hba.conf entry") {
            return "the server's pg_hba.conf has no line admitting this user, database and address: add one (e.g. host <db> <user> <address>/32 scram-sha-256) and reload the server"
        }
        if text.contains("Connection refused") {
            return "nothing listens at the url's host and port: start the server, or correct the host and port"
        }
        if text.contains("timeout expired") {
            return "no answer within the connect timeout: check the host (and a firewall in between)"
        }
        if text.contains("could not translate host name") {
            return "the url's host name does not resolve: correct it"
        }
        if text.contains("database") && text.contains("does not exist") {
            return "the url names a database that does not exist on that server: correct the path of the url, or create it"
        }
        if text.contains("role") && text.contains("does not exist") {
            return "the url's user does not exist on that server: correct it, or CREATE ROLE it"
        }
        if tls || text.contains("sslmode") || text.contains("SSL") || text.contains("certificate") {
            return "TLS failed: check sslmode, sslrootcert (the CA that signed the server's certificate), and that the url's host matches the certificate (see docs/security.md)"
        }
        return "check the url, that the server runs, and its pg_hba.conf"
    }
}

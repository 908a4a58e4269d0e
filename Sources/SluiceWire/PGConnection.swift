import CLibPQ
import Foundation

/// One libpq connection. Not thread-safe: confine it to one thread (a `PGconn*` is not Sendable).
public final class PGConnection {
    let conn: OpaquePointer
    /// The URL with its password hidden, for messages.
    public let displayURL: String

    /// Session settings that make every value's text form unambiguous and stable:
    /// ISO dates, UTC timestamps, floats that round-trip.
    public static let canonicalOptions = "-c datestyle=ISO,YMD -c intervalstyle=postgres -c extra_float_digits=3 -c timezone=UTC -c bytea_output=hex"

    /// Connects. `replication: true` opens a logical replication connection (`replication=database`).
    public init(url: String, replication: Bool = false, applicationName: String = "sluice",
                options: String = PGConnection.canonicalOptions, connectTimeoutSeconds: Int = 10) throws {
        displayURL = redactURL(url)
        var keywords = ["dbname", "application_name", "options", "connect_timeout", "client_encoding"]
        var values = [url, applicationName, options, String(connectTimeoutSeconds), "UTF8"]
        if replication {
            keywords.append("replication")
            values.append("database")
        }
        let conn = withCStrings(keywords) { keys in
            withCStrings(values) { vals in PQconnectdbParams(keys, vals, 1) }
        }
        guard let conn else { throw PGError("out of memory connecting to \(displayURL)", connectionLost: true) }
        guard PQstatus(conn) == CONNECTION_OK else {
            let message = String(cString: PQerrorMessage(conn))
            PQfinish(conn)
            // A TLS mismatch is a configuration to fix, not an outage to wait out.
            if let problem = tlsProblem(message) {
                throw PGError("cannot connect to \(displayURL): \(message) -- TLS: \(problem)", connectionLost: false)
            }
            throw PGError("cannot connect to \(displayURL): \(message)", connectionLost: true)
        }
        self.conn = conn
        PQsetNoticeProcessor(conn, { _, _ in }, nil)
    }

    deinit { PQfinish(conn) }

    public var isConnected: Bool { PQstatus(conn) == CONNECTION_OK }
    public var socket: Int32 { PQsocket(conn) }
    public var serverVersion: Int { Int(PQserverVersion(conn)) }

    var lastError: PGError {
        PGError(String(cString: PQerrorMessage(conn)), connectionLost: PQstatus(conn) != CONNECTION_OK)
    }

    @discardableResult
    func check(_ result: OpaquePointer?) throws -> PGResult {
        guard let result else { throw lastError }
        let wrapped = PGResult(result)
        if let error = wrapped.error {
            throw PGError(error.message, sqlState: error.sqlState, connectionLost: PQstatus(conn) != CONNECTION_OK)
        }
        return wrapped
    }

    /// Runs one or more statements with the simple query protocol; returns the last result.
    @discardableResult
    public func execute(_ sql: String) throws -> PGResult {
        try check(PQexec(conn, sql))
    }

    /// Runs one statement with text parameters (nil is NULL).
    @discardableResult
    public func execute(_ sql: String, _ parameters: [String?]) throws -> PGResult {
        try withParameters(parameters) { values, count in
            try check(PQexecParams(conn, sql, count, nil, values, nil, nil, 0))
        }
    }

    public func prepare(_ name: String, _ sql: String) throws {
        try check(PQprepare(conn, name, sql, 0, nil))
    }

    @discardableResult
    public func executePrepared(_ name: String, _ parameters: [String?]) throws -> PGResult {
        try withParameters(parameters) { values, count in
            try check(PQexecPrepared(conn, name, count, values, nil, nil, 0))
        }
    }

    /// Quotes an identifier (`"my table"`).
    public func quoteIdentifier(_ name: String) -> String { PGConnection.quoteIdentifier(name) }

    public static func quoteIdentifier(_ name: String) -> String {
        "\"" + name.replacingOccurrences(of: "\"", with: "\"\"") + "\""
    }

    public static func quoteLiteral(_ value: String) -> String {
        "'" + value.replacingOccurrences(of: "'", with: "''") + "'"
    }

    // MARK: COPY

    /// Starts `COPY … FROM STDIN`; send rows with `putCopyData`, finish with `endCopy`.
    public func beginCopyIn(_ sql: String) throws {
        let result = try check(PQexec(conn, sql))
        guard result.status == PGRES_COPY_IN else { throw PGError("\(sql) did not start COPY IN") }
    }

    public func putCopyData(_ bytes: UnsafeRawBufferPointer) throws {
        let rc = bytes.withMemoryRebound(to: CChar.self) { PQputCopyData(conn, $0.baseAddress, Int32($0.count)) }
        guard rc == 1 else { throw lastError }
    }

    /// Ends COPY IN (with an error message to abort it) and returns the command's result.
    @discardableResult
    public func endCopy(error: String? = nil) throws -> PGResult {
        guard PQputCopyEnd(conn, error) == 1 else { throw lastError }
        var last: PGResult?
        var failure: PGError?
        while let result = PQgetResult(conn) {
            let wrapped = PGResult(result)
            if let error = wrapped.error, failure == nil { failure = error }
            last = wrapped
        }
        if let failure { throw PGError(failure.message, sqlState: failure.sqlState, connectionLost: !isConnected) }
        guard let last else { throw lastError }
        return last
    }

    /// Runs `COPY … TO STDOUT`, handing each row's bytes (text format, with its newline) to `row`.
    public func copyOut(_ sql: String, row: (UnsafeRawBufferPointer) throws -> Void) throws {
        let result = try check(PQexec(conn, sql))
        guard result.status == PGRES_COPY_OUT else { throw PGError("\(sql) did not start COPY OUT") }
        while true {
            var buffer: UnsafeMutablePointer<CChar>?
            let length = PQgetCopyData(conn, &buffer, 0)
            if length > 0, let buffer {
                defer { PQfreemem(buffer) }
                try row(UnsafeRawBufferPointer(start: buffer, count: Int(length)))
            } else if length == -1 {
                break
            } else {
                throw lastError
            }
        }
        var failure: PGError?
        while let result = PQgetResult(conn) {
            if let error = PGResult(result).error, failure == nil { failure = error }
        }
        if let failure { throw failure }
    }
}

func withCStrings<R>(_ strings: [String], _ body: (UnsafePointer<UnsafePointer<CChar>?>) throws -> R) rethrows -> R {
    let duplicated = strings.map { strdup($0) }
    defer { duplicated.forEach { free($0) } }
    var pointers: [UnsafePointer<CChar>?] = duplicated.map { UnsafePointer($0) }
    pointers.append(nil)
    return try pointers.withUnsafeBufferPointer { try body($0.baseAddress!) }
}

func withParameters<R>(_ parameters: [String?],
                       _ body: (UnsafePointer<UnsafePointer<CChar>?>?, Int32) throws -> R) rethrows -> R {
    let duplicated = parameters.map { $0.map { strdup($0)! } }
    defer { duplicated.forEach { $0.map { free($0) } } }
    let pointers: [UnsafePointer<CChar>?] = duplicated.map { $0.map { UnsafePointer($0) } }
    return try pointers.withUnsafeBufferPointer { try body($0.baseAddress, Int32(parameters.count)) }
}

/// `postgresql://user:secret@host/db` → `postgresql://user:***@host/db`; also hides `password=` parameters.
public func redactURL(_ url: String) -> String {
    var text = url
    if let scheme = text.range(of: "://") {
        let rest = text[scheme.upperBound...]
        let authorityEnd = rest.firstIndex(where: { $0 == "/" || $0 == "?" }) ?? rest.endIndex
        if let at = rest[..<authorityEnd].lastIndex(of: "@"),
           let colon = rest[..<at].firstIndex(of: ":") {
            text.replaceSubrange(text.index(after: colon)..<at, with: "***")
        }
    }
    if let range = text.range(of: "password=", options: .caseInsensitive) {
        let end = text[range.upperBound...].firstIndex(where: { $0 == "&" || $0 == " " }) ?? text.endIndex
        text.replaceSubrange(range.upperBound..<end, with: "***")
    }
    return text
}

/// Checks a connection URL without connecting; returns libpq's complaint if it is malformed.
public func connectionURLProblem(_ url: String) -> String? {
    guard url.hasPrefix("postgresql://") || url.hasPrefix("postgres://") else {
        return "must start with postgresql:// (e.g. postgresql://user@127.0.0.1:5432/app)"
    }
    var error: UnsafeMutablePointer<CChar>?
    guard let options = PQconninfoParse(url, &error) else {
        defer { error.map { PQfreemem($0) } }
        let message = error.map { String(cString: $0) } ?? "malformed URL"
        return message.trimmingCharacters(in: .whitespacesAndNewlines)
    }
    defer { PQconninfoFree(options) }
    if let problem = tlsParameterProblem(options) { return problem }
    // libpq parses a port lazily, at connect time: check it now.
    var option = options
    while let keyword = option.pointee.keyword {
        if String(cString: keyword) == "port", let raw = option.pointee.val {
            for port in String(cString: raw).split(separator: ",", omittingEmptySubsequences: false) {
                guard let number = Int(port), (1...65535).contains(number) else {
                    return "has port '\(port)', which is not a number from 1 to 65535"
                }
            }
        }
        option += 1
    }
    return nil
}

import Foundation
import Logging
import SluiceKit

/// POSTs batches of whole transactions as JSON to a URL (`type: http`).
///
/// Body: `{"sink": …, "transactions": [{"topic", "offset", "begin": {…}, "changes": [{…}], "commit": {…}}]}`,
/// each object as `sluice tail --json` prints it. Header `Idempotency-Key: <sink>:<topic>:<first offset>-<last offset>`:
/// a retry of the same batch carries the same key, so a receiver can drop duplicates (per transaction, use
/// each commit's `offset`). An endpoint that does not answer is an outage: the runtime retries it with
/// capped backoff and reports the sink as retrying at once. 408, 429 and 5xx answers are retried here
/// for up to `retry_for`, then handed to the runtime the same way; any other 4xx stops the sink with
/// the response in the message. The position acknowledged by a 2xx is kept in
/// `<data_dir>/sinks/<name>/position.json`. Batches are spooled to a temporary file, not held in memory.
/// HTTPS verifies the receiver against `ca_file` (else the system's CAs) and presents `client_cert`/`client_key`
/// when set; a certificate refused either way is a configuration to fix, like a wrong password.
public final class HTTPSink: Sink {
    public static let typeName = "http"

    let name: String
    let url: URL
    let headers: [(String, String)]
    let timeoutSeconds: Double
    let retryForMillis: Int
    let stateDirectory: String
    private var spool: FileHandle?
    private var spoolPath: String
    private var first: (topic: String, offset: UInt64)?
    private var last: SinkPosition?
    private var transactionsInBatch = 0
    private var changesInTransaction = 0
    private var renderers: TopicRenderers
    private var logger = Logger(label: "sluice")
    private var retrying: @Sendable (String?) -> Void = { _ in }
    private var shouldGiveUp: @Sendable () -> Bool = { false }
    private let transport: HTTPTransport
    /// Once a TLS handshake worked, idle probes only connect: a handshake a second would be waste.
    private var handshakeVerified = false

    public init(config: ConnectorConfig) throws {
        name = config.name
        let text = try config.string("url")
        guard let url = URL(string: text), ["http", "https"].contains(url.scheme?.lowercased() ?? ""), url.host != nil else {
            throw config.error("url", "'\(text)' is not an http:// or https:// URL")
        }
        // Batches and headers (a token) in clear text are only for this machine unless asked for.
        let insecure = try config.bool("insecure", default: false)
        if url.scheme?.lowercased() == "http", let host = url.host, !Self.isLoopback(host), !insecure {
            throw config.error("url", """
                '\(text)' sends batches and headers unencrypted to \(host), which is not this machine: use https://, \
                or set insecure: true to accept that
                """)
        }
        self.url = url
        headers = try config.stringMap("headers")
        timeoutSeconds = Double(try config.durationMillis("timeout", default: 10_000, minimum: 100)) / 1000
        retryForMillis = try config.durationMillis("retry_for", default: 60_000)
        renderers = TopicRenderers(format: try ChangeFormat.read(config))
        stateDirectory = config.dataDirectory + "/sinks/" + config.name
        spoolPath = stateDirectory + "/batch.json"
        let tls = try Self.tlsSettings(config, https: url.scheme?.lowercased() == "https")
        transport = try HTTPTransport(url: url.absoluteString, tls: tls)
        try config.rejectUnknownKeys()
    }

    /// `ca_file`, `client_cert`, `client_key`: each a readable PEM file (relative to the configuration
    /// file's folder), for https:// only; a `client_cert` without `client_key` holds the key too.
    static func tlsSettings(_ config: ConnectorConfig, https: Bool) throws -> HTTPTLSSettings {
        func pem(_ key: String, holding marker: String, what: String) throws -> String? {
            guard let text = try config.optionalString(key) else { return nil }
            let line = config.value(key)?.line
            guard https else { throw config.error(key, "applies to https:// URLs only: remove it, or use https://", line: line) }
            let path = config.resolvePath(text)
            guard FileManager.default.fileExists(atPath: path) else {
                throw config.error(key, "'\(text)' does not exist (resolved to \(path))", line: line)
            }
            guard let data = FileManager.default.contents(atPath: path) else {
                throw config.error(key, "'\(path)' cannot be read by this user: fix its owner or mode", line: line)
            }
            guard String(decoding: data, as: UTF8.self).contains(marker) else {
                throw config.error(key, "'\(path)' is not \(what) in PEM form (no '-----BEGIN …\(marker)' line)", line: line)
            }
            return path
        }
        let settings = HTTPTLSSettings(
            caFile: try pem("ca_file", holding: "CERTIFICATE", what: "a CA certificate"),
            clientCertificate: try pem("client_cert", holding: "CERTIFICATE", what: "a certificate"),
            clientKey: try pem("client_key", holding: "PRIVATE KEY", what: "a private key"))
        if settings.clientKey != nil, settings.clientCertificate == nil {
            throw config.error("client_key", "needs client_cert beside it (the certificate of this key)", line: config.value("client_key")?.line)
        }
        if let certificate = settings.clientCertificate, settings.clientKey == nil,
           !String(decoding: FileManager.default.contents(atPath: certificate) ?? Data(), as: UTF8.self).contains("PRIVATE KEY") {
            throw config.error("client_cert", "'\(certificate)' holds no private key: set client_key to the key's file",
                               line: config.value("client_cert")?.line)
        }
        return settings
    }

    static func isLoopback(_ host: String) -> Bool {
        host == "localhost" || host.hasPrefix("127.") || host == "::1" || host == "[::1]"
    }

    struct StoredPosition: Codable {
        var topic: String
        var offset: UInt64
        var lsn: String
        var commitTime: Int64
    }

    public func open(context: SinkContext) throws -> [String: SinkPosition] {
        logger = context.logger
        retrying = context.retrying
        shouldGiveUp = context.shouldGiveUp
        if let key = transport.tls.clientKey ?? transport.tls.clientCertificate,
           let mode = (try? FileManager.default.attributesOfItem(atPath: key))?[.posixPermissions] as? Int, mode & 0o077 != 0 {
            logger.warning("the client key file may be read by other users: chmod 600 it",
                           metadata: ["sink": "\(name)", "file": "\(key)"])
        }
        try FileManager.default.createDirectory(atPath: stateDirectory, withIntermediateDirectories: true)
        return try readPositions() ?? [:]
    }

    public func readPositions() throws -> [String: SinkPosition]? {
        let fix = "it holds the position the receiver acknowledged. Delete it to send every transaction of the topic again "
            + "(a receiver that drops commit offsets it has seen gets each once)"
        guard let stored = try BackfillFiles.readExisting([StoredPosition].self, directory: stateDirectory, name: "position.json", fix: fix)
        else { return nil }
        return Dictionary(uniqueKeysWithValues: stored.map {
            ($0.topic, SinkPosition(topic: $0.topic, offset: $0.offset, lsn: LSN($0.lsn) ?? .zero, commitTime: $0.commitTime))
        })
    }

    private func write(_ text: String) throws {
        try spool!.write(contentsOf: Data(text.utf8))
    }

    public func beginBatch() throws {
        _ = FileManager.default.createFile(atPath: spoolPath, contents: nil)
        spool = FileHandle(forWritingAtPath: spoolPath)
        first = nil
        transactionsInBatch = 0
        try write("{\"sink\":\(jsonString(name)),\"transactions\":[")
    }

    public func beginTransaction(_ begin: BeginRecord, topic: String, offset: UInt64) throws {
        if first == nil { first = (topic, offset) }
        try write((transactionsInBatch > 0 ? "," : "") + "{\"topic\":\(jsonString(topic)),\"begin\":"
                  + renderers.begin(begin, topic: topic, offset: offset) + ",\"changes\":[")
        transactionsInBatch += 1
        changesInTransaction = 0
    }

    public func apply(_ change: Change) throws {
        for line in renderers.events(change) {
            try write((changesInTransaction > 0 ? "," : "") + line)
            changesInTransaction += 1
        }
    }

    public func commitTransaction(_ commit: CommitRecord, position: SinkPosition) throws {
        try write("],\"commit\":" + renderers.commit(commit, topic: position.topic, offset: position.offset)
                  + ",\"offset\":\(position.offset)}")
        last = position
    }

    public func commitBatch(positions: [SinkPosition]) throws {
        try write("]}")
        try spool?.close()
        spool = nil
        guard let first, let last else { return }
        let key = "\(name):\(first.topic):\(first.offset)-\(last.offset)"
        try deliver(key: key)
        var stored = (try readPositions() ?? [:])
        for position in positions { stored[position.topic] = position }
        try BackfillFiles.write(stored.values.sorted { $0.topic < $1.topic }.map {
            StoredPosition(topic: $0.topic, offset: $0.offset, lsn: $0.lsn.description, commitTime: $0.commitTime)
        }, directory: stateDirectory, name: "position.json")
    }

    /// Connects (sends nothing): an unreachable endpoint shows as retrying before any batch waits on it.
    /// Until one TLS handshake worked, probes do one, so a certificate refused either way stops the start.
    public func probe() throws {
        if let reason = unreachable() {
            throw ConnectorError.transient("cannot connect to \(endpoint): \(reason)")
        }
        guard isHTTPS, !handshakeVerified else { return }
        if let failed = transport.handshake(timeoutSeconds: timeoutSeconds) {
            let reason = "TLS handshake with \(endpoint) for \(url.absoluteString): \(failed.failure ?? "failed")"
            throw failed.tlsRefused ? ConnectorError.misconfigured(reason) : ConnectorError.transient(reason)
        }
        handshakeVerified = true
    }

    var isHTTPS: Bool { url.scheme?.lowercased() == "https" }

    var endpoint: String { "\(url.host ?? "?"):\(url.port ?? (isHTTPS ? 443 : 80))" }

    private func unreachable() -> String? {
        guard let host = url.host else { return "no host" }
        let port = url.port ?? (isHTTPS ? 443 : 80)
        return tcpUnreachable(host: host, port: port, timeoutMillis: Int32(min(5000, max(200, timeoutSeconds * 1000))))
    }

    /// POSTs the spooled batch until a 2xx, retrying what may pass, for up to `retry_for`.
    private func deliver(key: String) throws {
        // The configured headers replace the sink's own of the same name.
        let own = [("Content-Type", "application/json"), ("Idempotency-Key", key)]
        let requestHeaders = own.filter { entry in !headers.contains { $0.0.lowercased() == entry.0.lowercased() } } + headers
        let deadline = Date(timeIntervalSinceNow: Double(retryForMillis) / 1000)
        var pause = 0.2
        var attempt = 0
        while true {
            attempt += 1
            let answer = transport.post(bodyPath: spoolPath, headers: requestHeaders, timeoutSeconds: timeoutSeconds,
                                        shouldGiveUp: shouldGiveUp)
            let (status, body, failure, refused) = (answer.status, answer.body, answer.failure, answer.refused)
            if answer.tlsRefused {
                handshakeVerified = false
                throw ConnectorError.misconfigured("POST \(url.absoluteString) \(failure ?? "TLS failed")")
            }
            if failure == nil, let status, (200..<300).contains(status) {
                if attempt > 1 { retrying(nil) }
                return
            }
            if let status, (400..<500).contains(status), status != 408, status != 429 {
                throw ConnectorError.fatal("sink \(name): POST \(url.absoluteString) answered \(status): \(body.prefix(300))")
            }
            let answered = status.map { "answered \($0): \(body.prefix(200))" }
            let reason = [answered, failure].compactMap { $0 }.joined(separator: "; ")
            // Refused: nothing listens, nothing was delivered; the runtime reports it and backs off.
            if refused { throw ConnectorError.transient("POST \(url.absoluteString) \(reason)") }
            retrying("POST \(url.absoluteString) \(reason); retrying the same batch")
            if attempt == 1 || attempt % 10 == 0 {
                logger.warning("POST failed; retrying the same batch", metadata: ["sink": "\(name)", "reason": "\(reason)",
                                                                                   "idempotency_key": "\(key)"])
            }
            // A stop past its deadline abandons the batch: the stored position is safe, a later run resends it.
            guard Date().addingTimeInterval(pause) < deadline, !shouldGiveUp() else {
                throw ConnectorError.transient("POST \(url.absoluteString) \(reason)")
            }
            let wake = Date(timeIntervalSinceNow: pause * Double.random(in: 0.5...1))
            while Date() < wake && !shouldGiveUp() { Thread.sleep(forTimeInterval: min(0.1, wake.timeIntervalSinceNow)) }
            pause = min(pause * 2, 10)
        }
    }

    public func rollbackBatch() {
        try? spool?.close()
        spool = nil
        first = nil
        last = nil
    }

    public func close() {
        rollbackBatch()
    }

    public func check(logger: Logger) -> [CheckFinding] {
        if let reason = unreachable() {
            return [CheckFinding(.error, "sink \(name)", "cannot connect to \(endpoint) for \(url.absoluteString): \(reason)",
                                 fix: "start the receiver, or correct url")]
        }
        if isHTTPS {
            if let failed = transport.handshake(timeoutSeconds: timeoutSeconds) {
                return [CheckFinding(.error, "sink \(name)", "TLS handshake with \(endpoint): \(failed.failure ?? "failed")",
                                     fix: "correct ca_file, client_cert or client_key, or the receiver's certificate")]
            }
            let trust = transport.tls.caFile.map { "ca_file \($0)" } ?? "the system's CAs"
            return [CheckFinding(.ok, "sink \(name)", "\(endpoint): TLS handshake done, receiver verified against \(trust)"
                                 + (transport.tls.clientCertificate != nil ? ", client certificate presented" : "")
                                 + "; POSTs batches to \(url.absoluteString)")]
        }
        return [CheckFinding(.ok, "sink \(name)", "\(endpoint) accepts connections; POSTs batches to \(url.absoluteString)")]
    }
}

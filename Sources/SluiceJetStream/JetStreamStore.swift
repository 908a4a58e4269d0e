import Foundation
import Logging
import SluiceKit
import SluiceNATS

/// Topics as NATS JetStream streams (`topics: {backend: jetstream}`): one stream per topic, created
/// with the configured replicas when missing, shared by every process (and host) that names it.
/// The layout is in docs/jetstream-format.md.
public final class JetStreamStore: TopicStore, @unchecked Sendable {
    public let settings: JetStreamSettings
    let retention: RetentionPolicy
    let logger: Logger
    private let lock = NSLock()
    private var topics: [String: JetStreamTopic] = [:]

    /// Messages are at most this large (the server's default max_payload is 1 MB).
    static let maxMessageBytes = 900 * 1024

    public init(settings: JetStreamSettings, retention: RetentionPolicy, logger: Logger) {
        self.settings = settings
        self.retention = retention
        self.logger = logger
    }

    public var location: String { "JetStream at \(settings.servers.map(redactNATSURL).joined(separator: ", "))" }

    public func streamName(_ topic: String) -> String { settings.streamPrefix + "_" + topic }

    public func topic(_ name: String) -> any Topic { jetStreamTopic(name) }

    func jetStreamTopic(_ name: String) -> JetStreamTopic {
        lock.lock()
        defer { lock.unlock() }
        if let topic = topics[name] { return topic }
        let topic = JetStreamTopic(name: name, store: self)
        topics[name] = topic
        return topic
    }

    public func exists(_ name: String) throws -> Bool {
        let jetStream = try context(purpose: "exists")
        return try wrap("look up stream \(streamName(name))") { try jetStream.streamInfo(streamName(name)) } != nil
    }

    public func openWriter(_ name: String) throws -> any TopicWriter {
        try JetStreamTopicWriter(topic: jetStreamTopic(name))
    }

    /// Nothing here: sinks in other processes (or hosts) may read the same stream, so what this
    /// process's sinks passed proves nothing. `retention:` is the stream's own limits (max_bytes,
    /// max_age), which the server enforces; a sink behind them fails saying so.
    public func applyRetention(_ topic: any Topic, floor: UInt64?, policy: RetentionPolicy) -> String? { nil }

    public func check(topics: [String]) -> [CheckFinding] {
        let subject = "topics"
        let servers = settings.servers.map(redactNATSURL).joined(separator: ", ")
        let connection: NATSConnection
        do {
            connection = try NATSConnection(options: options(purpose: "check"))
        } catch where error.kind == .authentication {
            return [CheckFinding(.error, subject, refusedLogin(error), fix: Self.loginFix)]
        } catch {
            return [CheckFinding(.error, subject, "cannot connect to the NATS servers \(servers): \(error)",
                                 fix: "start nats-server with -js on those addresses, or correct topics.servers")]
        }
        guard let jetStream = try? connection.jetStream() else {
            return [CheckFinding(.error, subject, "cannot open a JetStream context on \(servers)")]
        }
        var findings = [CheckFinding(.ok, subject, "connected to \(connection.connectedURL.map(redactNATSURL) ?? servers)")]
        let nodes = Set(connection.knownServers + settings.servers).count
        for topic in topics {
            let stream = streamName(topic)
            do {
                if let info = try jetStream.streamInfo(stream) {
                    if info.config.replicas != settings.replicas {
                        findings.append(CheckFinding(.error, subject, "stream \(stream) has replicas \(info.config.replicas), the configuration asks for \(settings.replicas)",
                                                     fix: "nats stream edit \(stream) --replicas \(settings.replicas), or set topics.replicas: \(info.config.replicas)"))
                    } else {
                        let leader = info.cluster?.leader.map { ", leader \($0)" } ?? ""
                        findings.append(CheckFinding(.ok, subject, "stream \(stream) exists (replicas \(info.config.replicas)\(leader), \(info.state.messages) messages)"))
                    }
                } else {
                    findings.append(CheckFinding(.ok, subject, "stream \(stream) does not exist yet (the source of topic \(topic) creates it, replicas \(settings.replicas))"))
                }
            } catch let error where error.kind == .noResponders || error.kind == .timeout {
                return findings + [CheckFinding(.error, subject, "JetStream does not answer on \(servers) (\(error))",
                                                fix: "start nats-server with -js (JetStream enabled); with replicas > 1, a cluster with a quorum up")]
            } catch {
                findings.append(CheckFinding(.error, subject, "cannot look up stream \(stream): \(error)"))
            }
        }
        if settings.replicas > 1 && nodes < settings.replicas {
            // A stream still to be created cannot be placed: run would stop there (exit 2).
            let creates = findings.contains { $0.message.contains("does not exist yet") }
            findings.append(CheckFinding(creates ? .error : .warning, subject, "replicas is \(settings.replicas), but only \(nodes) NATS server(s) are known"
                                         + (creates ? ": a stream with \(settings.replicas) replicas cannot be created" : ""),
                                         fix: "run a cluster of at least \(settings.replicas) JetStream nodes, or lower topics.replicas"))
        }
        return findings
    }

    // MARK: Connections

    static let loginFix = "set topics.user and topics.password, topics.token or topics.credentials to what the server's authorization accepts"

    /// A refused login, naming the servers and how they were asked.
    func refusedLogin(_ error: NATSError) -> String {
        let servers = settings.servers.map(redactNATSURL).joined(separator: ", ")
        let how = settings.credentials.map { "credentials file \($0)" }
            ?? settings.token.map { _ in "a token" }
            ?? settings.user.map { "user \($0)" } ?? "no user, password or token"
        return "the NATS server at \(servers) refused the login with \(how) (\(error)): \(Self.loginFix)"
    }

    func options(purpose: String) -> NATSOptions {
        var options = NATSOptions(servers: settings.servers)
        options.name = "sluice-\(purpose)"
        options.user = settings.user
        options.password = settings.password
        options.token = settings.token
        options.credentialsFile = settings.credentials
        options.caFile = settings.caFile
        options.retryOnFailedConnect = false
        return options
    }

    /// A connection for the calling thread.
    func connect(purpose: String) throws -> NATSConnection {
        try wrap("connect") { try NATSConnection(options: options(purpose: purpose)) }
    }

    /// The stream configuration Sluice creates for a topic.
    func streamConfig(_ topic: String) -> StreamConfig {
        var config = StreamConfig(name: streamName(topic), subjects: Subjects(store: self, topic: topic).all)
        config.replicas = settings.replicas
        config.storage = .file
        config.maxBytes = retention.maxBytes.map { Int64(clamping: $0) }
        config.maxAge = retention.maxAgeMillis.map { .milliseconds($0) }
        config.maxMessageSize = Int32(Self.maxMessageBytes + 64 * 1024)
        config.duplicateWindow = .seconds(120)
        config.allowDirect = true
        return config
    }

    /// Runs a NATS call, turning its failures into connector errors: an outage is transient.
    func wrap<T>(_ action: @autoclosure () -> String, _ body: () throws -> T) throws -> T {
        do {
            return try body()
        } catch let error as NATSError {
            if error.kind == .authentication {
                throw ConnectorError.misconfigured("JetStream \(action()): \(refusedLogin(error))")
            }
            if error.isTransient || error.kind == .noResponders {
                throw ConnectorError.transient("JetStream \(action()): \(error)")
            }
            throw ConnectorError.fatal("JetStream \(action()): \(error)")
        }
    }

    /// A connection's JetStream context, with errors as connector errors.
    func context(purpose: String, options: JetStreamOptions = JetStreamOptions()) throws -> JetStream {
        let connection = try connect(purpose: purpose)
        return try wrap("open a JetStream context") { try connection.jetStream(options: options) }
    }
}

/// The subjects of one topic's stream.
struct Subjects {
    let batches: String
    let chunks: String
    let damage: String

    init(store: JetStreamStore, topic: String) {
        let base = store.settings.streamPrefix + "." + topic
        batches = base + ".m"
        chunks = base + ".s"
        damage = base + ".d"
    }

    var all: [String] { [batches, chunks, damage] }
}

/// The position of a batch's last commit marker, from the batch itself.
func lastCommit(of message: JetStreamMessage) throws -> CommittedPosition? {
    try message.data.withUnsafeBytes { raw -> CommittedPosition? in
        let header = try MessageBatch.decodeHeader(raw)
        guard header.kind == .batch, header.count > 0 else { return nil }
        var records = MessageBatch.Records(message.data, count: header.count)
        var last: (kind: UInt8, body: Range<Int>)?
        while let record = records.next() { last = record }
        if let failure = records.failure { throw failure }
        guard let last, last.kind == RecordKind.commit.rawValue else {
            throw MessageBatch.DecodeError(reason: "batch \(message.sequence) does not end with a commit marker")
        }
        var cursor = RecordCursor(message.data, range: last.body)
        let commit = try CommitRecord.decode(&cursor)
        let base = header.chunks?.lowerBound ?? message.sequence
        return CommittedPosition(offset: MessageBatch.offset(base: base, index: header.chunkRecords + header.count - 1),
                                 commit: commit)
    }
}

import Foundation
import Logging
import SluiceKit
import SluiceNATS

/// Publishes every change to NATS JetStream, one message each, for consumers that are not Sluice
/// (`type: nats`).
///
/// - Subject `<subject_prefix>.<schema>.<table>` (default prefix `cdc.<topic>`; names percent-encoded
///   as `NATSSubjects` describes), body the change object as `sluice tail --json` prints it (or, with
///   `format: debezium`, Debezium's change event: docs/debezium.md).
/// - After each transaction's changes, a commit marker on `<subject_prefix>._commit`: the commit
///   object as `tail --json` prints it plus `positions` (every topic's last published commit). An
///   empty transaction is its marker alone.
/// - Headers (`NATSSinkHeader`): `Sluice-Topic`, `Sluice-Xid`, `Sluice-LSN` (commit LSN),
///   `Sluice-Commit-Offset`, `Sluice-Offset`, `Sluice-Marker-Sequence`, and
///   `Nats-Msg-Id: <sink>:<topic>:<offset>` (the change's offset, or the commit's on a marker). A change
///   published as two messages (`format: debezium`, an update of the primary key: delete, then create)
///   has `Sluice-Event: 1` and `2` and ids `<sink>:<topic>:<offset>:1` and `…:2`.
///
/// Exactly once, however long the sink was down: every message carries
/// `Nats-Expected-Last-Sequence`, so the stream only ever holds a prefix of what was sent, in order;
/// `open` reads the position back from the stream's last message (`StreamRecovery.read`). Messages
/// are published asynchronously with at most `max_in_flight` unacknowledged; `commitBatch` returns once
/// the server acknowledged every one of the batch.
///
/// The stream (`stream`, default `SLUICE_CDC_<sink name>`) is created when missing with subjects
/// `<subject_prefix>.>` (a missing prefix is added to an existing stream); a server refusal because
/// another stream captures those subjects stops the daemon (exit 2) with that message.
public final class NATSSink: Sink {
    public static let typeName = "nats"

    let name: String
    let options: NATSOptions
    /// nil: `cdc.<topic>` for each topic.
    let subjectPrefix: String?
    let stream: String
    let replicas: Int
    let maxInFlight: Int
    let configuredTopics: [String]

    private var connection: NATSConnection?
    private var jetStream: JetStream?
    private var logger = Logger(label: "sluice")
    /// nil until read back from the stream (again after any failure in a batch).
    private var state: PublishState?
    private let spool: ChangeSpool
    private var renderers: TopicRenderers
    private var subjects: [String: [UInt32: String]] = [:]
    /// Published since `beginBatch` whose acknowledgement was not checked yet.
    private var unacknowledged = 0
    /// Something was sent (or spooled) since `beginBatch`: a rollback must re-read the stream.
    private var dirty = false
    private var skipped = 0

    static let ackWaitMillis = 30_000

    public init(config: ConnectorConfig) throws {
        name = config.name
        let servers = try config.stringList("servers") ?? []
        guard !servers.isEmpty else { throw config.error("servers", "is required, e.g. [nats://127.0.0.1:4222]") }
        for server in servers {
            guard let url = URLComponents(string: server), ["nats", "tls"].contains(url.scheme ?? ""), url.host?.isEmpty == false else {
                throw config.error("servers", "'\(redactNATSURL(server))' is not a nats://host:port (or tls://host:port) URL",
                                   line: config.value("servers")?.line)
            }
        }
        var options = NATSOptions(servers: servers)
        options.name = "sluice-sink-\(config.name)"
        options.retryOnFailedConnect = false
        func file(_ key: String) throws -> String? {
            guard let text = try config.optionalString(key) else { return nil }
            let path = config.resolvePath(text)
            guard FileManager.default.fileExists(atPath: path) else {
                throw config.error(key, "'\(text)' does not exist", line: config.value(key)?.line)
            }
            return path
        }
        options.credentialsFile = try file("credentials")
        options.caFile = try file("ca_file")
        options.user = try config.optionalString("user")
        options.password = try config.optionalString("password")
        options.token = try config.optionalString("token")
        self.options = options

        if let prefix = try config.optionalString("subject_prefix") {
            if let problem = NATSSubjects.problem(prefix: prefix) {
                throw config.error("subject_prefix", problem, line: config.value("subject_prefix")?.line)
            }
            subjectPrefix = prefix
        } else {
            subjectPrefix = nil
        }
        stream = try config.string("stream", default: "SLUICE_CDC_" + config.name)
        guard !stream.isEmpty, stream.count <= 255,
              stream.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F && !".*>/\\".utf8.contains($0) }) else {
            throw config.error("stream", "'\(stream)' is not a stream name (printable ASCII without spaces, ., *, >, / or \\)",
                               line: config.value("stream")?.line)
        }
        renderers = TopicRenderers(format: try ChangeFormat.read(config))
        replicas = try config.int("replicas", default: 1, range: 1...5)
        maxInFlight = try config.int("max_in_flight", default: 256, range: 1...65_536)
        configuredTopics = try config.stringList("topics") ?? []
        spool = ChangeSpool(path: config.dataDirectory + "/sinks/" + config.name + "/transaction.spool")
        try config.rejectUnknownKeys()
    }

    /// The subject prefix of `topic`'s messages.
    func prefix(_ topic: String) -> String { subjectPrefix ?? "cdc." + topic }

    // MARK: Opening

    public func open(context: SinkContext) throws -> [String: SinkPosition] {
        logger = context.logger
        close()
        let (connection, jetStream) = try connect()
        self.connection = connection
        self.jetStream = jetStream
        let state = try StreamRecovery.read(jetStream, stream: stream, sink: name)
        self.state = state
        // Prefixes known now get their subjects at once (others when their topic's first transaction comes).
        for prefix in Set(subjectPrefix.map { [$0] } ?? configuredTopics.map(prefix)).sorted() {
            try ensureSubjects(prefix)
        }
        logger.info("nats sink resumes from its stream", metadata: [
            "sink": "\(name)", "stream": "\(stream)", "next_sequence": "\(state.nextSequence)",
            "positions": "\(state.positions.values.sorted { $0.topic < $1.topic }.map { "\($0.topic)@\($0.offset)" })",
            "skip_through": "\(state.skipThrough)",
        ])
        return state.positions
    }

    private func connect() throws -> (NATSConnection, JetStream) {
        let options = self.options
        let connection = try natsCall(name, "connect to \(options.displayServers)") { () throws(NATSError) in
            try NATSConnection(options: options)
        }
        var jsOptions = JetStreamOptions()
        jsOptions.maxPendingAsync = maxInFlight
        jsOptions.stallWaitMilliseconds = 10_000
        jsOptions.asyncAckTimeoutMilliseconds = 10_000
        let jetStream = try natsCall(name, "open JetStream on \(options.displayServers)") { () throws(NATSError) in
            try connection.jetStream(options: jsOptions)
        }
        return (connection, jetStream)
    }

    /// Makes the stream capture `<prefix>.>`: creates the stream, or adds the subject to it.
    private func ensureSubjects(_ prefix: String) throws {
        guard var state, let jetStream else { throw ConnectorError.transient("sink \(name): not connected") }
        if NATSSubjects.covers(state.streamSubjects, prefix: prefix) { return }
        let wanted = prefix + ".>"
        let stream = self.stream
        let info: StreamInfo
        do throws(NATSError) {
            if let existing = try jetStream.streamInfo(stream) {
                var config = existing.config
                if !NATSSubjects.covers(config.subjects, prefix: prefix) {
                    config.subjects.append(wanted)
                    info = try jetStream.updateStream(config)
                    logger.notice("nats sink added subjects to its stream", metadata: [
                        "sink": "\(name)", "stream": "\(stream)", "subjects": "\(info.config.subjects)"])
                } else {
                    info = existing
                }
            } else {
                var config = StreamConfig(name: stream, subjects: [wanted])
                config.replicas = replicas
                config.storage = .file
                config.duplicateWindow = .seconds(120)
                info = try jetStream.addStream(config)
                logger.notice("nats sink created its stream", metadata: [
                    "sink": "\(name)", "stream": "\(stream)", "subjects": "\(info.config.subjects)", "replicas": "\(replicas)"])
            }
        } catch {
            if error.jetStreamCode == 10065 || error.message.lowercased().contains("overlap") {
                throw ConnectorError.misconfigured("""
                    sink \(name): stream \(stream) cannot capture subjects \(wanted): another stream already captures \
                    some of them (\(error)). Choose another subject_prefix, or name the stream that captures them in stream:.
                    """)
            }
            if error.jetStreamCode == 10058 {
                throw ConnectorError.transient("sink \(name): stream \(stream) changed meanwhile (\(error)); trying again")
            }
            throw connectorError(name, "cannot give stream \(stream) subjects \(wanted)", error)
        }
        state.streamExists = true
        state.streamSubjects = info.config.subjects
        self.state = state
    }

    // MARK: Batches

    public func beginBatch() throws {
        guard let jetStream else { throw ConnectorError.transient("sink \(name): not connected") }
        if state == nil { state = try StreamRecovery.read(jetStream, stream: stream, sink: name) }
        _ = jetStream.takeAsyncAcks()
        unacknowledged = 0
        dirty = false
    }

    public func beginTransaction(_ begin: BeginRecord, topic: String, offset: UInt64) throws {
        spool.reset()
        dirty = true
        _ = renderers.begin(begin, topic: topic, offset: offset)
        try ensureSubjects(prefix(topic))
    }

    public func prepare(_ relation: RelationSchema, topic: String) throws {
        subjects[topic, default: [:]][relation.id] = subject(relation, topic: topic)
    }

    private func subject(_ relation: RelationSchema, topic: String) -> String {
        prefix(topic) + "." + NATSSubjects.token(relation.schema) + "." + NATSSubjects.token(relation.table)
    }

    public func apply(_ change: Change) throws {
        // Rendered even when skipped: the Debezium envelope numbers every event of the transaction.
        let events = renderers.events(change)
        let subject = subjects[change.topic]?[change.relation.id] ?? subject(change.relation, topic: change.topic)
        for (index, body) in events.enumerated() {
            let event = events.count > 1 ? UInt64(index + 1) : 0
            if let skip = state?.skipThrough[change.topic], skip.covers(offset: change.offset, event: event) {
                skipped += 1
                continue
            }
            do {
                try spool.append(offset: change.offset, event: event, subject: subject, body: Array(body.utf8))
            } catch {
                throw ConnectorError.transient("sink \(name): cannot spool the transaction to \(spool.path): \(error)")
            }
        }
    }

    public func commitTransaction(_ commit: CommitRecord, position: SinkPosition) throws {
        guard var state, let jetStream else { throw ConnectorError.transient("sink \(name): not connected") }
        let topic = position.topic
        var headers = NATSHeaders()
        headers[NATSSinkHeader.topic] = topic
        headers[NATSSinkHeader.xid] = String(commit.xid)
        headers[NATSSinkHeader.lsn] = commit.commitLSN.description
        headers[NATSSinkHeader.commitOffset] = String(position.offset)
        do {
            try spool.forEach { entry in
                var message = headers
                message[NATSSinkHeader.offset] = String(entry.offset)
                message[NATSSinkHeader.markerSequence] = String(state.lastMarkerSequence)
                var id = "\(name):\(topic):\(entry.offset)"
                if entry.event > 0 {
                    message[NATSSinkHeader.event] = String(entry.event)
                    id += ":\(entry.event)"
                }
                if entry.event > 1 { Failpoint.hit("sink.nats.between_events") }
                try publish(jetStream, entry.subject, entry.body, message, id: id, state: &state)
            }
        } catch let error as ConnectorError {
            throw error
        } catch {
            throw ConnectorError.transient("sink \(name): cannot read the spooled transaction back from \(spool.path): \(error)")
        }
        spool.reset()
        if skipped > 0 {
            logger.info("nats sink skipped changes its stream already held", metadata: [
                "sink": "\(name)", "topic": "\(topic)", "changes": "\(skipped)", "commit_offset": "\(position.offset)"])
            skipped = 0
        }
        state.skipThrough[topic] = nil
        state.positions[topic] = position
        var marker = headers
        marker[NATSSinkHeader.offset] = String(position.offset)
        marker[NATSSinkHeader.markerSequence] = String(state.lastMarkerSequence)
        let markerSequence = state.nextSequence
        let body = StreamRecovery.markerBody(commit: renderers.commit(commit, topic: topic, offset: position.offset),
                                             positions: state.positions)
        try publish(jetStream, prefix(topic) + "." + NATSSubjects.markerToken, body, marker,
                    id: "\(name):\(topic):\(position.offset)", state: &state)
        state.lastMarkerSequence = markerSequence
        self.state = state
    }

    private func publish(_ jetStream: JetStream, _ subject: String, _ body: [UInt8], _ headers: NATSHeaders, id: String,
                         state: inout PublishState) throws {
        let sequence = state.nextSequence
        do throws(NATSError) {
            try jetStream.publishAsync(subject, body, headers: headers, messageID: id, expectedLastSequence: sequence - 1,
                                       tag: sequence)
        } catch {
            if error.isTransient || error.kind == .noResponders {
                throw ConnectorError.transient("sink \(name): publish to \(subject): \(error)")
            }
            throw ConnectorError.fatal("""
                sink \(name): cannot publish message \(id) (\(body.count) bytes) to \(subject): \(error). \
                A change larger than the server's max_payload cannot be published; raise max_payload on the NATS servers.
                """)
        }
        state.nextSequence += 1
        unacknowledged += 1
        if unacknowledged % 512 == 0 { try checkAcknowledgements(jetStream) }
    }

    /// Takes the acknowledgements that arrived; throws for the first failed one. Each message's tag is
    /// the sequence it must get.
    private func checkAcknowledgements(_ jetStream: JetStream) throws {
        var failure: (sequence: UInt64, reason: String, transient: Bool)?
        for ack in jetStream.takeAsyncAcks() {
            unacknowledged -= 1
            let reason: String
            var transient = true
            switch ack.result {
            case let .success(stored) where stored.sequence == ack.tag && !stored.duplicate:
                continue
            case let .success(stored):
                reason = stored.duplicate ? "was a duplicate of sequence \(stored.sequence) (already published)"
                    : "was stored as sequence \(stored.sequence), not \(ack.tag)"
            case let .failure(error):
                reason = "\(error)"
                transient = error.isTransient || error.kind == .noResponders || error.kind == .wrongLastSequence
            }
            if failure == nil || ack.tag < failure!.sequence { failure = (ack.tag, reason, transient) }
        }
        guard let failure else { return }
        let text = "sink \(name): message for stream \(stream) sequence \(failure.sequence) \(failure.reason); "
            + "the stream is read again and publishing resumes after what it holds"
        throw failure.transient ? ConnectorError.transient(text) : ConnectorError.fatal(text)
    }

    public func commitBatch(positions: [SinkPosition]) throws {
        guard let jetStream else { throw ConnectorError.transient("sink \(name): not connected") }
        if unacknowledged > 0 {
            do throws(NATSError) {
                try jetStream.waitForAsyncAcks(timeoutMilliseconds: Self.ackWaitMillis)
            } catch {
                try checkAcknowledgements(jetStream)
                throw ConnectorError.transient("sink \(name): \(unacknowledged) messages not acknowledged by stream \(stream): \(error)")
            }
            // The outcomes are recorded by libnats' thread; wait the moment it may take.
            let deadline = DispatchTime.now().uptimeNanoseconds + 2_000_000_000
            while jetStream.pendingAsyncCount > 0 && DispatchTime.now().uptimeNanoseconds < deadline { usleep(200) }
        }
        try checkAcknowledgements(jetStream)
        guard unacknowledged == 0 else {
            throw ConnectorError.transient("sink \(name): \(unacknowledged) messages not acknowledged by stream \(stream)")
        }
        dirty = false
    }

    public func rollbackBatch() {
        spool.reset()
        skipped = 0
        if dirty || unacknowledged > 0 { state = nil }
        dirty = false
        unacknowledged = 0
    }

    public func close() {
        rollbackBatch()
        state = nil
        jetStream = nil
        connection?.close()
        connection = nil
    }

    // MARK: Status and checks

    public func probe() throws {
        guard let connection else { throw ConnectorError.transient("sink \(name): not connected") }
        let current = connection.state
        guard current == .connected else {
            let reason = connection.events.lastError.map { ": \($0)" } ?? ""
            throw ConnectorError.transient("sink \(name): NATS \(connection.displayServers) is \(current.rawValue)\(reason)")
        }
        try natsCall(name, "flush to \(connection.displayServers)") { () throws(NATSError) in
            try connection.flush(timeoutMilliseconds: 2_000)
        }
    }

    /// Read from the stream on a connection of its own (any thread may call it).
    public func readPositions() throws -> [String: SinkPosition]? {
        let (connection, jetStream) = try connect()
        defer { connection.close() }
        let positions = try StreamRecovery.read(jetStream, stream: stream, sink: name).positions
        return positions.isEmpty ? nil : positions
    }

    public func check(logger: Logger) -> [CheckFinding] {
        let subject = "sink \(name)"
        let connection: NATSConnection, jetStream: JetStream
        do {
            (connection, jetStream) = try connect()
        } catch {
            let reason = "\(error)".replacingOccurrences(of: "sink \(name): ", with: "")
            if case .misconfigured = error as? ConnectorError {
                return [CheckFinding(.error, subject, reason)]   // The login was refused: the reason says what to set.
            }
            return [CheckFinding(.error, subject, "cannot reach NATS: \(reason)",
                                 fix: "start nats-server with JetStream (-js), or correct servers and the credentials")]
        }
        defer { connection.close() }
        let prefixes = subjectPrefix.map { [$0] } ?? (configuredTopics.isEmpty ? ["cdc.<topic>"] : configuredTopics.map(prefix))
        let wanted = prefixes.map { $0 + ".>" }.joined(separator: ", ")
        do throws(NATSError) {
            guard let info = try jetStream.streamInfo(stream) else {
                return [CheckFinding(.ok, subject, "NATS \(options.displayServers) answers; stream \(stream) will be created "
                                     + "with subjects \(wanted)")]
            }
            var findings = [CheckFinding(.ok, subject, "NATS \(options.displayServers) answers; stream \(stream) holds "
                                         + "\(info.state.messages) messages, subjects \(info.config.subjects)")]
            let missing = prefixes.filter { !$0.contains("<") && !NATSSubjects.covers(info.config.subjects, prefix: $0) }
            if !missing.isEmpty {
                findings.append(CheckFinding(.warning, subject, "stream \(stream) does not capture \(missing.map { $0 + ".>" }): "
                                             + "the sink will add the subjects to it"))
            }
            return findings
        } catch {
            return [CheckFinding(.error, subject, "NATS \(options.displayServers): cannot read stream \(stream): \(error)",
                                 fix: "enable JetStream on the servers (-js), and check the account's permissions")]
        }
    }
}

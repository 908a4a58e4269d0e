import Foundation
import SluiceNATS
import SluiceWire
import XCTest

/// The NATS sink (`type: nats`) against a real nats-server and a real PostgreSQL source. A consumer
/// written here reads the sink's stream by sequence, from 1 to its last, with SluiceNATS, and checks
/// that it holds each committed change exactly once, in commit order — each message's body the line
/// `sluice tail --json` prints for that change, every transaction closed by its commit marker — across
/// SIGKILLs of the daemon while transactions flow, a kill in the middle of a large transaction, an
/// empty transaction, restarts and a stop longer than the stream's duplicate window.
final class NATSSinkTests: PluginSinkTestCase {
    override var fixtureName: String { "natssink" }

    var nats: NATSNode!

    override func setUpWithError() throws {
        try skipUnlessNATSServerIsInstalled()
        try super.setUpWithError()
        nats = try NATSNode(name: "sink", directory: directory)
        try nats.start()
    }

    override func tearDown() {
        // The daemons first (DaemonTestCase), so no sink reconnects to a server about to go.
        super.tearDown()
        nats?.kill()
    }

    // MARK: Configuration and the consumer

    /// The source `app` over `tables` (the workload's by default), into sink `nats` with `extra` lines.
    func writeNATSConfig(_ extra: [String] = [], tables: [String] = PluginWorkload.tables) throws {
        try writeSourceConfig(tables: tables, sinks: [
            "  - name: nats",
            "    type: nats",
            "    servers: [\(nats.url)]",
            "    topics: [app]",
        ] + extra.map { "    " + $0 })
    }

    func connect() throws -> JetStream {
        var options = NATSOptions(servers: [nats.url])
        options.name = "natssink-test-consumer"
        return try NATSConnection(options: options).jetStream()
    }

    /// Every message of `stream`, read by sequence from 1 to its last sequence; fails on a gap.
    func readStream(_ stream: String = "SLUICE_CDC_nats", file: StaticString = #filePath, line: UInt = #line) throws -> [JetStreamMessage] {
        let jetStream = try connect()
        defer { jetStream.connection.close() }
        guard let info = try jetStream.streamInfo(stream) else { return [] }
        var messages: [JetStreamMessage] = []
        messages.reserveCapacity(Int(info.state.lastSequence))
        var sequence: UInt64 = 1
        while sequence <= info.state.lastSequence {
            guard let message = try jetStream.message(stream, sequence: sequence) else {
                XCTFail("stream \(stream) has no message at sequence \(sequence) (of \(info.state.lastSequence))", file: file, line: line)
                throw TestFailure("a gap in \(stream)")
            }
            messages.append(message)
            sequence += 1
        }
        return messages
    }

    func lastSequence(_ stream: String = "SLUICE_CDC_nats") -> UInt64 {
        guard let jetStream = try? connect() else { return 0 }
        defer { jetStream.connection.close() }
        return ((try? jetStream.streamInfo(stream)) ?? nil)?.state.lastSequence ?? 0
    }

    /// The stream's messages as JSON lines, the way `sluice tail --json` prints the records: a change's
    /// body as is, a commit marker's body without its `positions`. Begin records have no message.
    func streamLines(_ messages: [JetStreamMessage], topic: String = "app") -> [String] {
        messages.filter { $0.headers["Sluice-Topic"] == topic }.map { message in
            let body = String(decoding: message.data, as: UTF8.self)
            guard message.subject.hasSuffix("._commit"), let cut = body.range(of: ",\"positions\":") else { return body }
            return String(body[..<cut.lowerBound]) + "}"
        }
    }

    /// `sluice tail <topic> --from-beginning --json`, without its begin lines.
    func tailLines(_ topic: String = "app") throws -> [String] {
        let tail = try sluice(["tail", topic, "--config", configPath, "--from-beginning", "--json"])
        XCTAssertEqual(tail.status, 0, tail.err)
        return tail.out.split(separator: "\n").map(String.init).filter { !$0.contains("\"kind\":\"begin\"") }
    }

    /// Checks the stream message by message: the headers and subjects of changes and commit markers,
    /// each transaction's changes followed by its marker, offsets increasing, message ids unique; then
    /// that the stream is exactly the topic (`tail --json`) with each change once. Returns the
    /// transactions, in stream order.
    @discardableResult
    func verifyStream(_ messages: [JetStreamMessage], topic: String = "app", prefix: String = "cdc.app",
                      file: StaticString = #filePath, line: UInt = #line) throws -> [TopicDump.Transaction] {
        var problems: [String] = []
        func problem(_ text: String) { if problems.count < 10 { problems.append(text) } }
        var ids = Set<String>()
        for message in messages {
            let id = message.headers[NATSHeaders.messageID] ?? ""
            if !ids.insert(id).inserted { problem("message id \(id) appears twice (sequence \(message.sequence))") }
        }
        var transactions: [TopicDump.Transaction] = []
        var open: (commitOffset: String, xid: String, changes: [[String: Any]])?
        var lastOffset: UInt64?
        for message in messages where message.headers["Sluice-Topic"] == topic {
            let headers = message.headers
            guard let offsetText = headers["Sluice-Offset"], let offset = UInt64(offsetText),
                  let commitOffset = headers["Sluice-Commit-Offset"], let xid = headers["Sluice-Xid"],
                  let lsn = headers["Sluice-LSN"], headers["Sluice-Marker-Sequence"] != nil,
                  let object = try? JSONSerialization.jsonObject(with: Data(message.data)) as? [String: Any] else {
                problem("sequence \(message.sequence): headers \(headers.fields) or body missing")
                continue
            }
            if let lastOffset, offset <= lastOffset { problem("sequence \(message.sequence): offset \(offset) after \(lastOffset)") }
            lastOffset = offset
            if headers[NATSHeaders.messageID] != "nats:\(topic):\(offset)" {
                problem("sequence \(message.sequence): Nats-Msg-Id \(headers[NATSHeaders.messageID] ?? "none")")
            }
            if object["offset"] as? Int != Int(offset) { problem("sequence \(message.sequence): body offset \(object["offset"] ?? "none") ≠ \(offset)") }
            if offsetText == commitOffset {
                // A commit marker: closes the open transaction (or stands alone for an empty one).
                if message.subject != prefix + "._commit" { problem("sequence \(message.sequence): marker on \(message.subject)") }
                if object["kind"] as? String != "commit" || "\(object["xid"] ?? "")" != xid || object["lsn"] as? String != lsn {
                    problem("sequence \(message.sequence): marker body \(object) against headers \(headers.fields)")
                }
                let changes = open?.commitOffset == commitOffset ? open!.changes : []
                if let open, open.commitOffset != commitOffset {
                    problem("sequence \(message.sequence): marker of \(commitOffset) while \(open.commitOffset) is open")
                }
                if object["events"] as? Int != changes.count {
                    problem("sequence \(message.sequence): marker says \(object["events"] ?? "?") events, \(changes.count) published")
                }
                let positions = (object["positions"] as? [String: Any])?[topic] as? [String: Any]
                if positions?["offset"] as? Int != Int(offset) || positions?["lsn"] as? String != lsn {
                    problem("sequence \(message.sequence): marker positions \(object["positions"] ?? "none")")
                }
                transactions.append(TopicDump.Transaction(xid: Int(xid) ?? -1, lsn: lsn, changes: changes))
                open = nil
            } else {
                if object["kind"] as? String != "change" { problem("sequence \(message.sequence): not a change: \(object)") }
                // `<prefix>.<schema token>.<table token>`: the tokens decode to the body's table, and encode back.
                let tokens = message.subject.hasPrefix(prefix + ".")
                    ? message.subject.dropFirst(prefix.count + 1).split(separator: ".", omittingEmptySubsequences: false).map(String.init) : []
                let names = tokens.compactMap(natsDecode)
                if tokens.count != 2 || names.count != 2 || names.joined(separator: ".") != object["table"] as? String
                    || names.map(natsToken) != tokens {
                    problem("sequence \(message.sequence): subject \(message.subject) for table \(object["table"] ?? "none")")
                }
                if let current = open, current.commitOffset != commitOffset {
                    problem("sequence \(message.sequence): change of \(commitOffset) while \(current.commitOffset) has no marker")
                }
                if open == nil || open!.commitOffset != commitOffset { open = (commitOffset, xid, []) }
                if open!.xid != xid { problem("sequence \(message.sequence): xid \(xid) in transaction of xid \(open!.xid)") }
                open!.changes.append(object)
            }
        }
        if let open { problem("the stream ends inside the transaction of commit offset \(open.commitOffset)") }
        XCTAssertTrue(problems.isEmpty, "stream problems:\n" + problems.joined(separator: "\n"), file: file, line: line)

        // The stream is the topic: every change and commit `tail --json` prints, once, in order.
        let expected = try tailLines(topic)
        let actual = streamLines(messages, topic: topic)
        if actual != expected {
            let index = zip(actual, expected).enumerated().first { $0.element.0 != $0.element.1 }?.offset ?? min(actual.count, expected.count)
            XCTFail("""
                the stream differs from `sluice tail \(topic) --json` (\(actual.count) lines against \(expected.count)) from line \(index):
                  stream: \(index < actual.count ? actual[index].prefix(300) : "(end)")
                  tail:   \(index < expected.count ? expected[index].prefix(300) : "(end)")
                """ + logTail, file: file, line: line)
        }
        return transactions
    }

    /// The subject token of a schema or table name (the sink's documented percent-encoding).
    func natsToken(_ name: String) -> String {
        var out = ""
        for byte in name.utf8 {
            if byte >= 0x21 && byte <= 0x7E && !".*>%".utf8.contains(byte) {
                out.unicodeScalars.append(Unicode.Scalar(byte))
            } else {
                out += String(format: "%%%02X", byte)
            }
        }
        return out
    }

    /// The name a subject token encodes: `%XX` back to its byte.
    func natsDecode(_ token: String) -> String? {
        var bytes: [UInt8] = []
        var rest = Substring(token)
        while let byte = rest.utf8.first {
            if byte == UInt8(ascii: "%") {
                guard rest.utf8.count >= 3, let value = UInt8(String(rest.dropFirst().prefix(2)), radix: 16) else { return nil }
                bytes.append(value)
                rest = rest.dropFirst(3)
            } else {
                bytes.append(byte)
                rest = rest.dropFirst()
            }
        }
        return String(bytes: bytes, encoding: .utf8)
    }

    /// The last message of the stream and whether it is a change (not a commit marker).
    func lastMessage(_ jetStream: JetStream, _ stream: String = "SLUICE_CDC_nats") throws -> JetStreamMessage? {
        guard let info = try jetStream.streamInfo(stream), info.state.lastSequence > 0 else { return nil }
        return try jetStream.message(stream, sequence: info.state.lastSequence)
    }

    // MARK: (a) SIGKILLs while transactions flow

    func testEachChangeIsPublishedOnceAcrossKillsOfTheDaemon() throws {
        try writeNATSConfig()
        let workload = PluginWorkload(url: source.url)
        var daemon = try startDaemon()
        try waitForSlotActive()
        let writer = workload.start(1...500, pauseMicros: 10_000)
        defer { writer.join() }

        var kills = 0, killsWhileWriting = 0, killsAfterPublishing = 0
        var published = lastSequence()
        while !(workload.isDone && kills >= 4) {
            usleep(UInt32.random(in: 200_000...700_000))
            let writing = !workload.isDone
            daemon.kill()
            kills += 1
            if writing { killsWhileWriting += 1 }
            let now = lastSequence()
            if now != published { killsAfterPublishing += 1 }
            published = now
            daemon = try startDaemon()
        }
        writer.join()
        XCTAssertNil(workload.error, "the workload ran")
        print("nats sink crash loop: \(kills) kills, \(killsWhileWriting) while transactions flowed, "
              + "\(killsAfterPublishing) after the incarnation published; \(workload.committed.count) transactions")
        XCTAssertGreaterThanOrEqual(killsWhileWriting, 3, "SIGKILLs while transactions flowed")
        XCTAssertGreaterThanOrEqual(killsAfterPublishing, 2, "incarnations got to publish between kills" + logTail)

        let status = try waitForCaughtUp(["nats"], timeout: 120)
        XCTAssertEqual(status.state(sink: "nats"), "running", status.text)
        XCTAssertEqual(daemon.terminate(), 0, logTail)
        let messages = try readStream()
        let transactions = try verifyStream(messages)
        pluginAssertExactlyOnce(transactions, workload.committed, logTail)
        XCTAssertEqual(transactions.filter { $0.xid == 0 }.count, 1, "the initial snapshot (empty tables) is one empty transaction")
    }

    // MARK: (b) a kill inside a large transaction

    /// A transaction of 30 000 changes of 1 KB (beyond the sink's in-memory spool, so it goes through
    /// the spool file) is being published when the daemon is SIGKILLed: the stream ends inside it. The
    /// next run resumes after the previous commit and skips the changes already published.
    func testAKillInsideALargeTransactionResumesWithoutRepeatingItsChanges() throws {
        try writeNATSConfig()
        var daemon = try startDaemon()
        try waitForSlotActive()
        let workload = PluginWorkload(url: source.url)
        workload.run(1...20)
        XCTAssertNil(workload.error)
        _ = try waitForCaughtUp(["nats"])

        let jetStream = try connect()
        defer { jetStream.connection.close() }
        var caught: (sequence: UInt64, changes: Int)?
        for attempt in 1...5 where caught == nil {
            let before = lastSequence()
            try source.query("INSERT INTO events (seq, payload) SELECT \(1000 + attempt), repeat('x', 1000) FROM generate_series(1, 30000)")
            // Kill once the stream ends with a change of the large transaction, some thousands into it.
            let killAfter = before + UInt64.random(in: 1_000...12_000)
            let deadline = Date().addingTimeInterval(120)
            while Date() < deadline {
                if let last = try lastMessage(jetStream), last.sequence > killAfter,
                   last.headers["Sluice-Offset"] != last.headers["Sluice-Commit-Offset"] {
                    daemon.kill()
                    break
                }
                if let last = try lastMessage(jetStream), last.sequence > before + 30_000 { break }   // finished before we looked
                usleep(2_000)
            }
            if daemon.isRunning {
                print("attempt \(attempt): the large transaction was published whole before the kill")
                _ = try waitForCaughtUp(["nats"])
                continue
            }
            usleep(500_000)
            guard let last = try lastMessage(jetStream) else { continue }
            if last.headers["Sluice-Offset"] != last.headers["Sluice-Commit-Offset"] {
                let commitOffset = last.headers["Sluice-Commit-Offset"]
                let published = try readStream().filter { $0.headers["Sluice-Commit-Offset"] == commitOffset }.count
                caught = (last.sequence, published)
            }
            daemon = try startDaemon()
        }
        let inside = try XCTUnwrap(caught, "the daemon was never killed inside the large transaction")
        print("killed inside the large transaction: \(inside.changes) of its 30000 changes were published")
        XCTAssertGreaterThan(inside.changes, 0)
        XCTAssertLessThan(inside.changes, 30_000)

        workload.run(21...30)
        _ = try waitForCaughtUp(["nats"], timeout: 120)
        XCTAssertEqual(daemon.terminate(), 0, logTail)
        XCTAssertTrue(daemon.log.contains("skipped changes its stream already held"), "the restart skipped what was published" + logTail)
        let messages = try readStream()
        try verifyStream(messages)
        XCTAssertEqual(messages.filter { $0.headers["Sluice-Topic"] == "app" && $0.subject == "cdc.app.public.events" }.count,
                       try XCTUnwrap(Int(source.scalar("SELECT count(*) FROM events") ?? "")),
                       "every row of events is one message (no truncate ran)")
    }

    // MARK: (c) an empty transaction, restarts, a long stop

    /// The initial snapshot of empty tables is an empty transaction: one commit marker and nothing
    /// else, kept once across a restart and a SIGKILL. Then a stop longer than the stream's duplicate
    /// window (1 s here, on a stream created beforehand): the server no longer remembers any message
    /// id, and the sink still publishes each change once.
    func testAnEmptyTransactionAndALongStopDoNotDuplicate() throws {
        let jetStream = try connect()
        defer { jetStream.connection.close() }
        var config = StreamConfig(name: "CDC", subjects: ["cdc.app.>"])
        config.duplicateWindow = .seconds(1)
        try jetStream.addStream(config)
        try writeNATSConfig(["stream: CDC", "subject_prefix: cdc.app", "format: sluice"])

        var daemon = try startDaemon()
        try waitForSlotActive()
        try eventually(timeout: 60, "the empty snapshot transaction's marker" + logTail) { lastSequence("CDC") >= 1 }
        _ = try waitForCaughtUp(["nats"])
        let first = try XCTUnwrap(try readStream("CDC").first)
        XCTAssertEqual(first.subject, "cdc.app._commit")
        XCTAssertEqual(first.headers["Sluice-Xid"], "0")
        XCTAssertEqual(first.headers["Sluice-Offset"], first.headers["Sluice-Commit-Offset"])
        XCTAssertEqual(first.headers[NATSHeaders.messageID], "nats:app:\(first.headers["Sluice-Offset"] ?? "?")")
        let body = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(first.data)) as? [String: Any])
        XCTAssertEqual(body["events"] as? Int, 0, "\(body)")

        // A clean restart and a SIGKILL with nothing new: still the one marker.
        XCTAssertEqual(daemon.terminate(), 0, logTail)
        daemon = try startDaemon()
        _ = try waitForCaughtUp(["nats"])
        sleep(2)
        daemon.kill()
        daemon = try startDaemon()
        _ = try waitForCaughtUp(["nats"])
        sleep(1)
        XCTAssertEqual(lastSequence("CDC"), 1, "the empty transaction is published once" + logTail)

        let workload = PluginWorkload(url: source.url)
        workload.run(1...40)
        _ = try waitForCaughtUp(["nats"])
        XCTAssertEqual(daemon.terminate(), 0, logTail)
        let afterFirst = lastSequence("CDC")

        // The long stop: transactions commit while no daemon runs, well past the duplicate window.
        let later = PluginWorkload(url: source.url)
        later.run(41...140)
        XCTAssertNil(later.error)
        sleep(3)
        XCTAssertEqual(lastSequence("CDC"), afterFirst, "nothing is published while the daemon is stopped")
        daemon = try startDaemon()
        _ = try waitForCaughtUp(["nats"])
        daemon.kill()   // and once more without a goodbye, right after catching up
        daemon = try startDaemon()
        _ = try waitForCaughtUp(["nats"])
        XCTAssertEqual(daemon.terminate(), 0, logTail)

        let messages = try readStream("CDC")
        let transactions = try verifyStream(messages)
        pluginAssertExactlyOnce(transactions, workload.committed + later.committed, logTail)
        XCTAssertEqual(transactions.filter { $0.xid == 0 }.count, 1, "one empty snapshot transaction")
        XCTAssertEqual(try XCTUnwrap(jetStream.streamInfo("CDC")).config.subjects, ["cdc.app.>"], "the stream kept its subjects")
    }

    // MARK: (d) names that are not subject tokens

    func testSchemaAndTableNamesArePercentEncodedInSubjects() throws {
        try source.query(#"""
            CREATE SCHEMA "odd.schema";
            CREATE TABLE "odd.schema"."a b*>%" (id int PRIMARY KEY, note text);
            CREATE TABLE public."café" (id int PRIMARY KEY);
            """#)
        // YAML single-quoted entries, each part quoted the SQL way.
        try writeNATSConfig(tables: [#"'"odd.schema"."a b*>%"'"#, #"'public."café"'"#])
        let daemon = try startDaemon()
        try waitForSlotActive()
        try source.query(#"""
            INSERT INTO "odd.schema"."a b*>%" VALUES (1, 'one');
            INSERT INTO public."café" VALUES (7);
            """#)
        _ = try waitForCaughtUp(["nats"])
        XCTAssertEqual(daemon.terminate(), 0, logTail)
        let messages = try readStream()
        try verifyStream(messages)
        let subjects = Set(messages.map(\.subject))
        XCTAssertTrue(subjects.contains("cdc.app.odd%2Eschema.a%20b%2A%3E%25"), "\(subjects)")
        XCTAssertTrue(subjects.contains("cdc.app.public.caf%C3%A9"), "\(subjects)")
    }

    // MARK: (e) two topics into one stream

    /// Two sources (topics `app` and `audit`) into one sink with one subject prefix: the commit
    /// markers of both share `cdc.all._commit`, each carrying both topics' positions, and SIGKILLs
    /// while both write leave each topic's changes in the stream exactly once.
    func testTwoTopicsShareAStreamAcrossKills() throws {
        try source.query("CREATE TABLE audit (id bigserial PRIMARY KEY, seq int NOT NULL, note text)")
        let lines = [
            "data_dir: \(dataDirectory)",
            "sources:",
            "  - name: app",
            "    type: postgres",
            "    url: \(source.url)",
            "    tables: [\(PluginWorkload.tables.joined(separator: ", "))]",
            "  - name: audit",
            "    type: postgres",
            "    url: \(source.url)",
            "    tables: [public.audit]",
            "sinks:",
            "  - name: nats",
            "    type: nats",
            "    servers: [\(nats.url)]",
            "    subject_prefix: cdc.all",
            "    topics: [app, audit]",
        ]
        try (lines.joined(separator: "\n") + "\n").write(toFile: configPath, atomically: true, encoding: .utf8)
        var daemon = try startDaemon()
        try eventually(timeout: 60, "both replication slots to be active" + logTail) {
            try source.scalar("SELECT count(*) FILTER (WHERE active)::text FROM pg_replication_slots") == "2"
        }
        let workload = PluginWorkload(url: source.url)
        let writer = workload.start(1...300, pauseMicros: 10_000)
        defer { writer.join() }
        let url = source.url
        let auditDone = SinkTestFlag()
        let audits = SinkTestStats()
        let auditWriter = SinkTestWorker("audit-writer") {
            defer { auditDone.set() }
            guard let db = try? PGConnection(url: url) else { return }
            for seq in 1...200 {
                if (try? db.execute("INSERT INTO audit (seq, note) VALUES (\(seq), 'audit \(seq)')")) != nil { audits.count("rows") }
                usleep(15_000)
            }
        }
        defer { auditWriter.join() }
        var kills = 0
        while !(workload.isDone && auditDone.isSet && kills >= 4) {
            usleep(UInt32.random(in: 200_000...700_000))
            daemon.kill()
            kills += 1
            daemon = try startDaemon()
        }
        writer.join()
        auditWriter.join()
        XCTAssertNil(workload.error)
        XCTAssertEqual(audits["rows"], 200)
        try eventually(timeout: 120, "the sink to catch up on both topics" + logTail) {
            let status = try sluiceStatus(configPath)
            return status.caughtUp("nats", "app") && status.caughtUp("nats", "audit")
        }
        XCTAssertEqual(daemon.terminate(), 0, logTail)
        print("nats sink, two topics: \(kills) kills")

        let messages = try readStream()
        XCTAssertEqual(Set(messages.filter { $0.subject.hasSuffix("._commit") }.map(\.subject)), ["cdc.all._commit"])
        let app = try verifyStream(messages, topic: "app", prefix: "cdc.all")
        pluginAssertExactlyOnce(app, workload.committed, logTail)
        let audit = try verifyStream(messages, topic: "audit", prefix: "cdc.all")
        XCTAssertEqual(audit.filter { $0.xid != 0 }.count, 200, "each audit insert is one transaction, once")
        XCTAssertEqual(audit.filter { $0.xid != 0 }.flatMap(\.changes).compactMap { ($0["after"] as? [String: Any])?["seq"] as? Int },
                       Array(1...200), "audit changes in commit order")
        // The last marker knows both topics' positions.
        let lastMarker = try XCTUnwrap(messages.last { $0.subject == "cdc.all._commit" })
        let positions = try XCTUnwrap((try JSONSerialization.jsonObject(with: Data(lastMarker.data)) as? [String: Any])?["positions"] as? [String: Any])
        XCTAssertEqual(Set(positions.keys), ["app", "audit"])
    }

    // MARK: (f) the NATS server goes away

    /// nats-server is SIGKILLed while transactions flow and started again (same store and port) after
    /// a few seconds: the sink reports the outage, then resumes from what the stream holds.
    func testARestartOfTheNATSServerWhileTransactionsFlowLosesAndRepeatsNothing() throws {
        try writeNATSConfig()
        let daemon = try startDaemon()
        try waitForSlotActive()
        let workload = PluginWorkload(url: source.url)
        let writer = workload.start(1...400, pauseMicros: 10_000)
        defer { writer.join() }
        try eventually(timeout: 60, "the sink to publish" + logTail) { lastSequence() > 50 }
        for round in 1...2 {
            nats.kill()
            try eventually(timeout: 60, "round \(round): status to show the sink retrying" + logTail) {
                try sluiceStatus(configPath).state(sink: "nats") == "retrying"
            }
            sleep(2)
            try nats.start()
            try eventually(timeout: 60, "round \(round): the sink to publish again" + logTail) {
                try sluiceStatus(configPath).state(sink: "nats") == "running"
            }
            usleep(500_000)
        }
        writer.join()
        XCTAssertNil(workload.error)
        _ = try waitForCaughtUp(["nats"], timeout: 120)
        XCTAssertEqual(daemon.terminate(), 0, logTail)
        let transactions = try verifyStream(try readStream())
        pluginAssertExactlyOnce(transactions, workload.committed, logTail)
    }

    // MARK: (g) configuration

    /// `format: debezium`: each change message's body is Debezium's envelope, numbered within its
    /// transaction; the commit markers stay Sluice's (the sink resumes from them).
    func testFormatDebeziumPublishesDebeziumEnvelopes() throws {
        try writeNATSConfig(["format: avro"])
        let wrong = try sluice(["check", "--config", configPath, "--file-only"])
        XCTAssertEqual(wrong.status, 2, wrong.describe)
        XCTAssertTrue(wrong.err.contains("format") && wrong.err.contains("'avro'"), wrong.describe)

        try writeNATSConfig(["format: debezium"])
        let daemon = try startDaemon()
        try waitForSlotActive()
        let workload = PluginWorkload(url: source.url)
        workload.run(1...6)
        XCTAssertNil(workload.error)
        _ = try waitForCaughtUp(["nats"], timeout: 120)
        XCTAssertEqual(daemon.terminate(), 0, logTail)
        var changes = 0
        var order: [String: Int] = [:]
        for message in try readStream() where !message.subject.hasSuffix("._commit") {
            let event = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(message.data)) as? [String: Any],
                                      String(decoding: message.data, as: UTF8.self))
            let source = try XCTUnwrap(event["source"] as? [String: Any], "\(event)")
            let transaction = try XCTUnwrap(event["transaction"] as? [String: Any], "\(event)")
            XCTAssertEqual(source["connector"] as? String, "postgresql")
            XCTAssertEqual(source["name"] as? String, "app")
            XCTAssertEqual(source["txId"] as? Int, Int(message.headers["Sluice-Xid"] ?? ""), "\(event)")
            XCTAssertTrue(message.subject.hasSuffix("." + (source["schema"] as? String ?? "?") + "." + (source["table"] as? String ?? "?")),
                          "\(message.subject): \(event)")
            XCTAssertTrue(["c", "u", "d"].contains(event["op"] as? String ?? ""), "\(event)")
            let id = try XCTUnwrap(transaction["id"] as? String)
            XCTAssertTrue(id.hasPrefix((message.headers["Sluice-Xid"] ?? "?") + ":"), id)
            order[id, default: 0] += 1
            XCTAssertEqual(transaction["total_order"] as? Int, order[id], "events numbered in transaction order: \(event)")
            changes += 1
        }
        XCTAssertGreaterThan(changes, 0, "the workload's changes were published" + logTail)
    }

    /// A server that refuses the login is a configuration error, not an outage: `run` exits 2 at
    /// once naming the server and what to set, and `check` says the same — for the `nats` sink and
    /// for topics in JetStream.
    func testARefusedLoginExitsTwoNamingTheServerAndTheFix() throws {
        let guarded = try NATSNode(name: "guarded", directory: directory)
        guarded.extraArguments = ["--user", "sluice", "--pass", "right-password"]
        try guarded.start()
        defer { guarded.kill() }
        let server = "127.0.0.1:\(guarded.port)"

        try writeSourceConfig(tables: PluginWorkload.tables, sinks: [
            "  - name: nats", "    type: nats", "    servers: [\(guarded.url)]", "    topics: [app]",
            "    user: sluice", "    password: wrong-password",
        ])
        let sinkRun = try sluice(["run", "--config", configPath], timeout: 60)
        XCTAssertEqual(sinkRun.status, 2, "a refused login stops the daemon as a configuration error: \(sinkRun.describe)")
        XCTAssertTrue(sinkRun.all.contains("sink nats") && sinkRun.all.contains(server) && sinkRun.all.contains("refused the login"),
                      sinkRun.describe)
        XCTAssertFalse(sinkRun.all.contains("wrong-password"), "the password is not printed: \(sinkRun.describe)")
        let sinkCheck = try sluice(["check", "--config", configPath])
        XCTAssertNotEqual(sinkCheck.status, 0, sinkCheck.describe)
        XCTAssertTrue(sinkCheck.all.contains("refused the login") && sinkCheck.all.contains("password"), sinkCheck.describe)

        try writeSourceConfig(tables: PluginWorkload.tables, topExtra: [
            "topics:", "  backend: jetstream", "  servers: [\(guarded.url)]", "  token: not-the-token",
        ], sinks: ["  - name: local", "    type: sqlite", "    path: \(directory!)/local.db", "    topics: [app]"])
        let topicsRun = try sluice(["run", "--config", configPath], timeout: 60)
        XCTAssertEqual(topicsRun.status, 2, "topics on a server refusing the login: \(topicsRun.describe)")
        XCTAssertTrue(topicsRun.all.contains(server) && topicsRun.all.contains("refused the login with a token")
                      && topicsRun.all.contains("topics.token"), topicsRun.describe)
        XCTAssertFalse(topicsRun.all.contains("not-the-token"), "the token is not printed: \(topicsRun.describe)")
        let topicsCheck = try sluice(["check", "--config", configPath])
        XCTAssertNotEqual(topicsCheck.status, 0, topicsCheck.describe)
        XCTAssertTrue(topicsCheck.all.contains("refused the login") && topicsCheck.all.contains("topics.user"), topicsCheck.describe)
    }

    func testAStreamThatCapturesTheSubjectsElsewhereIsReported() throws {
        let jetStream = try connect()
        defer { jetStream.connection.close() }
        try jetStream.addStream(StreamConfig(name: "OTHER", subjects: ["cdc.>"]))
        try writeNATSConfig()
        let daemon = try startDaemon()
        XCTAssertEqual(daemon.wait(timeout: 60), 2, "a subject conflict stops the daemon as a configuration error" + logTail)
        XCTAssertTrue(daemon.log.contains("another stream already captures"), logTail)
    }
}

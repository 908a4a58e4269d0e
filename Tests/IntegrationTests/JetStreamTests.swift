import Foundation
import SluiceWire
import XCTest

/// The JetStream topic backend end to end, against real nats-servers: `sluice run` streams a mixed
/// workload (inserts, updates, deletes, key changes, a keyless REPLICA IDENTITY FULL table with
/// duplicate rows, transactions too large for one JetStream message) through a stream into a
/// PostgreSQL and an SQLite target, and both must end exactly equal to the source — a row lost shows
/// as missing, a transaction applied twice as a duplicated row of the keyless table — after
/// `sluice run` is SIGKILLed repeatedly, after the nats-server is SIGKILLed and restarted, after a
/// follower and then the stream leader of a three-node cluster die, and with the source and each
/// sink in processes of their own, each killed at random moments.
final class JetStreamTests: SinkTestCase {
    override var fixtureName: String { "jetstream" }

    static let tables = ["public.items", "public.tags", "public.journal", "public.bulk"]
    static let streamPrefix = "SLT"
    var streamName: String { Self.streamPrefix + "_app" }

    /// Every nats-server this test started (killed at teardown).
    var natsNodes: [NATSNode] = []
    /// Logs of processes other than `daemon.log`, shown in failure messages.
    var extraLogs: [String] = []

    override func setUpWithError() throws {
        try skipUnlessNATSServerIsInstalled()
        try super.setUpWithError()
    }

    override func tearDown() {
        // The daemons first, so that none is left reconnecting to a server that is gone.
        for daemon in daemons where daemon.isRunning { daemon.kill() }
        natsNodes.forEach { $0.kill() }
        natsNodes.removeAll()
        super.tearDown()
    }

    override var logTail: String {
        var text = super.logTail
        for path in extraLogs {
            let log = (try? String(contentsOfFile: path, encoding: .utf8)) ?? "(none)"
            text += "\n--- \((path as NSString).lastPathComponent) (last \(min(log.count, 12_000)) of \(log.count) chars) ---\n"
                + String(log.suffix(12_000))
        }
        for node in natsNodes {
            text += "\n--- nats-server \(node.name) (port \(node.port), \(node.isRunning ? "running" : "down")) ---\n"
                + String(node.logTail.suffix(1_500))
        }
        return text
    }

    // MARK: Setup

    func startNATS() throws -> NATSNode {
        let node = try NATSNode(name: "n1", directory: directory)
        natsNodes.append(node)
        try node.start()
        return node
    }

    func startNATSCluster() throws -> NATSNodeCluster {
        let cluster = try NATSNodeCluster(name: "sluice-it", directory: directory)
        natsNodes += cluster.nodes
        try cluster.start()
        return cluster
    }

    /// The top-level `topics:` section for these servers.
    func topicsSection(_ servers: [String], replicas: Int) -> [String] {
        ["topics:",
         "  backend: jetstream",
         "  servers: [\(servers.joined(separator: ", "))]",
         "  replicas: \(replicas)",
         "  stream_prefix: \(Self.streamPrefix)"]
    }

    /// The workload's tables: `items` (a key, updates and key changes), `tags` (no key, REPLICA
    /// IDENTITY FULL, identical rows), `journal` (inserts), `bulk` (large transactions).
    func createSchema() throws {
        try source.query("""
            CREATE TABLE items (id int PRIMARY KEY, val int NOT NULL, note text);
            INSERT INTO items SELECT i, i % 1000, 'item ' || i FROM generate_series(1, \(JetStreamWorkload.preloaded)) i;
            CREATE TABLE tags (k int, v text);
            ALTER TABLE tags REPLICA IDENTITY FULL;
            INSERT INTO tags SELECT i % 50, 'dup' FROM generate_series(1, 300) i;  -- 6 identical rows per k
            INSERT INTO tags VALUES (NULL, 'null key'), (NULL, 'null key'), (7, NULL);
            CREATE TABLE journal (id bigserial PRIMARY KEY, writer int, payload text);
            CREATE TABLE bulk (id bigint PRIMARY KEY, batch int NOT NULL, payload text);
            """)
    }

    func assertEveryTableExact(file: StaticString = #filePath, line: UInt = #line) throws {
        for table in Self.tables { try assertTargetsEqualSource(table, file: file, line: line) }
    }

    /// A transaction that inserts one `journal` row; returns an LSN at or before its commit and its xid.
    func commitFinal(_ label: String) throws -> (lsn: UInt64, xid: Int) {
        let db = try source.connect()
        try db.execute("BEGIN")
        try db.execute("INSERT INTO journal (writer, payload) VALUES (-1, $1)", [label])
        let xid = try XCTUnwrap(Int(XCTUnwrap(db.execute("SELECT txid_current()").string(0, 0))))
        let lsn = try XCTUnwrap(db.execute("SELECT pg_current_wal_insert_lsn()::text").string(0, 0))
        try db.execute("COMMIT")
        return (lsnValue(lsn), xid)
    }

    /// Marks the journal and waits until both targets applied it (everything committed before too).
    func waitForTargetsToCatchUp(_ label: String, timeout: TimeInterval = 120, file: StaticString = #filePath, line: UInt = #line) throws {
        let lsn = try commitMarked("INSERT INTO journal (writer, payload) VALUES (-1, '\(label)')")
        try waitForTargets(lsn: lsn, timeout: timeout, file: file, line: line)
    }

    func targetPositions() -> [UInt64?] { [(try? postgresTargetLSN()) ?? nil, (try? sqliteTargetLSN()) ?? nil] }

    func metricsRetries(port: Int, _ connector: String, _ name: String) throws -> Double {
        let response = try opsHTTPGet(port: port, path: "/metrics")
        guard response.status == 200 else { throw TestFailure("/metrics answered \(response.status): \(response.body)") }
        return opsMetric(opsParseMetrics(response.body), "sluice_\(connector)_retries_total", [connector: name]) ?? 0
    }

    // MARK: 1. One server

    /// A mixed workload and a 100,000-row transaction (many JetStream messages) through one server;
    /// then `sluice status` shows the topic and both sinks caught up, and `sluice tail -n 1` prints
    /// the last transaction.
    func testSingleServerCarriesAMixedWorkloadAndATransactionLargerThanAMessage() throws {
        let nats = try startNATS()
        try createSchema()
        try writeConfig(tables: Self.tables, topExtra: topicsSection([nats.url], replicas: 1))
        let daemon = try startDaemon()
        try waitForSlotActive()
        try eventually(timeout: 30, "stream \(streamName) to be created" + logTail) { try nats.stream(streamName) != nil }

        let workload = JetStreamWorkload(url: source.url, smallWriters: 2, bulkRows: nil)
        defer { workload.finish() }
        try eventually(timeout: 60, "the workload to commit 300 transactions: \(workload.stats.summary)") { workload.stats["committed"] >= 300 }
        workload.finish()
        XCTAssertEqual(workload.stats["failed"], 0, "the workload ran: \(workload.stats.summary) \(workload.stats.notes)")
        try waitForTargetsToCatchUp("after the small transactions")

        // One transaction far larger than a message (at most 900 KiB): its records go out as chunks
        // closed by a batch.
        let before = try XCTUnwrap(try nats.stream(streamName))
        let big = try commitMarked("""
            INSERT INTO bulk SELECT i, 0, 'bulk row ' || i || repeat('y', 40) FROM generate_series(1, 100000) i;
            UPDATE items SET note = 'in the big one' WHERE id <= 10;
            DELETE FROM tags WHERE k = 3;
            INSERT INTO tags VALUES (3, 'dup'), (3, 'dup');
            """)
        try waitForTargets(lsn: big, timeout: 120)
        let after = try XCTUnwrap(try nats.stream(streamName))
        print("100k-row transaction: stream sequences \(before.lastSequence) → \(after.lastSequence), bytes \(before.bytes) → \(after.bytes)")
        XCTAssertGreaterThan(after.bytes - before.bytes, 2 * 900 * 1024, "the transaction holds megabytes: \(after.text)")
        XCTAssertGreaterThanOrEqual(after.lastSequence - before.lastSequence, 3,
                                    "the 100k-row transaction spans several messages (chunks and a batch): \(before.text) → \(after.text)")
        XCTAssertEqual(try target.count("bulk"), 100_000)
        XCTAssertEqual(try sqliteCount("public.bulk"), 100_000)

        // Another large one: updates and deletes of those rows.
        let second = try commitMarked("UPDATE bulk SET payload = 'changed ' || id WHERE id % 3 = 0; DELETE FROM bulk WHERE id % 5 = 0;")
        try waitForTargets(lsn: second, timeout: 120)

        let final = try commitFinal("final")
        try waitForTargets(lsn: final.lsn)
        try assertEveryTableExact()
        XCTAssertEqual(try target.count("bulk"), 80_000)

        // sluice status: the topic, and both sinks running and caught up with it.
        var status = StatusView([:])
        try eventually(timeout: 30, "sluice status to show both sinks caught up with topic app: \(status.text)" + logTail) {
            status = try sluiceStatus(configPath)
            return status.caughtUp("replica", "app") && status.caughtUp("local", "app")
        }
        XCTAssertEqual(status.state(sink: "replica"), "running", status.text)
        XCTAssertEqual(status.state(sink: "local"), "running", status.text)
        let topic = try XCTUnwrap(status.topic("app"), status.text)
        XCTAssertGreaterThan(topic["size_bytes"] as? Int ?? 0, 0, status.text)
        XCTAssertNotNil(topic["last_commit_lsn"] as? String, status.text)
        let end = try XCTUnwrap(status.endOffset("app"), status.text)
        XCTAssertEqual(try target.scalar("SELECT \"offset\" FROM sluice_offsets WHERE sink = 'replica' AND topic = 'app'"), "\(end)")
        let human = try sluice(["status", "--config", configPath])
        XCTAssertEqual(human.status, 0, human.describe)
        for expected in ["TOPIC", "SINK", "replica", "local", "\(end)"] {
            XCTAssertTrue(human.out.contains(expected), "sluice status mentions \"\(expected)\": \(human.describe)")
        }
        XCTAssertTrue(human.out.split(separator: "\n").contains { $0.hasPrefix("app") && $0.contains("\(end)") },
                      "a TOPIC row for app with its end offset: \(human.describe)")
        XCTAssertTrue(human.out.split(separator: "\n").contains { $0.hasPrefix("replica") && $0.contains("running") }, human.describe)
        XCTAssertTrue(human.out.split(separator: "\n").contains { $0.hasPrefix("local") && $0.contains("running") }, human.describe)

        // sluice tail -n 1: the last transaction, from its begin to its commit.
        let tail = try sluice(["tail", "app", "--config", configPath, "-n", "1"])
        XCTAssertEqual(tail.status, 0, tail.describe)
        let lines = tail.out.split(separator: "\n")
        let commits = lines.filter { $0.contains("\tCOMMIT\t") }
        XCTAssertEqual(commits.count, 1, "one transaction: \(tail.describe)")
        XCTAssertTrue(commits.first?.contains("xid=\(final.xid) ") == true, "the last commit is the final transaction's (xid \(final.xid)): \(tail.describe)")
        XCTAssertTrue(commits.first?.contains("events=1") == true, tail.describe)
        XCTAssertEqual(lines.filter { $0.contains("\tBEGIN\t") }.count, 1, tail.describe)
        XCTAssertTrue(lines.last?.contains("\tCOMMIT\t") == true, tail.describe)
        let tailJSON = try sluice(["tail", "app", "--config", configPath, "-n", "1", "--json"])
        XCTAssertEqual(tailJSON.status, 0, tailJSON.describe)
        let dump = try TopicDump(json: tailJSON.out)
        XCTAssertEqual(dump.transactions.map(\.xid), [final.xid], tailJSON.describe)
        XCTAssertEqual((dump.transactions.first?.changes.first?["after"] as? [String: Any])?["payload"] as? String, "final", tailJSON.describe)

        XCTAssertTrue(daemon.isRunning, logTail)
        XCTAssertEqual(daemon.terminate(), 0, "clean exit on SIGTERM" + logTail)
    }

    // MARK: 2. SIGKILL loop

    /// `sluice run` SIGKILLed at random moments while small and large transactions commit, and
    /// restarted each time: both targets end exact.
    func testKillingTheDaemonRepeatedlyKeepsBothTargetsExact() throws {
        let nats = try startNATS()
        try createSchema()
        try writeConfig(tables: Self.tables, topExtra: topicsSection([nats.url], replicas: 1))
        var daemon = try startDaemon()
        try waitForSlotActive()

        let workload = JetStreamWorkload(url: source.url, smallWriters: 2, bulkRows: 15_000)
        defer { workload.finish() }
        try eventually(timeout: 30, "the workload to start: \(workload.stats.summary)") { workload.stats["committed"] >= 20 }

        var kills = 0
        var killsAfterApplying = 0
        var positions = targetPositions()
        let started = Date()
        // Until at least 6 kills, 3 of them after the incarnation applied something, and 10 seconds;
        // at most 20 kills or 90 seconds (a loaded machine starts the daemon slowly).
        func enough() -> Bool { kills >= 6 && killsAfterApplying >= 3 && Date().timeIntervalSince(started) >= 10 }
        func exhausted() -> Bool { kills >= 20 || Date().timeIntervalSince(started) >= 90 }
        while !enough() && !exhausted() {
            if kills % 2 == 1 {
                // Every other incarnation is seen applying before its kill: on a loaded machine a daemon killed
                // at a random moment may never get that far, and the loop would test only startups.
                try eventually(timeout: 60, "incarnation \(kills + 1) to apply transactions" + logTail) { targetPositions() != positions }
            }
            usleep(UInt32.random(in: 300_000...1_500_000))
            daemon.kill()
            kills += 1
            XCTAssertEqual(daemon.status, 128 + SIGKILL, "incarnation \(kills) ran until it was killed" + logTail)
            let now = targetPositions()
            if now != positions { killsAfterApplying += 1 }
            positions = now
            daemon = try startDaemon()
        }
        workload.finish()
        print("jetstream kill loop: \(kills) kills in \(Int(Date().timeIntervalSince(started))) s, \(killsAfterApplying) after the "
              + "incarnation applied transactions; workload \(workload.stats.summary)")
        XCTAssertGreaterThanOrEqual(kills, 5)
        XCTAssertGreaterThanOrEqual(killsAfterApplying, 2, "incarnations applied transactions between kills" + logTail)
        XCTAssertGreaterThanOrEqual(workload.stats["bulk committed"], 2, "large transactions committed during the loop: \(workload.stats.summary)")
        XCTAssertEqual(workload.stats["failed"], 0, "\(workload.stats.notes)")

        try waitForSlotActive()
        let final = try commitFinal("final")
        try waitForTargets(lsn: final.lsn, timeout: 150)
        try assertEveryTableExact()
        XCTAssertTrue(daemon.isRunning, logTail)
        XCTAssertEqual(daemon.terminate(), 0, "clean exit on SIGTERM" + logTail)
    }

    // MARK: 3. The server dies

    /// The nats-server SIGKILLed twice mid-stream (the second time just after a large transaction
    /// committed) and restarted on the same store and port: the daemon notices (its retry counter
    /// moves), never exits, and both targets end exact.
    func testNATSServerKilledAndRestartedMidStream() throws {
        let nats = try startNATS()
        try createSchema()
        let metricsPort = try freePort()
        try writeConfig(tables: Self.tables, topExtra: topicsSection([nats.url], replicas: 1)
                        + ["metrics:", "  listen: \"127.0.0.1:\(metricsPort)\""])
        let daemon = try startDaemon()
        try waitForSlotActive()

        // The same load as the other tests (two small writers, about 250 transactions a second, and the
        // large ones): the daemon must notice the outage under load, not only when idle.
        let workload = JetStreamWorkload(url: source.url, smallWriters: 2, bulkRows: 15_000)
        defer { workload.finish() }

        let started = Date()
        for round in 1...2 {
            try waitForTargetsToCatchUp("before server kill \(round)")
            let caughtUp = Date()
            if round == 2 {
                // Right after a large transaction commits: the source is most likely publishing its chunks.
                let bulk = workload.stats["bulk committed"]
                try eventually(timeout: 30, "a large transaction to commit: \(workload.stats.summary)") { workload.stats["bulk committed"] > bulk }
                usleep(UInt32.random(in: 0...200_000))
            }
            let retries = try metricsRetries(port: metricsPort, "source", "app")
            let committed = workload.stats["committed"]
            nats.kill()
            // The source cannot publish: it reports the outage and retries (its publisher reports it once
            // acks are missing for 5 s and a synchronous resend failed for 3 s more). Waited for up to
            // 60 s; the server comes back either way, so that the recovery is tested too.
            let killed = Date()
            var noticed: TimeInterval?
            while noticed == nil && Date().timeIntervalSince(killed) < 60 {
                if let count = try? metricsRetries(port: metricsPort, "source", "app"), count > retries {
                    noticed = Date().timeIntervalSince(killed)
                } else {
                    usleep(200_000)
                }
            }
            print("server kill \(round) (\(Int(killed.timeIntervalSince(caughtUp))) s after catching up, \(Int(killed.timeIntervalSince(started))) s in): "
                  + "source app retried \(noticed.map { String(format: "%.1f s", $0) } ?? "not within 60 s") after the kill")
            XCTAssertLessThanOrEqual(noticed ?? .infinity, 60, "source app retries within 60 s of the server's death (round \(round)); "
                                     + "status: \((try? sluice(["status", "--config", configPath, "--json"], timeout: 30).out) ?? "?")" + logTail)
            XCTAssertTrue(daemon.isRunning, "the daemon survives the server's death" + logTail)
            XCTAssertGreaterThan(workload.stats["committed"], committed, "the source database took transactions while the server was down")
            try nats.start()
            try eventually(timeout: 30, "stream \(streamName) back after the restart" + logTail) { try nats.stream(streamName) != nil }
            let restarted = Date()
            try waitForTargetsToCatchUp("after server restart \(round)", timeout: 150)
            print("server restart \(round): targets caught up \(Int(Date().timeIntervalSince(restarted))) s after the restart")
            XCTAssertTrue(daemon.isRunning, logTail)
        }
        workload.finish()
        print("jetstream server restarts: workload \(workload.stats.summary)")
        XCTAssertGreaterThanOrEqual(workload.stats["bulk committed"], 2, workload.stats.summary)
        XCTAssertEqual(workload.stats["failed"], 0, "\(workload.stats.notes)")

        let final = try commitFinal("final")
        try waitForTargets(lsn: final.lsn, timeout: 150)
        try assertEveryTableExact()
        XCTAssertTrue(daemon.isRunning, "the daemon never exited" + logTail)
        XCTAssertEqual(daemon.terminate(), 0, "clean exit on SIGTERM" + logTail)
    }

    /// The daemon started while its only nats-server is down, its sinks holding positions: they retry
    /// (the topic's end is unknown, not empty; they failed with "the topic lost transactions") and
    /// catch up once the server is back, without a restart.
    func testSinksWithPositionsStartedDuringAnOutageRetryAndRecover() throws {
        let nats = try startNATS()
        try createSchema()
        try writeConfig(tables: Self.tables, topExtra: topicsSection([nats.url], replicas: 1))
        let first = try startDaemon()
        try waitForSlotActive()
        try waitForTargetsToCatchUp("before the outage")
        XCTAssertEqual(first.terminate(), 0, logTail)

        nats.kill()
        let daemon = try startDaemon()
        var status = StatusView([:])
        try eventually(timeout: 60, "both sinks retrying while the server is down: \(status.text)" + logTail) {
            let result = try sluice(["status", "--config", configPath, "--json"], timeout: 30)
            status = StatusView((try? JSONSerialization.jsonObject(with: Data(result.out.utf8)) as? [String: Any]) ?? [:])
            return status.state(sink: "replica") == "retrying" && status.state(sink: "local") == "retrying"
        }
        XCTAssertFalse(daemon.log.contains("lost transactions"), logTail)
        try source.query("INSERT INTO journal (writer, payload) VALUES (-2, 'during the outage')")

        try nats.start()
        try waitForTargetsToCatchUp("after the outage", timeout: 150)
        XCTAssertTrue(daemon.isRunning, logTail)
        try assertEveryTableExact()
        XCTAssertEqual(daemon.terminate(), 0, logTail)
    }

    /// A sink-only process (split deployment) started while the nats-server is down retries instead of
    /// exiting 1, shows its sink retrying (not running with lag 0) through the outage, and catches up.
    func testASinkOnlyProcessRetriesThroughAnOutage() throws {
        let nats = try startNATS()
        try createSchema()
        let topics = topicsSection([nats.url], replicas: 1)
        func write(_ name: String, _ lines: [String]) throws -> String {
            let path = directory + "/\(name).yml"
            try ((["data_dir: \(directory!)/data-\(name)"] + topics + lines).joined(separator: "\n") + "\n")
                .write(toFile: path, atomically: true, encoding: .utf8)
            return path
        }
        let sourceConfig = try write("source", ["sources:", "  - name: app", "    type: postgres", "    url: \(source.url)",
                                                "    tables: [\(Self.tables.joined(separator: ", "))]"])
        let sinkConfig = try write("sink", ["sinks:", "  - name: local", "    type: sqlite", "    path: \(sqlitePath)", "    topics: [app]"])
        let sourceLog = directory + "/source.log", sinkLog = directory + "/sink.log"
        extraLogs = [sourceLog, sinkLog]
        let producer = try SluiceProcess(["run", "--config", sourceConfig], logPath: sourceLog)
        daemons.append(producer)
        try eventually(timeout: 60, "stream \(streamName) created" + logTail) { try nats.stream(streamName) != nil }

        nats.kill()
        let consumer = try SluiceProcess(["run", "--config", sinkConfig], logPath: sinkLog)
        daemons.append(consumer)
        var state: String?
        try eventually(timeout: 60, "sink local retrying during the outage (state \(state ?? "none"))" + logTail) {
            let result = try sluice(["status", "--config", sinkConfig, "--json"], timeout: 30)
            state = StatusView((try? JSONSerialization.jsonObject(with: Data(result.out.utf8)) as? [String: Any]) ?? [:]).state(sink: "local")
            return state == "retrying"
        }
        XCTAssertTrue(consumer.isRunning, "the sink-only process waits for the servers" + logTail)

        try nats.start()
        let lsn = try commitMarked("INSERT INTO journal (writer, payload) VALUES (-3, 'after the outage')")
        try eventually(timeout: 150, "the SQLite target at the source's position" + logTail) { try (sqliteTargetLSN() ?? 0) >= lsn }
        let columns = try sourceColumns("public.items")
        XCTAssertEqual(try sqliteRows("public.items", columns: columns), try expectedSQLiteRows("public.items", columns: columns), logTail)
        XCTAssertEqual(consumer.terminate(), 0, logTail)
        XCTAssertEqual(producer.terminate(), 0, logTail)
    }

    /// More replicas than the servers can place: check says so (exit 2) and run stops naming
    /// topics.replicas (exit 2, it was exit 1 with NATS's raw error), before a slot is made.
    func testReplicasTheServersCannotPlaceAreRefusedNamingTheKey() throws {
        let nats = try startNATS()
        try createSchema()
        try writeConfig(tables: Self.tables, topExtra: topicsSection([nats.url], replicas: 3))
        let check = try sluice(["check", "--config", configPath], timeout: 60)
        XCTAssertEqual(check.status, 2, check.describe)
        XCTAssertTrue(check.out.contains("replicas is 3, but only 1 NATS server(s) are known"), check.describe)
        let run = try sluice(["run", "--config", configPath], timeout: 60)
        XCTAssertEqual(run.status, 2, run.describe)
        XCTAssertTrue(run.all.contains("topics.replicas is 3") && run.all.contains("set topics.replicas to at most"), run.describe)
        XCTAssertNil(try nats.stream(streamName), "no stream")
        XCTAssertEqual(try source.scalar("SELECT count(*) FROM pg_replication_slots"), "0", "no slot: \(run.describe)")
    }

    // MARK: 4. A three-node cluster

    /// `replicas: 3` on three routed servers: a follower SIGKILLed mid-stream and restarted (it
    /// catches up), then the stream's leader SIGKILLed (a new one is elected) and restarted, twice.
    /// Large transactions commit while each node is down. The daemon never exits, and both targets
    /// end exact.
    func testThreeNodeClusterLosesAFollowerAndThenTheStreamLeader() throws {
        let cluster = try startNATSCluster()
        try createSchema()
        try writeConfig(tables: Self.tables, topExtra: topicsSection(cluster.urls, replicas: 3))
        let daemon = try startDaemon()
        try waitForSlotActive()
        try eventually(timeout: 60, "stream \(streamName) to have a leader every node agrees on" + logTail) {
            cluster.streamLeader(streamName) != nil
        }
        let first = try XCTUnwrap(try cluster.nodes[0].stream(streamName))
        XCTAssertEqual(first.replicas.count + 1, 3, "the stream has three replicas: \(first.text)")

        let workload = JetStreamWorkload(url: source.url, smallWriters: 2, bulkRows: 15_000)
        defer { workload.finish() }
        try waitForTargetsToCatchUp("streaming on the cluster")

        /// Kills `node` (while transactions flow), waits for the stream to go on without it — a large
        /// transaction committed and applied — then restarts it and waits until its copy caught up.
        func killAndRestart(_ node: NATSNode, _ role: String) throws {
            let bulkBefore = workload.stats["bulk committed"]
            node.kill()
            print("cluster: killed \(role) \(node.name)")
            if role == "leader" {
                var newLeader: String?
                try eventually(timeout: 60, "a new stream leader after \(node.name) died" + logTail) {
                    newLeader = cluster.streamLeader(streamName)
                    return newLeader != nil && newLeader != node.name
                }
                print("cluster: new stream leader \(newLeader ?? "?")")
            }
            try eventually(timeout: 30, "a large transaction to commit while \(node.name) is down: \(workload.stats.summary)") {
                workload.stats["bulk committed"] > bulkBefore
            }
            try waitForTargetsToCatchUp("\(role) \(node.name) down", timeout: 90)
            XCTAssertTrue(daemon.isRunning, "the daemon survives the death of the stream's \(role)" + logTail)
            try node.start()
            try cluster.waitForMetaLeader()
            var leader: NATSNode?
            try eventually(timeout: 60, "the nodes to agree on the stream's leader after \(node.name) restarted" + logTail) {
                leader = cluster.streamLeader(streamName).flatMap(cluster.node(named:))
                return leader != nil
            }
            let last = try XCTUnwrap(try leader?.stream(streamName)).lastSequence
            try eventually(timeout: 60, "restarted \(node.name) to catch up to sequence \(last) of leader \(leader?.name ?? "?")" + logTail) {
                try node.stream(streamName)?.lastSequence ?? 0 >= last
            }
        }

        // (a) A follower dies; the other two are a quorum and the stream goes on.
        let leaderName = try XCTUnwrap(cluster.streamLeader(streamName))
        try killAndRestart(try XCTUnwrap(cluster.nodes.first { $0.name != leaderName }), "follower")
        try waitForTargetsToCatchUp("follower back")

        // (b) The stream's leader dies; the other two elect a new one. Twice: a failover takes a few
        // seconds, during which the source's publishes find no responder.
        for round in 1...2 {
            var leader: NATSNode?
            try eventually(timeout: 60, "the nodes to agree on the stream's leader" + logTail) {
                leader = cluster.streamLeader(streamName).flatMap(cluster.node(named:))
                return leader != nil
            }
            try killAndRestart(try XCTUnwrap(leader), "leader")
            try waitForTargetsToCatchUp("leader back \(round)", timeout: 90)
        }

        workload.finish()
        print("cluster: workload \(workload.stats.summary)")
        XCTAssertEqual(workload.stats["failed"], 0, "\(workload.stats.notes)")
        let final = try commitFinal("final")
        try waitForTargets(lsn: final.lsn, timeout: 120)
        try assertEveryTableExact()
        XCTAssertTrue(daemon.isRunning, "the daemon never exited" + logTail)
        XCTAssertEqual(daemon.terminate(), 0, "clean exit on SIGTERM" + logTail)
    }

    // MARK: 5. Split deployment

    /// One process holds the source, two others one sink each (PostgreSQL, SQLite), each with its own
    /// data_dir: a sink-only process whose topic has no stream exits 2 naming it; then all three run,
    /// each is SIGKILLed and restarted at random moments three times or more, and both targets end exact.
    func testSplitDeploymentSurvivesKillsOfEachProcess() throws {
        let nats = try startNATS()
        try createSchema()
        let topics = topicsSection([nats.url], replicas: 1)
        func write(_ name: String, _ lines: [String]) throws -> String {
            let path = directory + "/\(name).yml"
            try ((["data_dir: \(directory!)/data-\(name)"] + topics + lines).joined(separator: "\n") + "\n")
                .write(toFile: path, atomically: true, encoding: .utf8)
            return path
        }
        let sourceConfig = try write("source", [
            "sources:",
            "  - name: app",
            "    type: postgres",
            "    url: \(source.url)",
            "    tables: [\(Self.tables.joined(separator: ", "))]",
        ])
        let postgresConfig = try write("sink-postgres", [
            "sinks:",
            "  - name: replica",
            "    type: postgres",
            "    url: \(target.url)",
            "    topics: [app]",
        ])
        let sqliteConfig = try write("sink-sqlite", [
            "sinks:",
            "  - name: local",
            "    type: sqlite",
            "    path: \(sqlitePath)",
            "    topics: [app]",
        ])
        let ghostConfig = try write("sink-ghost", [
            "sinks:",
            "  - name: ghost",
            "    type: sqlite",
            "    path: \(directory!)/ghost.db",
            "    topics: [nosuchfeed]",
        ])

        // A sink-only process needs its topic's stream: none exists, so it exits 2 naming the topic.
        let ghost = try sluice(["run", "--config", ghostConfig], timeout: 60)
        XCTAssertEqual(ghost.status, 2, "a sink-only process whose topic has no stream: \(ghost.describe)")
        XCTAssertTrue(ghost.all.contains("nosuchfeed"), "the message names the topic: \(ghost.describe)")
        // So does the PostgreSQL sink's process before the source's process ever ran.
        let early = try sluice(["run", "--config", postgresConfig], timeout: 60)
        XCTAssertEqual(early.status, 2, "the sink process started before any source created the stream: \(early.describe)")
        XCTAssertTrue(early.all.contains("topic app"), "the message names the topic: \(early.describe)")
        XCTAssertNil(try nats.stream(Self.streamPrefix + "_nosuchfeed"), "a sink-only process creates no stream")
        XCTAssertNil(try nats.stream(streamName), "a sink-only process creates no stream")

        // The three processes, each with its own log.
        let logs = [logPath, directory + "/sink-postgres.log", directory + "/sink-sqlite.log"]
        extraLogs = Array(logs.dropFirst())
        let configs = [sourceConfig, postgresConfig, sqliteConfig]
        let names = ["source", "postgres sink", "sqlite sink"]
        func launch(_ index: Int) throws -> SluiceProcess {
            let process = try SluiceProcess(["run", "--config", configs[index]], logPath: logs[index])
            daemons.append(process)
            return process
        }
        var processes = [try launch(0)]
        try waitForSlotActive()
        try eventually(timeout: 30, "the source process to create stream \(streamName)" + logTail) { try nats.stream(streamName) != nil }
        processes += [try launch(1), try launch(2)]

        let workload = JetStreamWorkload(url: source.url, smallWriters: 2, bulkRows: 15_000)
        defer { workload.finish() }
        try waitForTargetsToCatchUp("split deployment streaming")

        // Each process killed three times, and three more kills of any, in random order.
        let schedule = ([0, 1, 2, 0, 1, 2, 0, 1, 2] + (0..<3).map { _ in Int.random(in: 0...2) }).shuffled()
        var kills = [0, 0, 0]
        var positions = targetPositions()
        var advanced = 0
        for index in schedule {
            usleep(UInt32.random(in: 200_000...1_200_000))
            processes[index].kill()
            kills[index] += 1
            XCTAssertEqual(processes[index].status, 128 + SIGKILL, "the \(names[index]) process ran until it was killed" + logTail)
            usleep(UInt32.random(in: 0...300_000))
            processes[index] = try launch(index)
            let now = targetPositions()
            if now != positions { advanced += 1 }
            positions = now
        }
        workload.finish()
        print("split deployment: kills \(zip(names, kills).map { "\($0): \($1)" }.joined(separator: ", ")); "
              + "targets advanced between \(advanced) of \(schedule.count) kills; workload \(workload.stats.summary)")
        XCTAssertTrue(kills.allSatisfy { $0 >= 3 }, "\(kills)")
        XCTAssertGreaterThanOrEqual(advanced, 3, "the targets advanced between kills" + logTail)
        XCTAssertEqual(workload.stats["failed"], 0, "\(workload.stats.notes)")

        try waitForSlotActive()
        let final = try commitFinal("final")
        try waitForTargets(lsn: final.lsn, timeout: 150)
        try assertEveryTableExact()
        for (index, process) in processes.enumerated() {
            XCTAssertTrue(process.isRunning, "the \(names[index]) process runs" + logTail)
        }
        for (index, process) in processes.enumerated() {
            XCTAssertEqual(process.terminate(), 0, "the \(names[index]) process exits 0 on SIGTERM" + logTail)
        }
    }
}

/// Writers on the source while a test kills things: small mixed transactions (inserts, updates,
/// deletes, key changes on `items`; identical rows on the keyless `tags`; inserts into `journal`),
/// some rolled back, and optionally a writer of large transactions on `bulk` (each inserts
/// `bulkRows` rows, updates a fifth of the previous batch and deletes half of the one before).
final class JetStreamWorkload: @unchecked Sendable {
    static let preloaded = 2_000
    let stop = SinkTestFlag()
    let stats = SinkTestStats()
    private var workers: [SinkTestWorker] = []

    /// `smallPause`: microseconds between a small writer's transactions.
    init(url: String, smallWriters: Int, bulkRows: Int?, smallPause: ClosedRange<UInt32> = 0...3_000) {
        let stop = stop, stats = stats
        for number in 0..<smallWriters {
            workers.append(SinkTestWorker("jetstream-writer-\(number)", stop: stop) {
                Self.small(url: url, writer: number, of: smallWriters, pause: smallPause, stop: stop, stats: stats)
            })
        }
        if let bulkRows {
            workers.append(SinkTestWorker("jetstream-bulk", stop: stop) {
                Self.bulk(url: url, rows: bulkRows, stop: stop, stats: stats)
            })
        }
    }

    /// Stops every writer and waits for them (again: a no-op).
    func finish() {
        stop.set()
        workers.forEach { $0.join() }
    }

    /// Each of the `writers` touches only its own rows (ids and tag keys ≡ `writer` modulo `writers`):
    /// two transactions locking shared rows in opposite orders deadlock in PostgreSQL, which aborts one.
    static func small(url: String, writer: Int, of writers: Int, pause: ClosedRange<UInt32>, stop: SinkTestFlag, stats: SinkTestStats) {
        guard let db = try? PGConnection(url: url) else {
            stats.note("writer \(writer) cannot connect")
            stats.count("failed")
            return
        }
        var nextID = 1_000_000 * (writer + 1)
        var sequence = 0
        while !stop.isSet {
            sequence += 1
            runWorkloadTransaction(on: db, sequence: sequence, stats: stats, label: "writer \(writer): ") {
                for _ in 0..<Int.random(in: 1...4) {
                    let id = String(Int.random(in: 0..<preloaded / writers) * writers + writer + 1)
                    let key = { String(Int.random(in: 0..<60 / writers) * writers + writer) }
                    switch Int.random(in: 0..<12) {
                    case 0, 1:
                        nextID += 1
                        try db.execute("INSERT INTO items VALUES ($1, $2, $3)", [String(nextID), String(sequence), "new \(writer)/\(sequence)"])
                    case 2, 3:
                        try db.execute("UPDATE items SET val = val + 1, note = $2 WHERE id = $1", [id, "upd \(writer)/\(sequence)"])
                    case 4:
                        try db.execute("DELETE FROM items WHERE id = $1", [id])
                    case 5:
                        nextID += 1
                        try db.execute("UPDATE items SET id = $2, note = 'moved' WHERE id = $1", [id, String(nextID)])
                    case 6:
                        let k = key()
                        try db.execute("INSERT INTO tags SELECT $1::int, 'dup' FROM generate_series(1, $2::int)", [k, String(Int.random(in: 2...3))])
                    case 7:
                        try db.execute("DELETE FROM tags WHERE ctid = (SELECT ctid FROM tags WHERE k = $1 AND v = 'dup' LIMIT 1)",
                                       [key()])
                    case 8:
                        try db.execute("UPDATE tags SET v = 'changed' WHERE ctid = (SELECT ctid FROM tags WHERE k = $1 AND v = 'dup' LIMIT 1)",
                                       [key()])
                    case 9:
                        try db.execute("UPDATE tags SET v = NULL WHERE ctid = (SELECT ctid FROM tags WHERE k = $1 AND v = 'changed' LIMIT 1)",
                                       [key()])
                    default:
                        try db.execute("INSERT INTO journal (writer, payload) VALUES ($1, $2)",
                                       [String(writer), "entry \(sequence) " + String(repeating: "x", count: sequence % 200)])
                    }
                }
            }
            usleep(UInt32.random(in: pause))
        }
    }

    static func bulk(url: String, rows: Int, stop: SinkTestFlag, stats: SinkTestStats) {
        guard let db = try? PGConnection(url: url) else {
            stats.note("bulk writer cannot connect")
            stats.count("failed")
            return
        }
        var batch = 0
        while !stop.isSet {
            batch += 1
            do {
                try db.execute("BEGIN")
                try db.execute("""
                    INSERT INTO bulk SELECT $1::bigint * 1000000 + i, $1::int, 'bulk ' || $1 || '/' || i || repeat('z', 30)
                    FROM generate_series(1, $2::int) i
                    """, [String(batch), String(rows)])
                try db.execute("UPDATE bulk SET payload = 'updated in ' || $1 WHERE batch = $1::int - 1 AND id % 5 = 0", [String(batch)])
                try db.execute("DELETE FROM bulk WHERE batch = $1::int - 2 AND id % 2 = 0", [String(batch)])
                if batch % 5 == 0 {
                    try db.execute("ROLLBACK")
                    stats.count("bulk rolled back")
                } else {
                    try db.execute("COMMIT")
                    stats.count("bulk committed")
                }
            } catch {
                _ = try? db.execute("ROLLBACK")
                stats.count("failed")
                stats.note("bulk writer: \(error)")
            }
            // A pause, in slices so that a stop is seen at once.
            let until = Date().addingTimeInterval(Double.random(in: 2.0...3.5))
            while !stop.isSet && Date() < until { usleep(20_000) }
        }
    }
}

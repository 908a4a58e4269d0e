import Foundation
import SluiceNATS
import XCTest

/// The topic's stream deleted under a running daemon: the source cannot make the next transaction
/// durable. It must say so while idle (not only at its next transaction), stay `retrying` instead of
/// flapping to `recovered` at each reconnect to PostgreSQL, name the likely cause, and at the next
/// start refuse to take the empty stream for an interrupted initial snapshot.
final class JetStreamStreamLossTests: SinkTestCase {
    override var fixtureName: String { "jsloss" }
    var nats: NATSNode?

    override func setUpWithError() throws {
        try skipUnlessNATSServerIsInstalled()
        try super.setUpWithError()
    }

    override func tearDown() {
        // The daemons first (DaemonTestCase), so none reconnects to a server about to go.
        super.tearDown()
        nats?.kill()
    }

    func testADeletedStreamIsReportedAndNotTakenForAFreshStart() throws {
        let node = try NATSNode(name: "n1", directory: directory)
        nats = node
        try node.start()
        let port = try freePort()
        try source.query("CREATE TABLE accounts (id int PRIMARY KEY, balance int); INSERT INTO accounts VALUES (1, 10)")
        try writeSourceConfig(tables: ["public.accounts"], topExtra: [
            "metrics: {listen: \"127.0.0.1:\(port)\"}",
            "topics: {backend: jetstream, servers: [\(node.url)], replicas: 1}",
        ], sinks: ["  - {name: local, type: sqlite, path: \(sqlitePath)}"])
        // Before the first run the stream does not exist yet: a note, not a damage.
        try assertMissingStreamNote(topic: "app", saying: "not created yet (source app creates it when it first runs)")
        let daemon = try startDaemon()
        try waitForSlotActive()
        try eventually(timeout: 60, "the snapshot to reach the SQLite target" + logTail) { (try? sqliteCount("public.accounts")) == 1 }

        var options = NATSOptions(servers: [node.url])
        options.name = "jsloss-test"
        XCTAssertTrue(try NATSConnection(options: options).jetStream().deleteStream("SLUICE_app"))
        try source.query("INSERT INTO accounts VALUES (2, 20)")

        // Reported while idle, with the likely cause; then retried without claiming to have recovered.
        try eventually(timeout: 30, "the source to report the missing stream" + logTail) {
            let app = try sluiceStatus(configPath).source("app")
            return app?["state"] as? String == "retrying" && (app?["error"] as? String ?? "").contains("was stream SLUICE_app deleted?")
        }
        try eventually(timeout: 60, "the source to retry three times" + logTail) {
            let metrics = opsParseMetrics(try opsHTTPGet(port: port, path: "/metrics").body)
            return opsMetric(metrics, "sluice_source_retries_total", ["source": "app"]) ?? 0 >= 3
        }
        XCTAssertFalse(logTail.contains("source app recovered"), "a source whose commits cannot become durable is not running" + logTail)
        try assertMissingStreamNote(topic: "app", saying: "or deleted (see source app's state")
        XCTAssertEqual(try sluiceStatus(configPath).source("app")?["state"] as? String, "retrying")
        XCTAssertEqual(daemon.terminate(), 0, logTail)

        // The empty stream is not an interrupted snapshot: the slot is kept and nothing is copied again.
        let result = try sluice(["run", "--config", configPath], timeout: 60)
        XCTAssertNotEqual(result.status, 0, result.describe)
        XCTAssertTrue(result.err.contains("topic 'app' is empty: the transactions it held were lost"), result.describe)
        XCTAssertTrue(result.err.contains("after its initial snapshot was durable"), result.describe)
        XCTAssertEqual(try source.scalar("SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'sluice_app'"), "1")

        // A sink reading a topic no source of the file writes, whose stream does not exist: check says so, as run does.
        try writeSourceConfig(tables: ["public.accounts"], topExtra: ["topics: {backend: jetstream, servers: [\(node.url)], replicas: 1}"],
                              sinks: ["  - {name: local, type: sqlite, path: \(sqlitePath), topics: [ghost]}"])
        let check = try sluice(["check", "--config", configPath])
        XCTAssertEqual(check.status, 2, check.describe)
        XCTAssertTrue(check.out.contains("topic ghost does not exist in JetStream"), check.describe)
        let tail = try sluice(["tail", "ghost", "--config", configPath])
        XCTAssertEqual(tail.status, 0, tail.describe)
        XCTAssertTrue(tail.err.contains("topic ghost does not exist in JetStream"), "not an empty output without a word: \(tail.describe)")
        try assertMissingStreamNote(topic: "ghost", saying: "the deployment whose source writes topic ghost has not started yet")

        // No server answers: neither tail nor status takes that for an empty or missing topic.
        let closed = try freePort()
        try writeSourceConfig(tables: ["public.accounts"], topExtra: ["topics: {backend: jetstream, servers: [nats://127.0.0.1:\(closed)], replicas: 1}"],
                              sinks: [])
        let unreachable = try sluice(["tail", "app", "--config", configPath])
        XCTAssertEqual(unreachable.status, 1, unreachable.describe)
        XCTAssertTrue(unreachable.err.contains("topic app: cannot read JetStream at nats://127.0.0.1:\(closed)"), unreachable.describe)
        let topic = try XCTUnwrap(try sluiceStatus(configPath).topic("app"))
        XCTAssertTrue(topic["exists"] is NSNull, "unknown, not missing: \(topic)")
        XCTAssertTrue((topic["note"] as? String ?? "").contains("cannot read stream SLUICE_app in JetStream at"), "\(topic)")
    }

    /// `status` (table and JSON) says the topic's stream does not exist, and what that means, without calling it damaged.
    func assertMissingStreamNote(topic: String, saying meaning: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let json = try XCTUnwrap(try sluiceStatus(configPath).topic(topic), "topic \(topic) in status --json", file: file, line: line)
        XCTAssertEqual(json["exists"] as? Bool, false, "\(json)", file: file, line: line)
        let note = json["note"] as? String ?? ""
        XCTAssertTrue(note.contains("stream SLUICE_\(topic) in JetStream at") && note.contains("does not exist"), note, file: file, line: line)
        XCTAssertTrue(note.contains(meaning), note, file: file, line: line)
        XCTAssertTrue(json["damage"] is NSNull, "a missing stream is not a damage: \(json)", file: file, line: line)
        let table = try sluice(["status", "--config", configPath])
        XCTAssertEqual(table.status, 0, table.describe, file: file, line: line)
        XCTAssertTrue(table.out.contains(note), "the note is in the table too: \(table.out)", file: file, line: line)
        XCTAssertFalse(table.out.contains("DAMAGED"), table.out, file: file, line: line)
    }
}

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
    }
}

import Foundation
import SluiceWire
import XCTest

/// `sluice status`: per source the slot, per topic the end offset and event count, per sink the
/// committed offset, state and lag — with the daemon running, while a target is down, and without
/// a daemon.
final class StatusCommandTests: SinkTestCase {
    override var fixtureName: String { "status" }

    func testStatusFollowsSinksThroughATargetOutageAndWithoutDaemon() throws {
        try source.query("""
            CREATE TABLE items (id int PRIMARY KEY, qty int NOT NULL, note text);
            INSERT INTO items SELECT i, i, 'initial' FROM generate_series(1, 100) i;
            """)
        try writeConfig(tables: ["public.items"])
        let daemon = try startDaemon()
        try waitForSlotActive()

        // The workload, counted in change events: 100 snapshot reads, then 30 inserts, 20 updates, 10 deletes.
        var events = 100
        let db = try source.connect()
        for batch in 0..<10 {
            try db.execute("BEGIN")
            for i in 0..<3 { try db.execute("INSERT INTO items VALUES (\(1000 + batch * 3 + i), \(i), 'new')") }
            try db.execute("UPDATE items SET qty = qty + 1 WHERE id IN (\(batch * 2 + 1), \(batch * 2 + 2))")
            try db.execute("DELETE FROM items WHERE id = \(50 + batch)")
            try db.execute("COMMIT")
            events += 6
        }
        XCTAssertEqual(events, 160)

        var status = StatusView([:])
        try eventually(timeout: 60, "both sinks to catch up with \(events) events: \(status.text)" + logTail) {
            status = try sluiceStatus(configPath)
            return status.events("app") == events && status.caughtUp("replica", "app") && status.caughtUp("local", "app")
                && status.state(sink: "replica") == "running" && status.state(sink: "local") == "running"
        }
        XCTAssertEqual(status.daemonRunning, true, status.text)
        XCTAssertEqual(status.daemon["pid"] as? Int, Int(daemon.pid), status.text)
        let app = try XCTUnwrap(status.source("app"), status.text)
        XCTAssertEqual(app["state"] as? String, "running", status.text)
        XCTAssertEqual(app["type"] as? String, "postgres", status.text)
        XCTAssertEqual(app["slot"] as? String, "sluice_app", status.text)
        XCTAssertEqual(app["slot_exists"] as? Bool, true, status.text)
        XCTAssertEqual(app["slot_active"] as? Bool, true, status.text)
        XCTAssertTrue(app["error"] is NSNull, status.text)
        let confirmed = try XCTUnwrap(app["confirmed_flush_lsn"] as? String, status.text)
        let current = try XCTUnwrap(app["current_wal_lsn"] as? String, status.text)
        XCTAssertLessThanOrEqual(lsnValue(confirmed), lsnValue(current), status.text)
        XCTAssertNotNil(app["retained_wal_bytes"] as? Int, status.text)
        let topic = try XCTUnwrap(status.topic("app"), status.text)
        XCTAssertGreaterThan(topic["size_bytes"] as? Int ?? 0, 0, status.text)
        XCTAssertNotNil(topic["last_commit_lsn"] as? String, status.text)
        XCTAssertNotNil(topic["last_commit_time"] as? String, status.text)
        // The committed offsets are the ones the targets store.
        let end = try XCTUnwrap(status.endOffset("app"))
        XCTAssertEqual(try target.scalar("SELECT \"offset\" FROM sluice_offsets WHERE sink = 'replica' AND topic = 'app'"), "\(end)")
        for sink in ["replica", "local"] {
            XCTAssertTrue(status.sink(sink)?["error"] is NSNull, status.text)
            XCTAssertEqual(status.sink(sink)?["lag_seconds"] as? Double, 0, status.text)
            XCTAssertEqual(status.sinkTopic(sink, "app")?["lsn"] as? String, topic["last_commit_lsn"] as? String, status.text)
        }
        XCTAssertEqual(try target.count("items"), try source.count("items"))

        // The human form: a table naming every connector.
        let human = try sluice(["status", "--config", configPath])
        XCTAssertEqual(human.status, 0, human.describe)
        XCTAssertTrue(human.out.contains("running (pid \(daemon.pid))"), human.describe)
        for expected in ["SOURCE", "TOPIC", "SINK", "sluice_app", "replica", "local", "\(end)"] {
            XCTAssertTrue(human.out.contains(expected), "human status mentions \"\(expected)\": \(human.describe)")
        }
        XCTAssertTrue(human.out.split(separator: "\n").contains { $0.hasPrefix("replica") && $0.contains("running") }, human.describe)
        XCTAssertTrue(human.out.split(separator: "\n").contains { $0.hasPrefix("local") && $0.contains("running") }, human.describe)

        // The PostgreSQL target goes down; new changes wait for it, the SQLite sink takes them.
        target.stop()
        var outageEvents = 0
        for batch in 0..<3 {
            try db.execute("BEGIN")
            try db.execute("INSERT INTO items VALUES (\(2000 + batch), 1, 'during outage'), (\(2100 + batch), 2, 'during outage')")
            try db.execute("UPDATE items SET note = 'touched in outage' WHERE id = \(10 + batch)")
            try db.execute("COMMIT")
            outageEvents += 3
        }
        try eventually(timeout: 30, "sink replica to be retrying with \(outageEvents) events of lag: \(status.text)" + logTail) {
            status = try sluiceStatus(configPath)
            return status.events("app") == events + outageEvents && status.state(sink: "replica") == "retrying"
                && status.sink("replica")?["lag_events"] as? Int == outageEvents && status.caughtUp("local", "app")
        }
        let replica = try XCTUnwrap(status.sink("replica"), status.text)
        XCTAssertFalse((replica["error"] as? String ?? "").isEmpty, "a retrying sink shows its error: \(status.text)")
        XCTAssertEqual(replica["lag_events"] as? Int, outageEvents, status.text)
        XCTAssertEqual(status.sinkTopic("replica", "app")?["lag_events"] as? Int, outageEvents, status.text)
        XCTAssertGreaterThan(replica["lag_seconds"] as? Double ?? 0, 0, status.text)
        XCTAssertEqual(status.committedOffset("replica", "app"), end, "the committed offset stays where it was: \(status.text)")
        XCTAssertLessThan(end, status.endOffset("app") ?? 0, status.text)
        XCTAssertEqual(status.state(sink: "local"), "running", status.text)
        XCTAssertEqual(status.source("app")?["state"] as? String, "running", status.text)
        XCTAssertEqual(status.sink("local")?["lag_events"] as? Int, 0, status.text)
        let humanOutage = try sluice(["status", "--config", configPath])
        XCTAssertEqual(humanOutage.status, 0, humanOutage.describe)
        XCTAssertTrue(humanOutage.out.split(separator: "\n").contains { $0.hasPrefix("replica") && $0.contains("retrying") },
                      humanOutage.describe)

        // The target comes back: caught up again.
        try target.start()
        try eventually(timeout: 60, "sink replica to catch up after the outage: \(status.text)" + logTail) {
            status = try sluiceStatus(configPath)
            return status.state(sink: "replica") == "running" && status.caughtUp("replica", "app") && status.caughtUp("local", "app")
        }
        XCTAssertTrue(status.sink("replica")?["error"] is NSNull, status.text)
        XCTAssertEqual(status.sink("replica")?["lag_seconds"] as? Double, 0, status.text)
        let finalEnd = try XCTUnwrap(status.endOffset("app"))
        XCTAssertEqual(status.events("app"), events + outageEvents)
        XCTAssertEqual(try target.count("items"), try source.count("items"))
        try assertTargetsEqualSource("public.items")

        // Stopped daemon: status reads the stores alone.
        XCTAssertEqual(daemon.terminate(), 0, "clean exit on SIGTERM" + logTail)
        status = try sluiceStatus(configPath)
        XCTAssertEqual(status.daemonRunning, false, status.text)
        XCTAssertTrue(status.daemon["pid"] is NSNull, status.text)
        XCTAssertEqual(status.source("app")?["state"] as? String, "stopped", status.text)
        XCTAssertEqual(status.source("app")?["slot_exists"] as? Bool, true, status.text)
        XCTAssertEqual(status.source("app")?["slot_active"] as? Bool, false, status.text)
        for sink in ["replica", "local"] {
            XCTAssertEqual(status.state(sink: sink), "stopped", status.text)
            XCTAssertEqual(status.committedOffset(sink, "app"), finalEnd, status.text)
            XCTAssertTrue(status.caughtUp(sink, "app"), status.text)
        }
        XCTAssertEqual(status.endOffset("app"), finalEnd, status.text)
        XCTAssertEqual(status.events("app"), events + outageEvents, status.text)
        let humanStopped = try sluice(["status", "--config", configPath])
        XCTAssertEqual(humanStopped.status, 0, humanStopped.describe)
        XCTAssertTrue(humanStopped.out.contains("not running"), humanStopped.describe)
        for sink in ["replica", "local"] {
            XCTAssertTrue(humanStopped.out.split(separator: "\n").contains { $0.hasPrefix(sink) && $0.contains("stopped") && $0.contains("\(finalEnd)") },
                          humanStopped.describe)
        }

        // Without a daemon, a change committed since is lag for both sinks.
        try source.query("INSERT INTO items VALUES (3000, 3, 'after stop')")
        status = try sluiceStatus(configPath)
        XCTAssertEqual(status.events("app"), events + outageEvents, "the topic does not move without a daemon: \(status.text)")
    }

    /// The WAL forecast: the daemon records the slot's retained WAL; once it is stopped and the source
    /// writes on, `status` shows the growth and when max_slot_wal_keep_size would be reached, and
    /// `check` warns because that is within a day.
    func testStatusForecastsWhenTheSlotWouldReachMaxSlotWALKeepSize() throws {
        try source.query("ALTER SYSTEM SET max_slot_wal_keep_size = '256MB'")
        try source.query("SELECT pg_reload_conf()")
        try source.query("CREATE TABLE filler (id int PRIMARY KEY, pad text)")
        try writeSourceConfig(tables: ["public.filler"], sourceExtra: ["snapshot: never"])
        let daemon = try startDaemon()
        try waitForSlotActive()
        let samples = dataDirectory + "/sources/app/wal-samples.json"
        try eventually(timeout: 30, "the daemon to record the slot's retained WAL" + logTail) { FileManager.default.fileExists(atPath: samples) }
        XCTAssertEqual(daemon.terminate(), 0, "clean exit on SIGTERM" + logTail)

        // The slot is left behind while the source writes about 8 MB of WAL a round.
        var status = StatusView([:])
        var round = 0
        try eventually(timeout: 90, "status to forecast the limit: \(status.text)") {
            round += 1
            try source.query("INSERT INTO filler SELECT g, repeat(md5(g::text), 30) FROM generate_series(\(round * 10_000), \(round * 10_000 + 7_999)) g")
            status = try sluiceStatus(configPath)
            return status.source("app")?["wal_limit_in_seconds"] != nil
        }
        let app = try XCTUnwrap(status.source("app"), status.text)
        XCTAssertEqual(app["wal_limit"] as? String, "max_slot_wal_keep_size", status.text)
        XCTAssertGreaterThan(app["wal_growth_bytes_per_second"] as? Double ?? 0, 0, "a JSON number: \(status.text)")
        XCTAssertLessThan(app["wal_limit_in_seconds"] as? Double ?? .infinity, 86_400, "a JSON number: \(status.text)")
        XCTAssertTrue((app["warning"] as? String ?? "").contains("max_slot_wal_keep_size in"), status.text)
        let human = try sluice(["status", "--config", configPath])
        XCTAssertTrue(human.out.contains("/s, max_slot_wal_keep_size in"), human.describe)
        let check = try sluice(["check", "--config", configPath])
        XCTAssertTrue(check.out.contains("within a day"), check.describe)
    }
}

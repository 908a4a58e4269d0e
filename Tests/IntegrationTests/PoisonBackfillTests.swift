import Foundation
import XCTest

/// A backfill the source role cannot read fails alone: streaming goes on, restarts do not die on it,
/// `sluice backfill` refuses up front with the GRANT, and `--cancel` drops a pending request.
final class PoisonBackfillTests: SinkTestCase {
    override var fixtureName: String { "poison" }

    func testABackfillWithoutSelectFailsAloneAndStreamingGoesOn() throws {
        try source.query("""
            CREATE TABLE orders (id int PRIMARY KEY, v text); INSERT INTO orders SELECT i, 'o' FROM generate_series(1, 50) i;
            CREATE TABLE events (id int PRIMARY KEY, v text); INSERT INTO events SELECT i, 'e' FROM generate_series(1, 50) i;
            CREATE ROLE capture LOGIN REPLICATION;
            GRANT SELECT ON orders TO capture;
            CREATE PUBLICATION sluice_app FOR TABLE orders;
            """)
        let url = source.url.replacingOccurrences(of: "postgres@", with: "capture@")
        try writeConfig(tables: nil, sourceExtra: [])
        var text = try String(contentsOfFile: configPath, encoding: .utf8)
        text = text.replacingOccurrences(of: "url: \(source.url)\n", with: "url: \(url)\n")
        try text.write(toFile: configPath, atomically: true, encoding: .utf8)
        let daemon = try startDaemon()
        try waitForSlotActive()
        let db = try source.connect()
        var end = try commitMarked("INSERT INTO orders VALUES (51, 'new')", on: db)
        try waitForTargets(lsn: end)
        try source.query("ALTER PUBLICATION sluice_app ADD TABLE events")

        // Asked up front, the command refuses and prints the fix.
        let refused = try sluice(["backfill", "--config", configPath, "--table", "public.events"])
        XCTAssertEqual(refused.status, 2, refused.describe)
        XCTAssertTrue(refused.all.contains("GRANT SELECT ON \"public\".\"events\" TO \"capture\""), refused.describe)

        // A request already left for the source (say, before a REVOKE): the backfill fails alone.
        let state = dataDirectory + "/sources/app"
        try FileManager.default.createDirectory(atPath: state, withIntermediateDirectories: true)
        try #"{"id":"poison-1","tables":["public.events"],"requestedAt":"2026-12-01T00:00:00Z"}"#
            .write(toFile: state + "/backfill-request.json", atomically: true, encoding: .utf8)
        try eventually(timeout: 30, "the backfill to fail alone" + logTail) {
            let data = FileManager.default.contents(atPath: state + "/backfill.json") ?? Data()
            return String(decoding: data, as: UTF8.self).contains("permission denied")
        }
        XCTAssertTrue(daemon.isRunning, "the daemon goes on" + logTail)
        end = try commitMarked("INSERT INTO orders VALUES (52, 'after'); INSERT INTO events VALUES (51, 'streamed');", on: db)
        try waitForTargets(lsn: end)
        try assertTargetsEqualSource("public.orders")
        XCTAssertEqual(try target.scalar("SELECT count(*) FROM events"), "1", "events still streams (only its copy failed)")

        // A restart does not die on the failed request.
        XCTAssertEqual(daemon.terminate(), 0, logTail)
        let again = try startDaemon()
        try waitForSlotActive()
        end = try commitMarked("INSERT INTO orders VALUES (53, 'restarted')", on: db)
        try waitForTargets(lsn: end)
        XCTAssertTrue(again.isRunning, logTail)

        // --cancel drops a pending request.
        try #"{"id":"poison-2","tables":["public.events"],"requestedAt":"2026-12-01T00:00:00Z"}"#
            .write(toFile: state + "/backfill-request.json.tmp", atomically: true, encoding: .utf8)
        XCTAssertEqual(again.terminate(), 0, logTail)
        try FileManager.default.moveItem(atPath: state + "/backfill-request.json.tmp", toPath: state + "/backfill-request.json")
        let cancelled = try sluice(["backfill", "--config", configPath, "--cancel"])
        XCTAssertEqual(cancelled.status, 0, cancelled.describe)
        XCTAssertTrue(cancelled.out.contains("dropped the pending backfill request"), cancelled.describe)
        XCTAssertFalse(FileManager.default.fileExists(atPath: state + "/backfill-request.json"))
    }

    /// `--cancel` of a running backfill stops it at the daemon, logged as the user's request (notice),
    /// not as an error a log shipper would alert on.
    func testCancellingARunningBackfillIsNotAnError() throws {
        try source.query("CREATE TABLE orders (id int PRIMARY KEY, v text); INSERT INTO orders SELECT i, 'o' FROM generate_series(1, 40) i")
        try writeSourceConfig(tables: ["public.orders"], sourceExtra: ["backfill_chunk_size: 10"],
                              topExtra: ["logging: {format: json}"], sinks: ["  - {name: local, type: sqlite, path: \(sqlitePath)}"])
        // Each chunk waits a second after its low watermark: the backfill is still running when cancelled.
        _ = try startDaemon(environment: ["SLUICE_FAILPOINTS": "backfill.after_low_watermark:sleep(1000)"])
        try waitForSlotActive()
        let state = dataDirectory + "/sources/app"
        try #"{"id":"cancel-1","tables":["public.orders"],"requestedAt":"2026-12-01T00:00:00Z"}"#
            .write(toFile: state + "/backfill-request.json", atomically: true, encoding: .utf8)
        try eventually(timeout: 30, "the backfill to start" + logTail) { logTail.contains("backfill copying table") }
        let cancelled = try sluice(["backfill", "--config", configPath, "--cancel"])
        XCTAssertEqual(cancelled.status, 0, cancelled.describe)
        try eventually(timeout: 30, "the daemon to stop the backfill" + logTail) { logTail.contains("backfill stopped; streaming goes on") }
        let line = logTail.split(separator: "\n").first { $0.contains("backfill stopped; streaming goes on") } ?? ""
        XCTAssertTrue(line.contains("\"level\":\"notice\""), String(line))
        XCTAssertTrue(line.contains("cancelled by sluice backfill --cancel"), String(line))
    }
}

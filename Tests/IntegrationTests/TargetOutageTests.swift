import Foundation
import SluiceWire
import XCTest

/// The PostgreSQL target goes down for a few seconds while a workload runs: the daemon keeps running,
/// the SQLite sink keeps applying, and the PostgreSQL target catches up exactly once it is back. Then
/// the source itself restarts mid-stream: the daemon retries and both targets end exact.
final class TargetOutageTests: SinkTestCase {
    override var fixtureName: String { "outage" }

    func testTargetAndSourceRestartsMidStream() throws {
        try source.query("""
            CREATE TABLE orders (id int PRIMARY KEY, qty int NOT NULL, note text);
            INSERT INTO orders SELECT i, i, 'initial' FROM generate_series(1, 1000) i;
            CREATE TABLE events (k int, label text);
            ALTER TABLE events REPLICA IDENTITY FULL;
            """)
        // Metrics only to count the connectors' retries: each outage lasts until the daemon has met it.
        let port = try freePort()
        try writeConfig(tables: ["public.orders", "public.events"], topExtra: ["metrics:", "  listen: \"127.0.0.1:\(port)\""])
        func retries(_ connector: String, _ name: String) throws -> Double {
            let response = try opsHTTPGet(port: port, path: "/metrics")
            guard response.status == 200 else { throw TestFailure("/metrics answered \(response.status): \(response.body)") }
            return opsMetric(opsParseMetrics(response.body), "sluice_\(connector)_retries_total", [connector: name]) ?? 0
        }
        func describeRetries(_ connector: String, _ name: String) -> String {
            (try? retries(connector, name)).map { "\(Int($0))" } ?? "?"
        }
        let daemon = try startDaemon()
        try waitForSlotActive()

        // A steady workload that survives the source going away: it reconnects and goes on.
        let stop = SinkTestFlag()
        let stats = SinkTestStats()
        let url = source.url
        let writer = SinkTestWorker("writer") {
            var db: PGConnection?
            var sequence = 0
            while !stop.isSet {
                do {
                    if db == nil { db = try PGConnection(url: url, connectTimeoutSeconds: 2) }
                    sequence += 1
                    let id = String(Int.random(in: 1...1000))
                    try db!.execute("BEGIN")
                    try db!.execute("INSERT INTO orders VALUES ($1, $2, 'new') ON CONFLICT (id) DO UPDATE SET qty = orders.qty + 1, note = 'bumped'",
                                    [String(1000 + sequence), String(sequence)])
                    try db!.execute("UPDATE orders SET qty = qty - 1, note = $2 WHERE id = $1", [id, "seq \(sequence)"])
                    if sequence % 5 == 0 { try db!.execute("DELETE FROM orders WHERE id = $1", [String(Int.random(in: 1...1000))]) }
                    try db!.execute("INSERT INTO events VALUES ($1, 'tick'), ($1, 'tick')", [String(sequence % 10)])
                    if sequence % 3 == 0 {
                        try db!.execute("DELETE FROM events WHERE ctid = (SELECT ctid FROM events WHERE k = $1 LIMIT 1)", [String(sequence % 10)])
                    }
                    try db!.execute("COMMIT")
                    stats.count("committed")
                } catch {
                    stats.count("failed")
                    if db?.isConnected == true { _ = try? db!.execute("ROLLBACK") } else { db = nil; usleep(100_000) }
                }
                usleep(5_000)
            }
        }
        defer {
            stop.set()
            writer.join()
        }

        try eventually(timeout: 60, "both targets to hold the snapshot" + logTail) {
            guard try target.scalar("SELECT count(*) FROM orders").flatMap({ Int($0) }) ?? 0 >= 1000 else { return false }
            let lite = try SQLiteDatabase(path: sqlitePath)
            return try lite.query("SELECT count(*) FROM orders").first?[0].flatMap { Int($0) } ?? 0 >= 1000
        }
        // Streaming into both targets: they hold everything committed so far.
        try waitForTargets(lsn: lsnValue(try XCTUnwrap(source.scalar("SELECT pg_current_wal_insert_lsn()::text"))))

        // The PostgreSQL target goes away until its sink has failed 5 times (pauses of 0.2 s doubling,
        // jittered down to half: 3 to 6 s, about the 5 s this outage lasted when it was timed), while
        // the SQLite sink goes on.
        let sinkRetriesBefore = try retries("sink", "replica")
        target.stop()
        let sqliteBefore = try XCTUnwrap(sqliteTargetLSN())
        try eventually(timeout: 60, "sink replica to fail 5 times while its target is down (retries: \(describeRetries("sink", "replica")), "
                       + "\(Int(sinkRetriesBefore)) before)" + logTail) {
            try retries("sink", "replica") >= sinkRetriesBefore + 5
        }
        try eventually(timeout: 30, "the SQLite target to keep advancing while the PostgreSQL target is down" + logTail) {
            try sqliteTargetLSN() ?? 0 > sqliteBefore
        }
        let sqliteDuring = try XCTUnwrap(sqliteTargetLSN())
        XCTAssertGreaterThan(sqliteDuring, sqliteBefore, "the SQLite sink went on during the outage")
        XCTAssertTrue(daemon.isRunning, "the daemon survives a target outage" + logTail)
        try target.start()

        // The PostgreSQL target catches up with the stream while the workload goes on.
        let afterOutage = try commitMarked("UPDATE orders SET note = 'after target outage' WHERE id = 1", on: try source.connect())
        try waitForTargets(lsn: afterOutage, timeout: 90)
        XCTAssertTrue(daemon.isRunning, logTail)

        // The source restarts, down until its connector has failed twice (once it lost the stream, once
        // reconnecting).
        let sourceRetriesBefore = try retries("source", "app")
        source.stop()
        try eventually(timeout: 60, "source app to fail twice while the source is down (retries: \(describeRetries("source", "app")), "
                       + "\(Int(sourceRetriesBefore)) before)" + logTail) {
            try retries("source", "app") >= sourceRetriesBefore + 2
        }
        try source.start()
        let committedBefore = stats["committed"]
        try eventually(timeout: 30, "the workload to resume on the restarted source") { stats["committed"] > committedBefore + 20 }
        try waitForSlotActive(timeout: 60)
        // The workload goes on while the daemon streams again.
        let committedStreaming = stats["committed"]
        try eventually(timeout: 30, "the workload to commit on the streaming source") { stats["committed"] > committedStreaming + 20 }
        stop.set()
        writer.join()
        XCTAssertTrue(daemon.isRunning, "the daemon survives a source restart" + logTail)
        print("outage workload: \(stats.summary)")

        let end = try commitMarked("UPDATE orders SET note = 'final' WHERE id = 2; INSERT INTO events VALUES (-1, 'final')", on: try source.connect())
        try waitForTargets(lsn: end, timeout: 120)
        try assertTargetsEqualSource("public.orders")
        try assertTargetsEqualSource("public.events")
        XCTAssertEqual(daemon.terminate(), 0, "clean exit on SIGTERM" + logTail)
    }
}

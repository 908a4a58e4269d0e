import Foundation
import XCTest

/// A graceful stop honours its deadline while targets are unreachable: SIGINT with a stopped
/// PostgreSQL target, an HTTP endpoint and a PostgreSQL "server" that accept connections and never
/// answer (the hung target that used to hold a stop for 100 s) exits 0 within the drain timeout plus a
/// little, says once what it waits for, and loses nothing: a restarted daemon brings the target up to date.
final class StopDeadlineTests: SinkTestCase {
    override var fixtureName: String { "stopdeadline" }

    func testStopWithDeadTargetsHonoursDeadline() throws {
        try source.query("CREATE TABLE items (id int PRIMARY KEY, note text)")
        let hung = try BlackHoleListener()
        defer { hung.close() }
        try writeSourceConfig(tables: ["public.items"], sinks: [
            "  - name: replica",
            "    type: postgres",
            "    url: \(target.url)",
            "    topics: [app]",
            "  - name: local",
            "    type: sqlite",
            "    path: \(sqlitePath)",
            "    topics: [app]",
            "  - name: hook",
            "    type: http",
            "    url: http://127.0.0.1:\(hung.port)/events",
            "    retry_for: 5m",
            "    timeout: 3s",
            "    topics: [app]",
            "  - name: stuck",
            "    type: postgres",
            "    url: postgresql://postgres@127.0.0.1:\(hung.port)/postgres",
            "    topics: [app]",
        ])
        try target.query("SELECT 1")
        target.stop()

        let daemon = try startDaemon()
        try waitForSlotActive()
        var last: UInt64 = 0
        for batch in 0..<5 {
            last = try commitMarked("INSERT INTO items SELECT i, 'batch \(batch)' FROM generate_series(\(batch * 100 + 1), \(batch * 100 + 100)) i")
        }
        // The SQLite sink applies; the other two are retrying their dead targets.
        try eventually(timeout: 60, "the SQLite target to apply every row" + logTail) {
            guard let lite = try sqliteTargetLSN() else { return false }
            return lite >= last
        }
        try eventually(timeout: 60, "the dead sinks to report retrying" + logTail) {
            let status = try sluiceStatus(configPath)
            return ["replica", "hook", "stuck"].allSatisfy { status.state(sink: $0) == "retrying" }
        }

        let stopped = Date()
        daemon.signal(SIGINT)
        let code = daemon.wait(timeout: 20)
        let took = Date().timeIntervalSince(stopped)
        XCTAssertEqual(code, 0, "SIGINT with dead targets exits 0 within 20 s (deadline 10 s); took \(took) s" + logTail)
        if code == nil { daemon.kill() }
        let log = daemon.log
        XCTAssertTrue(log.contains("second signal"), "the stop says a second signal exits at once" + logTail)
        let announcement = log.split(separator: "\n").filter { $0.contains("stopping: waiting up to") }
        XCTAssertEqual(announcement.count, 1, "the stop says once what it waits for" + logTail)
        for sink in ["replica", "hook", "stuck"] {
            XCTAssertTrue(announcement.first?.contains("sink \(sink) (retrying") == true, "the stop names sink \(sink) and why it waits" + logTail)
        }

        // Nothing lost: with the PostgreSQL target back, a restarted daemon applies every row exactly once.
        try target.start()
        let again = try startDaemon()
        try eventually(timeout: 90, "the PostgreSQL target to catch up after the restart" + logTail) {
            guard let pg = try postgresTargetLSN() else { return false }
            return pg >= last
        }
        XCTAssertEqual(try target.count("public.items"), 500)
        XCTAssertEqual(try target.scalar("SELECT count(DISTINCT id) FROM public.items"), "500")
        XCTAssertEqual(try sqliteCount("public.items"), 500)
        XCTAssertEqual(again.terminate(timeout: 20), 0, "the second daemon stops within its deadline too" + logTail)
    }
}

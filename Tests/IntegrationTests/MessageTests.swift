import Foundation
import XCTest

/// Messages that used to mislead: a metrics port in use (a 5 s wait and a "Task timed out"), a
/// backfill of a table that does not exist (advice to add it to the publication), a dead target's
/// generic advice, and connector names repeated in /health, status and check.
final class MessageTests: SinkTestCase {
    override var fixtureName: String { "messages" }

    func testPortInUseNonexistentTableAndDeadTargetSayWhatIsWrongOnce() throws {
        try source.query("CREATE TABLE orders (id int PRIMARY KEY, note text)")
        let busy = try BlackHoleListener()
        defer { busy.close() }
        try writeConfig(tables: ["public.orders"], topExtra: ["metrics:", "  listen: \"127.0.0.1:\(busy.port)\""])

        // The port is taken: check reports it, run exits 2 at once saying so.
        let check = try sluice(["check", "--config", configPath])
        XCTAssertEqual(check.status, 2, check.describe)
        XCTAssertTrue(check.out.contains("ERROR metrics: cannot listen on 127.0.0.1:\(busy.port): address already in use"), check.describe)
        let run = try sluice(["run", "--config", configPath], timeout: 30)
        XCTAssertEqual(run.status, 2, run.describe)
        XCTAssertTrue(run.all.contains("address already in use"), run.describe)
        XCTAssertFalse(run.all.contains("timed out"), run.describe)

        // A table that does not exist is called so, with the captured ones, not "add it to the publication".
        let metricsPort = try freePort()
        try writeConfig(tables: ["public.orders"], topExtra: ["metrics:", "  listen: \"127.0.0.1:\(metricsPort)\""])
        let backfill = try sluice(["backfill", "--config", configPath, "--table", "public.order"], timeout: 60)
        XCTAssertEqual(backfill.status, 2, backfill.describe)
        XCTAssertTrue(backfill.all.contains("table public.order does not exist"), backfill.describe)
        XCTAssertTrue(backfill.all.contains("did you mean 'public.orders'?"), backfill.describe)
        XCTAssertFalse(backfill.all.contains("ADD TABLE"), backfill.describe)

        // A dead PostgreSQL target: check says what is wrong once, with advice that fits.
        target.stop()
        let dead = try sluice(["check", "--config", configPath])
        XCTAssertEqual(dead.status, 2, dead.describe)
        let sinkLines = dead.out.split(separator: "\n").filter { $0.contains("sink replica") }
        XCTAssertEqual(sinkLines.count, 1, dead.describe)
        XCTAssertEqual(sinkLines.first.map { $0.components(separatedBy: "cannot connect to").count - 1 }, 1,
                       "'cannot connect to' once: \(dead.describe)")
        XCTAssertTrue(fixLine(dead.out, after: "sink replica")?.contains("nothing listens") == true, dead.describe)

        // The daemon with that target down: /health and status name the sink once per line.
        let daemon = try startDaemon()
        try eventually(timeout: 60, "the sink to report retrying" + logTail) {
            try sluiceStatus(configPath).state(sink: "replica") == "retrying"
        }
        let health = try opsHTTPGet(port: metricsPort, path: "/health")
        XCTAssertEqual(health.status, 503, health.body)
        for line in health.body.split(separator: "\n") {
            XCTAssertFalse(line.contains("sink replica: sink") || line.contains("sink 'replica'"), "doubled prefix in /health: \(health.body)")
        }
        let error = try sluiceStatus(configPath).error(sink: "replica") ?? ""
        XCTAssertFalse(error.hasPrefix("sink replica") || error.hasPrefix("sink 'replica'"), "status error repeats the sink: \(error)")
        XCTAssertFalse(error.isEmpty, "status shows the reason")
        XCTAssertEqual(daemon.terminate(timeout: 20), 0, logTail)
    }

    /// The `fix:` line after the first line mentioning `subject`.
    private func fixLine(_ output: String, after subject: String) -> String? {
        let lines = output.split(separator: "\n").map(String.init)
        guard let index = lines.firstIndex(where: { $0.contains(subject) }), index + 1 < lines.count else { return nil }
        return lines[index + 1].trimmingCharacters(in: .whitespaces).hasPrefix("fix:") ? lines[index + 1] : nil
    }
}

import Foundation
import XCTest

/// The console's histories survive a restart: a daemon killed with SIGKILL and started again shows,
/// in `/api/status`, the lag samples and state changes it saved in `data_dir/console-history.json`
/// (0600) before the kill; a truncated file is set aside with a warning and the daemon runs on with
/// empty charts.
final class ConsoleRestartTests: PluginSinkTestCase {
    override var fixtureName: String { "consolerestart" }

    var historyFile: String { dataDirectory + "/console-history.json" }

    func testHistoriesSurviveSIGKILLAndADamagedFileStartsEmpty() throws {
        let port = try freePort()
        try writeSourceConfig(tables: PluginWorkload.tables, topExtra: ["metrics:", "  listen: \"127.0.0.1:\(port)\""],
                              sinks: ["  - name: local", "    type: sqlite", "    path: \(directory!)/replica.db", "    topics: [app]"])
        func api() throws -> StatusView {
            let response = try opsHTTPGet(port: port, path: "/api/status")
            guard response.status == 200 else { throw TestFailure("/api/status answered \(response.status)") }
            return StatusView(try XCTUnwrap(JSONSerialization.jsonObject(with: Data(response.body.utf8)) as? [String: Any]))
        }
        func history(_ status: StatusView) -> [[Double]] { status.sink("local")?["history"] as? [[Double]] ?? [] }
        func sourceRunning(_ status: StatusView) -> Int {
            (status.json["changes"] as? [[String: Any]] ?? []).filter {
                $0["kind"] as? String == "source" && $0["name"] as? String == "app" && $0["to"] as? String == "running"
            }.count
        }
        func saved() -> [[Double]] {
            guard let data = FileManager.default.contents(atPath: historyFile),
                  let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else { return [] }
            return (object["sinks"] as? [String: Any])?["local"] as? [[Double]] ?? []
        }

        var daemon = try startDaemon()
        try waitForSlotActive()
        let workload = PluginWorkload(url: source.url)
        workload.run(1...20)
        XCTAssertNil(workload.error)
        try eventually(timeout: 60, "six saved samples of sink local" + logTail) { saved().count >= 6 }
        let mode = try XCTUnwrap(try FileManager.default.attributesOfItem(atPath: historyFile)[.posixPermissions] as? Int)
        XCTAssertEqual(mode & 0o777, 0o600, "the history file is the owner's only")

        let before = saved()
        let size = try XCTUnwrap(try FileManager.default.attributesOfItem(atPath: historyFile)[.size] as? Int)
        print("console history: \(size) bytes for \(before.count) samples of sink local, those of topic app and the state changes")
        daemon.kill()
        let restartedAt = Date().timeIntervalSince1970
        daemon = try startDaemon()
        var status = StatusView([:])
        try eventually(timeout: 30, "the restarted daemon's /api/status" + logTail) {
            status = try api()
            return status.state(sink: "local") == "running"
        }
        // The new daemon samples a second after it starts; /api/status rounds times to 0.1 s.
        let restored = history(status).filter { $0[0] < restartedAt + 0.5 }
        XCTAssertGreaterThanOrEqual(restored.count, before.count, "every saved sample is back after the SIGKILL: \(status.text)")
        // (/api/status gives times to 0.1 s.)
        XCTAssertTrue(zip(restored, before).allSatisfy { abs($0[0] - $1[0]) < 0.06 },
                      "the samples are those saved, in order: \(restored.prefix(3)) vs \(before.prefix(3))")
        XCTAssertEqual(restored.prefix(before.count).map { $0[1] }, before.map { $0[1] }, "with their lag")
        XCTAssertGreaterThanOrEqual(sourceRunning(status), 1, "the first run's state changes are back: \(status.json["changes"] ?? [])")
        try eventually(timeout: 30, "the chart to go on after the restart" + logTail) {
            status = try api()
            return history(status).contains { $0[0] > restartedAt + 0.5 } && sourceRunning(status) >= 2
        }
        XCTAssertEqual(daemon.terminate(), 0, logTail)

        // A truncated file (a crash of the disk, a hand edit): set aside, the daemon starts with empty charts.
        let text = try String(contentsOfFile: historyFile, encoding: .utf8)
        try String(text.prefix(text.count / 2)).write(toFile: historyFile, atomically: false, encoding: .utf8)
        let damagedAt = Date().timeIntervalSince1970
        daemon = try startDaemon()
        try eventually(timeout: 30, "the daemon to run despite the damaged history" + logTail) {
            status = try api()
            return status.state(sink: "local") == "running" && !history(status).isEmpty
        }
        XCTAssertTrue(history(status).allSatisfy { $0[0] >= damagedAt }, "the charts start empty: \(history(status).prefix(3))")
        XCTAssertTrue(logTail.contains("the console's history file is damaged"), "the log says so" + logTail)
        XCTAssertTrue(FileManager.default.fileExists(atPath: historyFile + ".damaged"), "the damaged file is kept aside")
        try eventually(timeout: 30, "a new history file" + logTail) { !saved().isEmpty }
        XCTAssertTrue(daemon.isRunning, logTail)
        XCTAssertEqual(daemon.terminate(), 0, logTail)
    }
}

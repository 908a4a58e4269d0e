import Foundation
import XCTest

/// Base for tests that run `sluice run`: a scratch directory, a source cluster and the daemons the test
/// starts, all torn down after. `SinkTestCase` adds the PostgreSQL and SQLite targets,
/// `PluginSinkTestCase` the plugin workload's tables.
class DaemonTestCase: XCTestCase {
    var source: PostgresCluster!
    var directory: String!
    var daemons: [SluiceProcess] = []

    /// A short name for clusters and directories.
    var fixtureName: String { "daemon" }
    /// False for tests whose sources are not PostgreSQL: no source cluster is started.
    var startsSourceCluster: Bool { true }

    var configPath: String { directory + "/sluice.yml" }
    var dataDirectory: String { directory + "/data" }
    var logPath: String { directory + "/daemon.log" }

    override func setUpWithError() throws {
        directory = scratchDirectory(fixtureName)
        if startsSourceCluster { source = try PostgresCluster(name: fixtureName + "-src") }
    }

    override func tearDown() {
        for daemon in daemons where daemon.isRunning { daemon.kill() }
        daemons.removeAll()
        source?.destroy()
        if let directory { try? FileManager.default.removeItem(atPath: directory) }
    }

    /// Writes the config: source `app` streaming this test's cluster (`tables: nil` leaves the key out:
    /// publication FOR ALL TABLES) with `sourceExtra` lines in it, then `sinks` (items of `sinks:`,
    /// indented already; no `sinks:` key when empty); `topExtra` lines go at the top level.
    @discardableResult
    func writeSourceConfig(tables: [String]?, sourceExtra: [String] = [], topExtra: [String] = [],
                           sinks: [String] = []) throws -> String {
        var lines = ["data_dir: \(dataDirectory)"] + topExtra + [
            "sources:",
            "  - name: app",
            "    type: postgres",
            "    url: \(source.url)",
        ]
        if let tables { lines.append("    tables: [\(tables.joined(separator: ", "))]") }
        lines += sourceExtra.map { "    " + $0 }
        if !sinks.isEmpty { lines += ["sinks:"] + sinks }
        try (lines.joined(separator: "\n") + "\n").write(toFile: configPath, atomically: true, encoding: .utf8)
        return configPath
    }

    /// Starts `sluice run` on the config (or `program run`: a build of sluice of its own), its output
    /// appended to `daemon.log`; killed at teardown if still running.
    func startDaemon(program: String = sluiceBinary, environment: [String: String] = [:]) throws -> SluiceProcess {
        let daemon = try SluiceProcess(program: program, ["run", "--config", configPath], logPath: logPath, environment: environment)
        daemons.append(daemon)
        return daemon
    }

    /// The end of the daemon's log, for failure messages.
    var logTail: String {
        let text = (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "(no daemon.log)"
        let limit = 30_000
        return "\n--- daemon.log (last \(min(limit, text.count)) of \(text.count) chars) ---\n"
            + String(text.suffix(limit)) + "\n--- end of daemon.log ---"
    }

    /// Waits until the daemon streams: its replication slot is active.
    func waitForSlotActive(timeout: TimeInterval = 60, file: StaticString = #filePath, line: UInt = #line) throws {
        try eventually(timeout: timeout, "the replication slot to be active" + logTail, file: file, line: line) {
            try source.scalar("SELECT bool_or(active)::text FROM pg_replication_slots") == "true"
        }
    }
}

import Foundation
import XCTest

/// A source cluster, a scratch directory and the `sluice run` daemons a test starts; all torn down
/// after. Subclasses create `source` and add their own targets.
class DaemonTestCase: XCTestCase {
    var source: PostgresCluster!
    var directory: String!
    var daemons: [SluiceProcess] = []

    var fixtureName: String { "daemon" }
    var configPath: String { directory + "/sluice.yml" }
    var logPath: String { directory + "/daemon.log" }

    override func tearDown() {
        for daemon in daemons where daemon.isRunning { daemon.kill() }
        daemons.removeAll()
        source?.destroy()
        if let directory { try? FileManager.default.removeItem(atPath: directory) }
    }

    func startDaemon(environment: [String: String] = [:]) throws -> SluiceProcess {
        let daemon = try SluiceProcess(["run", "--config", configPath], logPath: logPath, environment: environment)
        daemons.append(daemon)
        return daemon
    }

    var logTail: String {
        let text = (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "(no daemon.log)"
        return "\n--- daemon.log (last \(min(20_000, text.count)) of \(text.count) chars) ---\n" + String(text.suffix(20_000))
            + "\n--- end of daemon.log ---"
    }

    func waitForSlotActive(timeout: TimeInterval = 60, file: StaticString = #filePath, line: UInt = #line) throws {
        try eventually(timeout: timeout, "the replication slot to be active" + logTail, file: file, line: line) {
            try source.scalar("SELECT bool_or(active)::text FROM pg_replication_slots") == "true"
        }
    }
}

import Foundation
import XCTest

/// examples/custom-sink builds a `sluice` binary of its own with a `type: counter` sink registered in
/// one line, and that binary runs a real pipeline: snapshot and streamed changes are counted exactly
/// once, across a restart. The example package is built once per test run (it compiles Sluice again).
final class CustomSinkExampleTests: XCTestCase {
    var cluster: PostgresCluster?
    var directory: String!
    var daemons: [Child] = []

    override func setUp() {
        directory = scratchDirectory("custom-sink")
    }

    override func tearDown() {
        for daemon in daemons where daemon.isRunning {
            daemon.signal(SIGKILL)
            daemon.wait()
        }
        cluster?.destroy()
        if let directory { try? FileManager.default.removeItem(atPath: directory) }
    }

    /// `swift build` of the example into `.build-custom-sink` at the repository root; the binary's path.
    nonisolated(unsafe) static var built: Result<String, any Error>?

    static func exampleBinary() throws -> String {
        if built == nil {
            let scratch = repositoryRoot + "/.build-custom-sink"
            built = Result {
                try IntegrationTests.run(["/usr/bin/env", "swift", "build", "--package-path", repositoryRoot + "/examples/custom-sink",
                                          "--scratch-path", scratch])
                return scratch + "/debug/my-sluice"
            }
        }
        return try built!.get()
    }

    func testCounterSinkCountsEachChangeOnce() throws {
        let binary = try Self.exampleBinary()
        let cluster = try PostgresCluster(name: "custom-sink")
        self.cluster = cluster
        try cluster.query("CREATE TABLE orders (id int PRIMARY KEY, note text)")
        try cluster.query("INSERT INTO orders SELECT g, 'initial' FROM generate_series(1, 3) g")
        let counts = directory + "/counts.json"
        let config = directory + "/sluice.yml"
        try """
            data_dir: \(directory!)/data
            sources:
              - name: app
                type: postgres
                url: \(cluster.url)
                tables: [public.orders]
            sinks:
              - name: counts
                type: counter
                path: counts.json
            """.write(toFile: config, atomically: true, encoding: .utf8)

        // The initial snapshot (3 reads), then one transaction of each kind.
        var daemon = try startDaemon(binary, config)
        try waitForSlotActive(cluster)
        try cluster.query("""
            BEGIN;
            INSERT INTO orders VALUES (10, 'a'), (11, 'b');
            UPDATE orders SET note = 'changed' WHERE id = 1;
            DELETE FROM orders WHERE id = 2;
            COMMIT;
            """)
        try waitForCounts(counts, ["read": 3, "insert": 2, "update": 1, "delete": 1])
        XCTAssertEqual(terminate(daemon), 0, log)

        // A restart resumes after the stored position: nothing is counted twice.
        daemon = try startDaemon(binary, config)
        try waitForSlotActive(cluster)
        try cluster.query("INSERT INTO orders VALUES (12, 'c')")
        try waitForCounts(counts, ["read": 3, "insert": 3, "update": 1, "delete": 1])
        XCTAssertEqual(terminate(daemon), 0, log)
        let positions = try XCTUnwrap(try state(counts)["positions"] as? [String: Any])
        XCTAssertNotNil((positions["app"] as? [String: Any])?["offset"], "the position of topic app is stored with the counts")
    }

    func testCustomTypeIsValidatedLikeBuiltinOnes() throws {
        let binary = try Self.exampleBinary()
        let config = directory + "/bad.yml"
        try """
            sources:
              - {name: app, type: postgres, url: "postgresql://127.0.0.1:1/app"}
            sinks:
              - {name: counts, type: counter, path: counts.json, colour: blue}
            """.write(toFile: config, atomically: true, encoding: .utf8)
        let output = directory + "/check.log"
        let status = try Child([binary, "check", "--config", config, "--file-only"], output: output).wait()
        let text = (try? String(contentsOfFile: output, encoding: .utf8)) ?? ""
        XCTAssertEqual(status, 2, text)
        XCTAssertTrue(text.contains("sinks[0] (counts).colour") && text.contains("unknown key for a 'counter' sink"), text)
    }

    // MARK: Helpers

    private var logPath: String { directory + "/daemon.log" }
    private var log: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "(no log)" }

    private func startDaemon(_ binary: String, _ config: String) throws -> Child {
        let daemon = try Child([binary, "run", "--config", config], output: logPath)
        daemons.append(daemon)
        return daemon
    }

    private func terminate(_ daemon: Child) -> Int32 {
        daemon.signal(SIGTERM)
        let deadline = Date().addingTimeInterval(60)
        while daemon.isRunning && Date() < deadline { usleep(20_000) }
        if daemon.isRunning { daemon.signal(SIGKILL) }
        return daemon.wait()
    }

    private func waitForSlotActive(_ cluster: PostgresCluster) throws {
        try eventually(timeout: 60, "the replication slot to be active\n" + log) {
            try cluster.scalar("SELECT bool_or(active)::text FROM pg_replication_slots") == "true"
        }
    }

    private func state(_ path: String) throws -> [String: Any] {
        let data = try Data(contentsOf: URL(fileURLWithPath: path))
        return try XCTUnwrap(try JSONSerialization.jsonObject(with: data) as? [String: Any])
    }

    private func waitForCounts(_ path: String, _ expected: [String: Int]) throws {
        var last = "(no file)"
        try eventually(timeout: 60, "counts \(expected) for public.orders, last: \(last)\n" + log) {
            guard let counts = try state(path)["counts"] as? [String: [String: Int]] else { return false }
            last = "\(counts)"
            return counts == ["public.orders": expected]
        }
    }
}

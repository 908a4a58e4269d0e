import Foundation
import XCTest

/// examples/custom-sink builds a `sluice` binary of its own with a `type: counter` sink registered in
/// one line, and that binary runs a real pipeline: snapshot and streamed changes are counted exactly
/// once, across a restart. The example package is built once per test run (it compiles Sluice again).
final class CustomSinkExampleTests: DaemonTestCase {
    override var fixtureName: String { "custom-sink" }

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
        try source.query("CREATE TABLE orders (id int PRIMARY KEY, note text)")
        try source.query("INSERT INTO orders SELECT g, 'initial' FROM generate_series(1, 3) g")
        let counts = directory + "/counts.json"
        try writeSourceConfig(tables: ["public.orders"], sinks: ["  - name: counts", "    type: counter", "    path: counts.json"])

        // The initial snapshot (3 reads), then one transaction of each kind.
        var daemon = try startDaemon(program: binary)
        try waitForSlotActive()
        try source.query("""
            BEGIN;
            INSERT INTO orders VALUES (10, 'a'), (11, 'b');
            UPDATE orders SET note = 'changed' WHERE id = 1;
            DELETE FROM orders WHERE id = 2;
            COMMIT;
            """)
        try waitForCounts(counts, ["read": 3, "insert": 2, "update": 1, "delete": 1])
        XCTAssertEqual(daemon.terminate(), 0, logTail)

        // A restart resumes after the stored position: nothing is counted twice.
        daemon = try startDaemon(program: binary)
        try waitForSlotActive()
        try source.query("INSERT INTO orders VALUES (12, 'c')")
        try waitForCounts(counts, ["read": 3, "insert": 3, "update": 1, "delete": 1])
        XCTAssertEqual(daemon.terminate(), 0, logTail)
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
        let check = try execute([binary, "check", "--config", config, "--file-only"], timeout: 60)
        let text = check.all
        XCTAssertEqual(check.status, 2, check.describe)
        XCTAssertTrue(text.contains("sinks[0] (counts).colour") && text.contains("unknown key for a 'counter' sink"), text)
    }

    // MARK: Helpers

    private func state(_ path: String) throws -> [String: Any] {
        let data = try Data(contentsOf: URL(fileURLWithPath: path))
        return try XCTUnwrap(try JSONSerialization.jsonObject(with: data) as? [String: Any])
    }

    private func waitForCounts(_ path: String, _ expected: [String: Int]) throws {
        var last = "(no file)"
        try eventually(timeout: 60, "counts \(expected) for public.orders, last: \(last)" + logTail) {
            guard let counts = try state(path)["counts"] as? [String: [String: Int]] else { return false }
            last = "\(counts)"
            return counts == ["public.orders": expected]
        }
    }
}

import Foundation
import XCTest

/// `format: debezium` on the exec and http sinks: an update of the primary key is Debezium's delete
/// event then its create event, both of the one change (its LSN), each delivered once, inside the
/// transaction whose commit carries the sink's position; a restart after it sends neither again.

/// Checks the events of: the snapshot row `orders(1)`, `UPDATE orders SET id = 2 … WHERE id = 1`, then
/// inserts of `orders(3)` and `orders(4)`, each in its own transaction.
func assertDebeziumKeyChange(_ events: [[String: Any]], _ context: String, file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertEqual(events.map { $0["op"] as? String }, ["r", "d", "c", "c", "c"], "each event once: \(events)\(context)", file: file, line: line)
    guard events.count == 5 else { return }
    func row(_ event: [String: Any], _ side: String) -> [String: Any]? { event[side] as? [String: Any] }
    func source(_ event: [String: Any]) -> [String: Any] { event["source"] as? [String: Any] ?? [:] }
    XCTAssertEqual(row(events[1], "before")?["id"] as? Int, 1, "the delete names the old key", file: file, line: line)
    XCTAssertTrue(events[1]["after"] is NSNull, file: file, line: line)
    XCTAssertTrue(events[2]["before"] is NSNull, file: file, line: line)
    XCTAssertEqual(row(events[2], "after")?["id"] as? Int, 2, file: file, line: line)
    XCTAssertEqual(row(events[2], "after")?["note"] as? String, "two", file: file, line: line)
    XCTAssertNotNil(source(events[1])["lsn"] as? Int, file: file, line: line)
    XCTAssertEqual(source(events[1])["lsn"] as? Int, source(events[2])["lsn"] as? Int, "both events are the one change", file: file, line: line)
    XCTAssertNotEqual(source(events[2])["lsn"] as? Int, source(events[3])["lsn"] as? Int, file: file, line: line)
    let transactions = events.map { $0["transaction"] as? [String: Any] }
    XCTAssertEqual(transactions[1...2].map { $0?["total_order"] as? Int }, [1, 2], file: file, line: line)
    XCTAssertEqual(transactions[1]?["id"] as? String, transactions[2]?["id"] as? String, file: file, line: line)
    XCTAssertEqual(transactions[3]?["total_order"] as? Int, 1, "the next transaction counts from 1 again", file: file, line: line)
}

extension PluginSinkTestCase {
    /// The key change and one insert, caught up; a SIGKILL of the daemon; one more insert after the restart.
    func runKeyChange(_ sink: String, environment: [String: String] = [:]) throws -> StatusView {
        try source.query("INSERT INTO orders VALUES (1, 1, 'one')")
        var daemon = try startDaemon(environment: environment)
        try waitForSlotActive()
        try source.query("UPDATE orders SET id = 2, note = 'two' WHERE id = 1")
        try source.query("INSERT INTO orders VALUES (3, 3, 'three')")
        _ = try waitForCaughtUp([sink], environment: environment)
        daemon.kill()
        daemon = try startDaemon(environment: environment)
        try source.query("INSERT INTO orders VALUES (4, 4, 'four')")
        let status = try waitForCaughtUp([sink], environment: environment)
        XCTAssertEqual(daemon.terminate(), 0, logTail)
        return status
    }
}

extension ExecSinkTests {
    func testDebeziumKeyChangeIsADeleteThenACreateEachOnce() throws {
        try writeConfig([
            "  - name: py",
            "    type: exec",
            "    command: [\(pluginPython), \(repositoryRoot)/examples/exec-sink/jsonl_sink.py]",
            "    topics: [app]",
            "    format: debezium",
            "    config:",
            "      path: \(outputPath)",
        ])
        let status = try runKeyChange("py")
        let records = try outputText.split(separator: "\n").map { line in
            try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any], String(line))
        }
        // Sluice's begin and commit lines around Debezium's change events (which have no kind).
        let events = records.filter { $0["kind"] == nil }
        assertDebeziumKeyChange(events, logTail)
        let commits = records.filter { $0["kind"] as? String == "commit" }
        XCTAssertEqual(commits.count, 4, "the snapshot and three transactions, once each: \(commits)")
        let offsets = commits.compactMap { $0["offset"] as? Int }
        XCTAssertEqual(offsets, offsets.sorted(), "positions in topic order")
        XCTAssertEqual(Set(offsets).count, offsets.count)
        XCTAssertEqual(offsets.last, status.endOffset("app"), "the last position is the topic's end")
        let created = try XCTUnwrap(records.firstIndex { $0["op"] as? String == "c" })
        XCTAssertEqual(records[created + 1]["kind"] as? String, "commit", "the key change's transaction ends after its create event")
        XCTAssertEqual(records[created - 2]["kind"] as? String, "begin")
    }
}

extension ExecSinkTests {
    /// The fixture plugin, behaving, takes Debezium change events (lines without a kind) between Sluice's
    /// begin and commit lines, as the example plugin does.
    func testTheFixturePluginTakesDebeziumLines() throws {
        XCTAssertTrue(FileManager.default.createFile(atPath: flagPath, contents: Data("behave\n".utf8)))
        try writeConfig(fixtureSink("py", mode: "fatal") + ["    format: debezium"])  // the flag overrides the mode
        let daemon = try startDaemon()
        try waitForSlotActive()
        try source.query("INSERT INTO orders VALUES (1, 1, 'one')")
        try source.query("UPDATE orders SET note = 'uno' WHERE id = 1")
        let status = try waitForCaughtUp(["py"])
        XCTAssertEqual(daemon.terminate(), 0, logTail)
        let records = try outputText.split(separator: "\n").map { line in
            try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any], String(line))
        }
        XCTAssertEqual(records.filter { $0["kind"] == nil }.map { $0["op"] as? String }, ["c", "u"], "\(records)" + logTail)
        XCTAssertEqual(records.last?["kind"] as? String, "commit")
        XCTAssertEqual(records.last?["offset"] as? Int, status.endOffset("app"), "the plugin holds the topic's end")
    }
}

extension HTTPSinkTests {
    func testDebeziumKeyChangeIsADeleteThenACreateEachOnceThroughRetries() throws {
        let port = try startReceiver()
        try writeConfig([
            "  - name: hook",
            "    type: http",
            "    url: http://127.0.0.1:\(port)/ingest",
            "    topics: [app]",
            "    format: debezium",
            "    retry_for: 60s",
        ])
        let status = try runKeyChange("hook")
        // The receiver failed a seeded share of requests (503): only what it took counts, and a retry
        // carries the same body under the same key.
        let taken = try requests().filter { $0.status == 200 }
        var transactions: [[String: Any]] = []
        for request in taken {
            let body = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(request.body.utf8)) as? [String: Any], request.body)
            transactions += try XCTUnwrap(body["transactions"] as? [[String: Any]], request.body)
        }
        XCTAssertGreaterThan(try requests().count, taken.count, "some requests were answered 503 and retried")
        assertDebeziumKeyChange(transactions.flatMap { $0["changes"] as? [[String: Any]] ?? [] }, logTail)
        let offsets = transactions.compactMap { $0["offset"] as? Int }
        XCTAssertEqual(offsets.count, 4, "the snapshot and three transactions, once each: \(offsets)")
        XCTAssertEqual(offsets, offsets.sorted())
        XCTAssertEqual(Set(offsets).count, offsets.count)
        let keyChange = try XCTUnwrap(transactions.first { ($0["changes"] as? [[String: Any]])?.first?["op"] as? String == "d" })
        XCTAssertEqual((keyChange["commit"] as? [String: Any])?["offset"] as? Int, keyChange["offset"] as? Int,
                       "the transaction's position is its commit's")
        XCTAssertEqual((keyChange["commit"] as? [String: Any])?["events"] as? Int, 1, "one change, two Debezium events")
        XCTAssertEqual(status.committedOffset("hook", "app"), status.endOffset("app"), status.text)
    }
}

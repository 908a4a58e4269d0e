import Foundation
import SluiceWire
import XCTest

/// `metrics: {listen: …}`: Prometheus counters at /metrics that move with the workload and end equal
/// to what the topic holds; /health 200 while everything runs, 503 naming the sink while its target
/// is down, 200 again once it is back.
final class MetricsHealthTests: SinkTestCase {
    override var fixtureName: String { "metrics" }

    func scrape(_ port: Int, file: StaticString = #filePath, line: UInt = #line) throws -> [OpsSample] {
        let response = try opsHTTPGet(port: port, path: "/metrics")
        XCTAssertEqual(response.status, 200, response.body, file: file, line: line)
        return opsParseMetrics(response.body)
    }

    func testMetricsCountTheWorkloadAndHealthFollowsTheTarget() throws {
        let port = try freePort()
        try source.query("""
            CREATE TABLE orders (id int PRIMARY KEY, qty int NOT NULL, note text);
            INSERT INTO orders SELECT i, i, 'initial' FROM generate_series(1, 200) i;
            """)
        try writeConfig(tables: ["public.orders"], topExtra: ["metrics:", "  listen: \"127.0.0.1:\(port)\""])
        let daemon = try startDaemon()
        try waitForSlotActive()
        try eventually(timeout: 30, "/health to be 200" + logTail) { try opsHTTPGet(port: port, path: "/health").status == 200 }
        XCTAssertEqual(try opsHTTPGet(port: port, path: "/health").body.trimmingCharacters(in: .whitespacesAndNewlines), "ok")

        // A steady workload: every transaction inserts two rows and updates one.
        let url = source.url
        let committed = SinkTestStats()
        let stopWriting = SinkTestFlag()
        let workload = SinkTestWorker("metrics-writer", stop: stopWriting) {
            guard let db = try? PGConnection(url: url) else { return }
            var sequence = 0
            while !stopWriting.isSet {
                sequence += 1
                do {
                    try db.execute("BEGIN")
                    try db.execute("INSERT INTO orders VALUES (\(1000 + 2 * sequence), 1, 'w'), (\(1001 + 2 * sequence), 2, 'w')")
                    try db.execute("UPDATE orders SET qty = qty + 1 WHERE id = \(sequence % 200 + 1)")
                    try db.execute("COMMIT")
                    committed.count("transactions")
                    committed.count("events", 3)
                } catch {
                    committed.count("failed")
                }
                usleep(10_000)
            }
        }
        defer { workload.stop() }

        try eventually(timeout: 30, "the workload to commit") { committed["transactions"] >= 20 }
        let first = try scrape(port)
        let sourceEvents = { (samples: [OpsSample]) in opsMetric(samples, "sluice_source_events_total", ["source": "app"]) ?? -1 }
        let sinkEvents = { (samples: [OpsSample], sink: String) in
            opsMetric(samples, "sluice_sink_events_total", ["sink": sink, "topic": "app"]) ?? -1
        }
        // Every counter moves with the workload: scraped again until each of them has (or 30 s pass).
        let moving: [(name: String, value: ([OpsSample]) -> Double)] = [
            ("sluice_source_events_total", sourceEvents),
            ("sluice_source_transactions_total", { opsMetric($0, "sluice_source_transactions_total") ?? -1 }),
            ("sluice_topic_bytes_total", { opsMetric($0, "sluice_topic_bytes_total", ["topic": "app"]) ?? -1 }),
        ] + ["replica", "local"].flatMap { sink -> [(name: String, value: ([OpsSample]) -> Double)] in
            [("sluice_sink_events_total for \(sink)", { sinkEvents($0, sink) }),
             ("sluice_sink_transactions_total for \(sink)", { opsMetric($0, "sluice_sink_transactions_total", ["sink": sink]) ?? -1 })]
        }
        var second = first
        var still: [String] = []
        try eventually(timeout: 30, "every counter to move with the workload; still: \(still)" + logTail) {
            second = try scrape(port)
            still = moving.filter { $0.value(second) <= $0.value(first) }.map(\.name)
            return still.isEmpty
        }
        for counter in moving {
            XCTAssertGreaterThan(counter.value(second), counter.value(first), "\(counter.name) moves")
        }
        workload.stop()
        XCTAssertEqual(committed["failed"], 0)

        // Caught up: the counters equal the topic's event count.
        let expectedEvents = 200 + committed["events"]
        var status = StatusView([:])
        try eventually(timeout: 60, "both sinks to catch up: \(status.text)" + logTail) {
            status = try sluiceStatus(configPath)
            return status.events("app") == expectedEvents && status.caughtUp("replica", "app") && status.caughtUp("local", "app")
        }
        var final: [OpsSample] = []
        try eventually(timeout: 10, "the sink counters to reach \(expectedEvents)") {
            final = try scrape(port)
            return sinkEvents(final, "replica") == Double(expectedEvents) && sinkEvents(final, "local") == Double(expectedEvents)
        }
        XCTAssertEqual(sourceEvents(final), Double(expectedEvents), "sluice_source_events_total counts snapshot reads and changes")
        XCTAssertEqual(opsMetric(final, "sluice_source_transactions_total", ["source": "app"]),
                       Double(committed["transactions"] + 1), "transactions: the snapshot and each committed one")
        for sink in ["replica", "local"] {
            XCTAssertEqual(sinkEvents(final, sink), Double(expectedEvents), "sluice_sink_events_total{sink=\"\(sink)\"}")
            XCTAssertEqual(opsMetric(final, "sluice_sink_lag_events", ["sink": sink, "topic": "app"]), 0, "lag gauge of \(sink)")
            XCTAssertNotNil(opsMetric(final, "sluice_sink_lag_seconds", ["sink": sink]), "sluice_sink_lag_seconds for \(sink)")
            let batches = opsMetric(final, "sluice_sink_batch_duration_seconds_count", ["sink": sink]) ?? 0
            XCTAssertGreaterThan(batches, 0, "sluice_sink_batch_duration_seconds histogram for \(sink)")
            XCTAssertNotNil(opsMetric(final, "sluice_sink_batch_duration_seconds_bucket", ["sink": sink, "le": "+Inf"]))
            XCTAssertEqual(opsMetric(final, "sluice_sink_commit_to_apply_seconds_count", ["sink": sink]),
                           Double(committed["transactions"] + 1), "one commit-to-apply sample per applied transaction (\(sink))")
        }
        // Bytes appended to the topic: its size on disk less segment headers and index entries.
        let written = Int(opsMetric(final, "sluice_topic_bytes_total", ["topic": "app"]) ?? -1)
        let size = status.topic("app")?["size_bytes"] as? Int ?? 0
        XCTAssertTrue(written <= size && written >= size * 9 / 10,
                      "sluice_topic_bytes_total (\(written)) is about the topic's size_bytes (\(size))")

        try assertConventions(port: port)

        // The PostgreSQL target goes down: /health turns 503 naming the sink.
        target.stop()
        try source.query("INSERT INTO orders VALUES (99999, 9, 'during outage')")
        var health = (status: 0, body: "")
        try eventually(timeout: 10, "/health to be 503 (last: \(health))" + logTail) {
            health = try opsHTTPGet(port: port, path: "/health")
            return health.status == 503
        }
        XCTAssertTrue(health.body.contains("replica"), "the 503 body names the sink: \(health.body)")
        XCTAssertFalse(health.body.contains("local"), "the SQLite sink is healthy: \(health.body)")
        try eventually(timeout: 10, "the lag gauge to show the waiting event") {
            opsMetric(try scrape(port), "sluice_sink_lag_events", ["sink": "replica", "topic": "app"]) == 1
        }
        let during = try scrape(port)
        XCTAssertGreaterThanOrEqual(opsMetric(during, "sluice_sink_retries_total", ["sink": "replica"]) ?? 0, 1,
                                    "sluice_sink_retries_total counts the sink's retries")
        XCTAssertEqual(opsMetric(during, "sluice_sink_lag_events", ["sink": "local", "topic": "app"]), 0)

        // Back: 200 again, and the sink applies the waiting event.
        try target.start()
        try eventually(timeout: 30, "/health to be 200 again (last: \(health))" + logTail) {
            health = try opsHTTPGet(port: port, path: "/health")
            return health.status == 200
        }
        try eventually(timeout: 30, "sink replica to apply the event from the outage") {
            sinkEvents(try scrape(port), "replica") == Double(expectedEvents + 1)
        }
        // The slot's retained WAL is published (refreshed about every 10 s).
        try eventually(timeout: 20, "sluice_source_retained_wal_bytes{source=\"app\"} to be published") {
            opsMetric(try scrape(port), "sluice_source_retained_wal_bytes", ["source": "app"]) != nil
        }
        XCTAssertEqual(daemon.terminate(), 0, logTail)
    }

    /// Prometheus conventions on every family published: `# HELP` and `# TYPE`, documented in
    /// docs/metrics.md, counters ending in `_total`, labelled by what they count (source, sink, topic).
    func assertConventions(port: Int, file: StaticString = #filePath, line: UInt = #line) throws {
        let text = try opsHTTPGet(port: port, path: "/metrics").body
        let docs = try String(contentsOfFile: repositoryRoot + "/docs/metrics.md", encoding: .utf8)
        var families: [String: String] = [:]
        for row in text.split(separator: "\n") where row.hasPrefix("# TYPE ") {
            let parts = row.split(separator: " ")
            families[String(parts[2])] = String(parts[3])
        }
        XCTAssertGreaterThanOrEqual(families.count, 10, "families published: \(families.keys.sorted())", file: file, line: line)
        for (family, type) in families.sorted(by: { $0.key < $1.key }) where family.hasPrefix("sluice_") {
            XCTAssertTrue(text.contains("# HELP \(family) "), "\(family) has a # HELP line", file: file, line: line)
            XCTAssertTrue(docs.contains("`\(family)`"), "\(family) is documented in docs/metrics.md", file: file, line: line)
            if type == "counter" { XCTAssertTrue(family.hasSuffix("_total"), "counter \(family) ends in _total", file: file, line: line) }
            let label = ["source", "sink", "topic"].first { family.hasPrefix("sluice_\($0)_") }
            XCTAssertNotNil(label, "\(family) is named sluice_<source|sink|topic>_…", file: file, line: line)
            for sample in opsParseMetrics(text) where sample.name == family || sample.name.hasPrefix(family + "_") {
                XCTAssertNotNil(label.flatMap { sample.labels[$0] }, "\(sample.name) \(sample.labels) carries label \(label ?? "?")",
                                file: file, line: line)
            }
        }
        for family in ["sluice_source_retries_total", "sluice_sink_retries_total", "sluice_source_retained_wal_bytes"] {
            XCTAssertNotNil(families[family], "\(family) is published from the start", file: file, line: line)
        }
    }
}

import Foundation
import SluiceWire
import XCTest

/// `aggregates:` end to end: a real source, real PostgreSQL and SQLite targets. After inserts, updates
/// that move rows across windows, groups and the predicate, deletes of the current maximum, late rows,
/// NULLs and a TRUNCATE, each aggregate table equals the GROUP BY computed at the source — exactly,
/// numeric sums and averages included — and stays so across SIGKILLs.
class AggregateTestCase: SinkTestCase {
    static let aggregates = [
        "    aggregates:",
        "      - table: public.orders_per_minute",
        "        from: public.orders",
        "        where: \"status <> 'cancelled'\"",
        "        group_by: [region]",
        "        window: {tumbling: 1m, time: created_at}",
        "        measures: {orders: \"count(*)\", counted: \"count(amount)\", revenue: \"sum(amount)\", smallest: \"min(amount)\", "
            + "biggest: \"max(amount)\", mean: \"avg(amount)\"}",
        "      - table: public.orders_hopping",
        "        from: public.orders",
        "        group_by: [region, status]",
        "        window: {hopping: 5m, every: 1m, time: created_at}",
        "        measures: {orders: \"count(*)\", items: \"sum(qty)\", fewest: \"min(qty)\", biggest: \"max(amount)\", mean: \"avg(amount)\"}",
        "      - table: public.orders_by_commit",
        "        from: public.orders",
        "        window: {tumbling: 1s, time: commit_time}",
        "        measures: {orders: \"count(*)\", items: \"sum(qty)\"}",
    ]

    func writeAggregateConfig(sourceExtra: [String] = []) throws {
        try writeSourceConfig(tables: ["public.orders", "public.markers"], sourceExtra: sourceExtra, sinks: [
            "  - name: replica", "    type: postgres", "    url: \(target.url)", "    topics: [app]",
        ] + Self.aggregates + [
            "  - name: local", "    type: sqlite", "    path: \(sqlitePath)", "    topics: [app]",
        ] + Self.aggregates)
    }

    func createOrders(preload: Int) throws {
        try source.query("""
            CREATE TABLE orders (id int PRIMARY KEY, region text, status text NOT NULL, amount numeric(10,2), qty int,
                                 created_at timestamptz);
            ALTER TABLE orders REPLICA IDENTITY FULL;
            CREATE TABLE markers (id serial PRIMARY KEY);  -- a transaction that always commits something, to wait on
            INSERT INTO orders SELECT i, (ARRAY['eu', 'us', 'apac', NULL])[1 + i % 4], (ARRAY['paid', 'paid', 'cancelled'])[1 + i % 3],
                CASE WHEN i % 10 = 0 THEN NULL ELSE round((i * 7.31) % 500, 2) END, i % 9,
                timestamptz '2026-12-01 10:00:00+00' + (i * 17 % 1200) * interval '1 second'
            FROM generate_series(1, \(preload)) i;
            """)
    }

    /// Lines `window | groups | measures` for the source's GROUP BY and for each target's table.
    static let minuteReference = """
        SELECT to_char(date_bin('1 minute', created_at, timestamptz 'epoch') AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS'),
               region, count(*), count(amount), sum(amount), min(amount), max(amount), avg(amount)
        FROM orders WHERE status <> 'cancelled' AND created_at IS NOT NULL GROUP BY 1, 2
        """
    static let hoppingReference = """
        SELECT to_char(s AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS'), region, status, count(*), sum(qty), min(qty), max(amount), avg(amount)
        FROM orders, generate_series(date_bin('1 minute', created_at, timestamptz 'epoch') - interval '4 minutes',
                                     date_bin('1 minute', created_at, timestamptz 'epoch'), interval '1 minute') s
        WHERE created_at IS NOT NULL GROUP BY 1, 2, 3
        """

    func assertAggregatesEqualSource(file: StaticString = #filePath, line: UInt = #line) throws {
        let cases: [(table: String, reference: String, columns: String)] = [
            ("orders_per_minute", Self.minuteReference, "region, orders, counted, revenue, smallest, biggest, mean"),
            ("orders_hopping", Self.hoppingReference, "region, status, orders, items, fewest, biggest, mean"),
        ]
        for (table, reference, columns) in cases {
            let expected = try source.query(reference).map(rowLine).sorted()
            let replica = try target.query("""
                SELECT to_char(window_start AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS'), \(columns) FROM public.\(table)
                """).map(rowLine).sorted()
            if let diff = rowsDifference(expected: expected, actual: replica) {
                XCTFail("\(table): the PostgreSQL aggregate differs from the source's GROUP BY: \(diff)" + logTail, file: file, line: line)
            }
            let lite = try IntegrationTests.sqliteRows(path: sqlitePath, table: table, columns: ["window_start"] + columns.components(separatedBy: ", "))
                .map { $0.replacingOccurrences(of: #"^'(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)\+00'"#, with: "'$1'", options: .regularExpression) }
                .sorted()
            if let diff = rowsDifference(expected: expected, actual: lite) {
                XCTFail("\(table): the SQLite aggregate differs from the source's GROUP BY: \(diff)" + logTail, file: file, line: line)
            }
            XCTAssertEqual(try target.scalar("SELECT count(*) FROM public.\(table) WHERE _sluice_rows <= 0"), "0",
                           "\(table): windows whose count dropped to zero are gone", file: file, line: line)
        }
        // Commit-time windows cannot be recomputed at the source (it keeps no commit times), but they
        // partition its rows: their totals are the table's (a lost or doubled retraction would show).
        let totals = try source.query("SELECT count(*), coalesce(sum(qty), 0) FROM orders").map(rowLine)
        XCTAssertEqual(try target.query("SELECT coalesce(sum(orders), 0), coalesce(sum(items), 0) FROM public.orders_by_commit").map(rowLine),
                       totals, "orders_by_commit (PostgreSQL) holds every current row once" + logTail, file: file, line: line)
        let db = try SQLiteDatabase(path: sqlitePath, readOnly: true)
        XCTAssertEqual(try db.query("SELECT coalesce(sum(orders), 0), coalesce(sum(items), 0) FROM orders_by_commit").map(rowLine),
                       totals, "orders_by_commit (SQLite) holds every current row once" + logTail, file: file, line: line)
    }

    /// Small transactions on `orders`: inserts (some late, some NULL), updates moving rows across
    /// windows, groups and the predicate, deletes of the current maximum.
    static func workload(_ db: PGConnection, transactions: Int, firstID: Int, stop: SinkTestFlag? = nil, stats: SinkTestStats) {
        var nextID = firstID
        for sequence in 1...transactions {
            if stop?.isSet == true { return }
            runWorkloadTransaction(on: db, sequence: sequence, stats: stats, label: "orders: ") {
                for _ in 0..<Int.random(in: 1...4) {
                    switch Int.random(in: 0..<10) {
                    case 0, 1, 2:
                        nextID += 1
                        let region: String? = ["eu", "us", "apac", nil].randomElement()!
                        let amount: String? = Int.random(in: 0..<8) == 0 ? nil : String(format: "%d.%02d", Int.random(in: 0...900), Int.random(in: 0...99))
                        try db.execute("""
                            INSERT INTO orders VALUES ($1, $2, $3, $4, $5, timestamptz '2026-12-01 10:00:00+00' + $6 * interval '1 second')
                            """, [String(nextID), region, ["paid", "cancelled", "paid"].randomElement()!, amount,
                                  String(Int.random(in: 0...20)), String(Int.random(in: -300...1500))])
                    case 3:
                        try db.execute("""
                            UPDATE orders SET created_at = created_at + $1 * interval '1 second' WHERE id = (SELECT id FROM orders ORDER BY random() LIMIT 1)
                            """, [String(Int.random(in: -400...400))])
                    case 4:
                        try db.execute("UPDATE orders SET region = $1 WHERE id = (SELECT id FROM orders ORDER BY random() LIMIT 1)",
                                       [["eu", "us", "apac", nil].randomElement()!])
                    case 5:
                        try db.execute("""
                            UPDATE orders SET status = CASE status WHEN 'paid' THEN 'cancelled' ELSE 'paid' END, amount = amount + 1
                            WHERE id = (SELECT id FROM orders ORDER BY random() LIMIT 1)
                            """)
                    case 6, 7:
                        // The current maximum of a window goes.
                        try db.execute("DELETE FROM orders WHERE id = (SELECT id FROM orders WHERE amount IS NOT NULL ORDER BY amount DESC, id LIMIT 1)")
                    case 8:
                        try db.execute("UPDATE orders SET amount = NULL, qty = qty + 1 WHERE id = (SELECT id FROM orders ORDER BY random() LIMIT 1)")
                    default:
                        try db.execute("DELETE FROM orders WHERE id = (SELECT id FROM orders ORDER BY random() LIMIT 1)")
                    }
                }
            }
        }
    }
}

final class AggregateTests: AggregateTestCase {
    override var fixtureName: String { "aggregates" }

    func testATableWithoutReplicaIdentityFullIsRefusedByCheckAndRunNamingTheFix() throws {
        try source.query("CREATE TABLE orders (id int PRIMARY KEY, region text, status text NOT NULL, amount numeric(10,2), "
                         + "qty int, created_at timestamptz); CREATE TABLE markers (id serial PRIMARY KEY); INSERT INTO orders VALUES (1, 'eu', 'paid', 1, 1, now())")
        try writeAggregateConfig()
        let check = try sluice(["check", "--config", configPath])
        XCTAssertEqual(check.status, 2, check.describe)
        for sink in ["sinks[0] (replica)", "sinks[1] (local)"] {
            XCTAssertTrue(check.out.contains("\(sink).aggregates[0].from: table public.orders lacks REPLICA IDENTITY FULL"), check.describe)
        }
        XCTAssertTrue(check.out.contains("ALTER TABLE public.orders REPLICA IDENTITY FULL;"), "the fix is printed: \(check.describe)")

        let run = try sluice(["run", "--config", configPath], timeout: 60)
        XCTAssertEqual(run.status, 2, "run refuses before it starts: \(run.describe)")
        XCTAssertTrue(run.all.contains("sinks[0] (replica).aggregates[0].from") && run.all.contains("ALTER TABLE public.orders REPLICA IDENTITY FULL"),
                      run.describe)
        XCTAssertEqual(try target.scalar("SELECT to_regclass('public.orders_per_minute')::text"), nil, "no aggregate table is made")

        // The fix it prints is enough.
        try source.query("ALTER TABLE public.orders REPLICA IDENTITY FULL")
        let fixed = try sluice(["check", "--config", configPath])
        XCTAssertFalse(fixed.out.contains("lacks REPLICA IDENTITY FULL"), fixed.describe)
    }

    func testAggregatesEqualTheSourceGroupByThroughUpdatesDeletesAndTruncate() throws {
        try createOrders(preload: 400)
        try writeAggregateConfig()
        let daemon = try startDaemon()
        try waitForSlotActive()
        let db = try source.connect()
        let stats = SinkTestStats()
        Self.workload(db, transactions: 150, firstID: 10_000, stats: stats)
        try waitForTargets(lsn: try commitMarked("INSERT INTO markers DEFAULT VALUES", on: db))
        try assertAggregatesEqualSource()
        XCTAssertGreaterThan(stats["committed"], 100, stats.summary + "\(stats.notes)")
        XCTAssertGreaterThan(Int(try target.scalar("SELECT count(*) FROM public.orders_per_minute") ?? "0") ?? 0, 20,
                             "the workload spans many windows")
        XCTAssertEqual(try target.scalar("SELECT count(*) FROM public.orders_per_minute WHERE region IS NULL") != "0", true,
                       "NULL regions are a group of their own")

        try waitForTargets(lsn: try commitMarked("TRUNCATE orders", on: db))
        XCTAssertEqual(try target.count("public.orders_per_minute"), 0, "TRUNCATE empties the aggregates")
        XCTAssertEqual(try target.count("public.\"_sluice_orders_per_minute_biggest\""), 0)
        XCTAssertEqual(try sqliteCount("public.orders_hopping"), 0)

        Self.workload(db, transactions: 40, firstID: 50_000, stats: stats)
        try waitForTargets(lsn: try commitMarked("INSERT INTO markers DEFAULT VALUES", on: db))
        try assertAggregatesEqualSource()
        XCTAssertEqual(daemon.terminate(), 0, "clean exit on SIGTERM" + logTail)
    }

    /// A backfill re-sends every current row of the table: an aggregate over it must replace the
    /// table's contribution, not add the rows a second time, while the stream goes on beside it.
    func testABackfillOfAnAggregatedTableReplacesItsContribution() throws {
        try createOrders(preload: 600)
        try writeAggregateConfig(sourceExtra: ["backfill_chunk_size: 100"])
        let daemon = try startDaemon()
        try waitForSlotActive()
        let db = try source.connect()
        let stats = SinkTestStats()
        Self.workload(db, transactions: 20, firstID: 10_000, stats: stats)
        try waitForTargets(lsn: try commitMarked("INSERT INTO markers DEFAULT VALUES", on: db))
        try assertAggregatesEqualSource()

        let stop = SinkTestFlag()
        let url = source.url
        let writer = SinkTestWorker("orders-writer", stop: stop) {
            guard let db = try? PGConnection(url: url) else { return stats.note("cannot connect") }
            Self.workload(db, transactions: 2_000, firstID: 20_000, stop: stop, stats: stats)
        }
        defer { writer.stop() }
        let result = try sluice(["backfill", "--config", configPath, "--table", "public.orders"], timeout: 180)
        writer.stop()
        XCTAssertEqual(result.status, 0, result.describe + logTail)
        XCTAssertGreaterThan(stats["committed"], 20, "the workload ran beside the backfill: \(stats.summary) \(stats.notes)")
        try waitForTargets(lsn: try commitMarked("INSERT INTO markers DEFAULT VALUES", on: db))
        try assertAggregatesEqualSource()
        XCTAssertEqual(try target.scalar("SELECT count(*) FROM public.orders"), try source.scalar("SELECT count(*) FROM orders"),
                       "the mirrored table is exact too" + logTail)
        XCTAssertEqual(daemon.terminate(), 0, "clean exit on SIGTERM" + logTail)
    }

    /// With `retain:`, a row for a window already dropped is not applied and is counted in
    /// `sluice_sink_aggregate_late_rows_total`; a late row within `retain:` updates its window.
    func testRowsLaterThanRetainAreCountedNotApplied() throws {
        try source.query("""
            CREATE TABLE events (id int PRIMARY KEY, at timestamptz); ALTER TABLE events REPLICA IDENTITY FULL;
            CREATE TABLE markers (id serial PRIMARY KEY);
            """)
        let port = try freePort()
        let aggregate = ["    aggregates:", "      - table: public.per_minute", "        from: public.events",
                         "        window: {tumbling: 1m, time: at}", "        measures: {n: \"count(*)\"}", "        retain: 10m"]
        try writeSourceConfig(tables: ["public.events", "public.markers"], topExtra: ["metrics:", "  listen: \"127.0.0.1:\(port)\""], sinks: [
            "  - name: replica", "    type: postgres", "    url: \(target.url)", "    topics: [app]",
        ] + aggregate + ["  - name: local", "    type: sqlite", "    path: \(sqlitePath)", "    topics: [app]"] + aggregate)
        let daemon = try startDaemon()
        try waitForSlotActive()
        try waitForTargets(lsn: try commitMarked("INSERT INTO events VALUES (1, '2026-12-01 12:00:30+00')"))
        // 11:55 is within retain: of the latest time (12:00:30); 11:30 ends 30 minutes before it: late.
        try waitForTargets(lsn: try commitMarked("""
            INSERT INTO events VALUES (2, '2026-12-01 11:55:10+00'), (3, '2026-12-01 11:30:10+00'), (4, '2026-12-01 11:30:20+00')
            """))
        XCTAssertEqual(try target.query("SELECT to_char(window_start AT TIME ZONE 'UTC', 'HH24:MI'), n FROM public.per_minute ORDER BY 1")
                        .map(rowLine), ["'11:55' | '1'", "'12:00' | '1'"], "the late rows are not applied" + logTail)
        XCTAssertEqual(try sqliteCount("public.per_minute"), 2, logTail)
        let late = try opsParseMetrics(opsHTTPGet(port: port, path: "/metrics").body)
            .filter { $0.name == "sluice_sink_aggregate_late_rows_total" && $0.labels["aggregate"] == "public.per_minute" }
        XCTAssertEqual(Dictionary(uniqueKeysWithValues: late.map { ($0.labels["sink"] ?? "?", $0.value) }), ["replica": 2, "local": 2],
                       "two late rows per sink: \(late)")
        let log = (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? ""
        XCTAssertEqual(log.components(separatedBy: "the window starting 2026-12-01 11:30").count - 1, 2, "logged once per window and sink" + logTail)
        XCTAssertEqual(daemon.terminate(), 0, "clean exit on SIGTERM" + logTail)
    }

    /// The last value of a window turning NULL must still leave the min/max state: a later retraction
    /// would otherwise bring the old value back as the extreme (it did in SQLite).
    func testAnExtremeThatBecameNullDoesNotComeBack() throws {
        try createOrders(preload: 0)
        try writeAggregateConfig()
        let daemon = try startDaemon()
        try waitForSlotActive()
        let at = "timestamptz '2026-12-01 10:00:05+00'"
        for step in [
            "INSERT INTO orders VALUES (1, 'eu', 'paid', 500, 1, \(at))",
            "UPDATE orders SET amount = NULL WHERE id = 1",
            "INSERT INTO orders VALUES (2, 'eu', 'paid', 300, 1, \(at))",
            "DELETE FROM orders WHERE id = 2; INSERT INTO orders VALUES (3, 'eu', 'paid', 100, 1, \(at))",
        ] {
            try waitForTargets(lsn: try commitMarked(step))
        }
        try assertAggregatesEqualSource()
        XCTAssertEqual(try target.scalar("SELECT biggest::text FROM public.orders_per_minute"), "100.00", logTail)
        XCTAssertEqual(daemon.terminate(), 0, "clean exit on SIGTERM" + logTail)
    }

    /// Rows added and retracted in one batch leave a float sum's rounding residue (0.1 + 0.2 - 0.1 -
    /// 0.2 is not 0): the window is empty all the same and must go, in both targets.
    func testAWindowEmptiedWithinOneBatchGoesDespiteAFloatSumResidue() throws {
        try source.query("""
            CREATE TABLE readings (id int PRIMARY KEY, t timestamptz NOT NULL, f float8);
            ALTER TABLE readings REPLICA IDENTITY FULL;
            CREATE TABLE markers (id int PRIMARY KEY);
            """)
        let aggregate = [
            "    aggregates:", "      - table: public.per_minute", "        from: public.readings",
            "        window: {tumbling: 1m, time: t}", "        measures: {n: \"count(*)\", s: \"sum(f)\"}",
        ]
        try writeSourceConfig(tables: ["public.readings", "public.markers"], sinks: [
            "  - name: replica", "    type: postgres", "    url: \(target.url)", "    topics: [app]",
        ] + aggregate + ["  - name: local", "    type: sqlite", "    path: \(sqlitePath)", "    topics: [app]"] + aggregate)
        let daemon = try startDaemon()
        try waitForSlotActive()
        try waitForTargets(lsn: try commitMarked("""
            INSERT INTO readings VALUES (9, '2026-12-01 10:05:00+00', 1.5);
            INSERT INTO readings VALUES (1, '2026-12-01 10:00:01+00', 0.1), (2, '2026-12-01 10:00:02+00', 0.2);
            DELETE FROM readings WHERE id = 1;
            DELETE FROM readings WHERE id = 2;
            """))
        let expected = [rowLine(["2026-12-01 10:05:00+00", "1", "1.5"])]
        XCTAssertEqual(try target.query("SELECT window_start::text, n, s FROM public.per_minute ORDER BY 1").map(rowLine), expected, logTail)
        XCTAssertEqual(try SQLiteDatabase(path: sqlitePath, readOnly: true).query("SELECT window_start, n, s FROM per_minute ORDER BY 1").map(rowLine),
                       expected, logTail)
        XCTAssertEqual(daemon.terminate(), 0, logTail)
    }

    /// A measure removed from the file: its NOT NULL state columns stay in the aggregate table, so the
    /// sink stops naming them and the rebuild, in both targets (each insert failed on the constraint).
    func testRemovingAMeasureStopsTheSinkNamingTheStaleColumns() throws {
        try source.query("""
            CREATE TABLE readings (id int PRIMARY KEY, t timestamptz NOT NULL, qty int);
            ALTER TABLE readings REPLICA IDENTITY FULL;
            CREATE TABLE markers (id int PRIMARY KEY);
            """)
        func configure(_ measures: String) throws {
            let aggregate = ["    aggregates:", "      - table: public.per_minute", "        from: public.readings",
                             "        window: {tumbling: 1m, time: t}", "        measures: {\(measures)}"]
            try writeSourceConfig(tables: ["public.readings", "public.markers"], sinks: [
                "  - name: replica", "    type: postgres", "    url: \(target.url)", "    topics: [app]",
            ] + aggregate + ["  - name: local", "    type: sqlite", "    path: \(sqlitePath)", "    topics: [app]"] + aggregate)
        }
        try configure("n: \"count(*)\", total: \"sum(qty)\"")
        let first = try startDaemon()
        try waitForSlotActive()
        try waitForTargets(lsn: try commitMarked("INSERT INTO readings VALUES (1, '2026-12-01 10:00:01+00', 3)"))
        XCTAssertEqual(first.terminate(), 0, logTail)

        try configure("n: \"count(*)\"")
        let second = try startDaemon()
        try source.query("INSERT INTO readings VALUES (2, '2026-12-01 10:00:02+00', 4)")
        try eventually(timeout: 60, "both sinks to stop naming the stale columns" + logTail) {
            let log = second.log
            return log.components(separatedBy: "none of its measures writes").count > 2
        }
        let log = second.log
        XCTAssertTrue(log.contains("per_minute has columns _sluice_total_n that none of its measures writes"), logTail)
        XCTAssertTrue(log.contains("_sluice_total_sum, _sluice_total_n that none") || log.contains("_sluice_total_n, _sluice_total_sum that none"),
                      logTail)
        XCTAssertFalse(log.contains("violates not-null") || log.contains("NOT NULL constraint failed"), logTail)
        second.kill()
    }

    /// An aggregate the table's schema makes impossible (a sum of text, an unknown group column) is
    /// found by check and refused by run (exit 2) before a slot, a publication or a table is made.
    func testAnAggregateTheSchemaRefusesExitsTwoBeforeAnythingIsCreated() throws {
        try source.query("""
            CREATE TABLE readings (id int PRIMARY KEY, t timestamptz NOT NULL, note text);
            ALTER TABLE readings REPLICA IDENTITY FULL;
            CREATE TABLE markers (id int PRIMARY KEY);
            """)
        let aggregate = ["    aggregates:", "      - table: public.per_minute", "        from: public.readings", "        group_by: [zone]",
                         "        window: {tumbling: 1m, time: t}", "        measures: {total: \"sum(note)\"}"]
        try writeSourceConfig(tables: ["public.readings", "public.markers"], sinks: [
            "  - name: replica", "    type: postgres", "    url: \(target.url)", "    topics: [app]",
        ] + aggregate + ["  - name: local", "    type: sqlite", "    path: \(sqlitePath)", "    topics: [app]"] + aggregate)
        let check = try sluice(["check", "--config", configPath])
        XCTAssertEqual(check.status, 2, check.describe)
        for sink in ["sinks[0] (replica)", "sinks[1] (local)"] {
            XCTAssertTrue(check.out.contains("\(configPath): \(sink).aggregates[0]"), check.describe)
        }
        XCTAssertTrue(check.out.contains("zone"), check.describe)
        let run = try sluice(["run", "--config", configPath], timeout: 60)
        XCTAssertEqual(run.status, 2, run.describe)
        XCTAssertTrue(run.all.contains("sinks[0] (replica).aggregates[0]"), run.describe)
        XCTAssertEqual(try source.scalar("SELECT count(*) FROM pg_replication_slots"), "0", "no slot: \(run.describe)")
        XCTAssertEqual(try source.scalar("SELECT count(*) FROM pg_publication"), "0", "no publication: \(run.describe)")
        XCTAssertEqual(try target.scalar("SELECT to_regclass('public.readings')::text"), nil, "no target table: \(run.describe)")
        XCTAssertFalse(FileManager.default.fileExists(atPath: sqlitePath), run.describe)
    }
}

import Foundation
import SluiceWire
import XCTest

/// `sluice verify` against a running daemon, real PostgreSQL source and target and a real SQLite file:
/// equal targets under a steady writer exit 0; rows changed by hand at the targets are reported with
/// their exact key and kind (exit 1); `--repair` mends them; bad usage exits 2.
final class VerifyTests: SinkTestCase {
    override var fixtureName: String { "verify" }

    static let accounts = 3000

    func createTables() throws {
        try source.query("""
            CREATE TABLE accounts (id int PRIMARY KEY, name text, balance numeric(12,2), active bool, avatar bytea,
                                   score float8, ratio real, opened timestamptz, tags jsonb, ref uuid);
            INSERT INTO accounts SELECT i, 'account ' || i, i * 1.25, i % 3 = 0, CASE WHEN i % 5 = 0 THEN NULL ELSE decode(md5(i::text), 'hex') END,
                   i / 7.0, (i / 3.0)::real, timestamptz '2024-01-01 00:00:00+00' + i * interval '1 hour 7 seconds',
                   jsonb_build object('n', i), md5(i::text)::uuid
            FROM generate_series(1, \(Self.accounts)) i;
            CREATE TABLE codes (code text PRIMARY KEY, v int);
            INSERT INTO codes SELECT 'k' || lpad(i::text, 4, '0'), i FROM generate_series(1, 1000) i;
            INSERT INTO codes VALUES ('Zeta', 1), ('apple', 2), ('äpfel', 3), ('a b', 4), ('A', 5);
            CREATE TABLE events (k int, note text);
            ALTER TABLE events REPLICA IDENTITY FULL;
            INSERT INTO events SELECT i, 'event ' || i FROM generate_series(1, 200) i;
            INSERT INTO events SELECT i, 'event ' || i FROM generate_series(1, 200) i WHERE i % 50 = 0;
            CREATE TABLE orders (id int PRIMARY KEY, status text, secret text);
            INSERT INTO orders SELECT i, 'status ' || i, 'hidden' FROM generate_series(1, 300) i;
            """.replacingOccurrences(of: "jsonb_build object", with: "jsonb_build_object"))
    }

    /// verify's JSON lines of one run, by type.
    struct Report {
        var tables: [String: [String: Any]] = [:]
        var summary: [String: Any] = [:]

        init(_ output: String) {
            for line in output.split(separator: "\n") {
                guard let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else { continue }
                if object["type"] as? String == "table" {
                    tables["\(object["sink"] ?? "") \(object["table"] ?? "")"] = object
                } else if object["type"] as? String == "summary" {
                    summary = object
                }
            }
        }

        /// `kind key` (keyed) or `kind copies row` (keyless) of each difference of a table at a sink.
        func differences(_ sink: String, _ table: String) -> Set<String> {
            let list = tables["\(sink) \(table)"]?["differences"] as? [[String: Any]] ?? []
            return Set(list.map { difference in
                let kind = difference["kind"] as? String ?? "?"
                if let key = difference["key"] as? [String: Any] {
                    return kind + " " + key.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ",")
                }
                let row = (difference["source"] as? [String: Any]) ?? (difference["target"] as? [String: Any]) ?? [:]
                return "\(kind) \(difference["copies"] ?? "?") \(row["k"] ?? "?")"
            })
        }
    }

    func verify(_ arguments: [String] = [], timeout: TimeInterval = 240) throws -> (CommandResult, Report) {
        let result = try sluice(["verify", "--config", configPath, "--json", "--chunk-size", "500"] + arguments, timeout: timeout)
        return (result, Report(result.out))
    }

    func testVerifyUnderSteadyWritesFindsAndRepairsHandMadeDifferences() throws {
        try createTables()
        // orders is published with a row filter and a column list: compared as published.
        try writeConfig(tables: ["public.accounts", "public.codes", "public.events",
                                 "{name: public.orders, where: \"id % 2 = 0\", columns: [id, status]}"],
                        sourceExtra: ["heartbeat_interval: 500ms"])
        _ = try startDaemon()
        try waitForSlotActive()
        try waitForTargets(lsn: try commitMarked("UPDATE accounts SET name = name WHERE id = 1"))

        // A steady writer (about 200 transactions a second) on rows the test never changes by hand.
        let url = source.url
        let stats = SinkTestStats()
        let stop = SinkTestFlag()
        let writer = SinkTestWorker("verify-writer", stop: stop) {
            guard let db = try? PGConnection(url: url) else { stats.count("connect failed"); return }
            var sequence = 0
            while !stop.isSet {
                sequence += 1
                runWorkloadTransaction(on: db, sequence: sequence, stats: stats, label: "writer: ") {
                    let id = Int.random(in: 1001...Self.accounts)
                    try db.execute("UPDATE accounts SET balance = balance + 1, score = random(), opened = now() WHERE id = \(id)")
                    try db.execute("INSERT INTO events VALUES (\(10_000 + sequence), 'written \(sequence)')")
                    try db.execute("UPDATE codes SET v = v + 1 WHERE code = 'k\(Int.random(in: 500...1000))'")
                    if sequence % 10 == 0 { try db.execute("DELETE FROM events WHERE k = \(10_000 + sequence - 5)") }
                    try db.execute("UPDATE orders SET status = 'moved \(sequence)', secret = 'x' WHERE id = \(Int.random(in: 1...300))")
                }
                usleep(4_000)
            }
        }
        defer { writer.stop() }
        try eventually(timeout: 30, "the writer to commit") { stats["committed"] >= 100 }

        // Equal targets under the writer: no false positive, twice.
        for run in 1...2 {
            let (result, report) = try verify()
            XCTAssertEqual(result.status, 0, "run \(run) under a steady writer: \(result.describe)")
            XCTAssertEqual(report.tables.count, 8, "four tables at two sinks: \(result.out)")
            XCTAssertEqual(report.tables["local public.orders"]?["rows"] as? Int, 150, "the filtered rows only: \(result.out)")
            XCTAssertEqual(report.summary["differing"] as? Int, 0, result.out)
        }

        // Differences made by hand at each target.
        try target.query("""
            DELETE FROM accounts WHERE id = 10;
            UPDATE accounts SET balance = balance + 0.01 WHERE id = 20;
            INSERT INTO accounts (id, name) VALUES (500000, 'ghost');
            INSERT INTO events VALUES (7, 'event 7');
            """)
        let lite = try SQLiteDatabase(path: sqlitePath)
        try lite.execute("""
            DELETE FROM accounts WHERE id = 30;
            UPDATE codes SET v = v + 1 WHERE code = 'äpfel';
            DELETE FROM events WHERE rowid = (SELECT min(rowid) FROM events WHERE k = 50);
            """)

        let (found, report) = try verify()
        XCTAssertEqual(found.status, 1, found.describe)
        XCTAssertEqual(report.differences("replica", "public.accounts"), ["missing id=10", "different id=20", "extra id=500000"], found.out)
        XCTAssertEqual(report.differences("local", "public.accounts"), ["missing id=30"], found.out)
        XCTAssertEqual(report.differences("local", "public.codes"), ["different code=äpfel"], found.out)
        XCTAssertEqual(report.differences("replica", "public.codes"), [], found.out)
        XCTAssertEqual(report.differences("replica", "public.events"), ["extra 1 7"], found.out)
        XCTAssertEqual(report.differences("local", "public.events"), ["missing 1 50"], found.out)
        let different = (report.tables["replica public.accounts"]?["differences"] as? [[String: Any]] ?? [])
            .first { $0["kind"] as? String == "different" }
        XCTAssertEqual((different?["source"] as? [String: Any])?["balance"] as? String, "25.00", "values side by side: \(found.out)")
        XCTAssertEqual((different?["target"] as? [String: Any])?["balance"] as? String, "25.01", "values side by side: \(found.out)")

        // --repair mends them through the backfill path (the keyless table copied whole), while the writer goes on.
        let (repaired, afterRepair) = try verify(["--repair"])
        XCTAssertEqual(repaired.status, 0, repaired.describe)
        XCTAssertEqual(afterRepair.summary["differing"] as? Int, 0, repaired.out)
        let (again, _) = try verify()
        XCTAssertEqual(again.status, 0, again.describe)
        XCTAssertEqual(try target.scalar("SELECT count(*) FROM accounts WHERE id = 500000"), "0", "the extra row was deleted")

        // A difference planted while the writer runs is still found after the first runs found none.
        try lite.execute("UPDATE accounts SET name = 'changed by hand' WHERE id = 40")
        let (planted, plantedReport) = try verify(["--sink", "local", "--table", "public.accounts"])
        XCTAssertEqual(planted.status, 1, planted.describe)
        XCTAssertEqual(plantedReport.differences("local", "public.accounts"), ["different id=40"], planted.out)

        writer.stop()
        XCTAssertEqual(stats["failed"], 0, "writer errors: \(stats.notes)")
        try lite.execute("UPDATE accounts SET name = 'account 40' WHERE id = 40")
        try waitForTargets(lsn: try commitMarked("UPDATE accounts SET name = name WHERE id = 1"))
        let (final, _) = try verify()
        XCTAssertEqual(final.status, 0, final.describe)
        try assertTargetsEqualSource("public.accounts")
        try assertTargetsEqualSource("public.codes")
    }

    /// A million rows at a PostgreSQL target (filled by hand, the source's `snapshot: never`), three of
    /// them made different: the peak RSS of `sluice verify` is bounded by its chunks, not the table.
    func testMillionRowTableVerifiesInBoundedMemory() throws {
        let rows = 1_000_000
        let fill = """
            CREATE TABLE big (id bigint PRIMARY KEY, account bigint, label text, amount numeric(12,2), note text);
            INSERT INTO big SELECT g, g % 1000, 'label ' || g, (g % 100000) * 1.25, md5(g::text) FROM generate_series(1, \(rows)) g;
            """
        try source.query(fill)
        try target.query(fill + """
            UPDATE big SET note = 'changed' WHERE id = 123456;
            DELETE FROM big WHERE id = 654321;
            INSERT INTO big VALUES (\(rows + 7), 0, 'ghost', 0, 'extra');
            """)
        try writeSourceConfig(tables: ["public.big"], sourceExtra: ["snapshot: never", "heartbeat_interval: 500ms"], sinks: [
            "  - name: replica", "    type: postgres", "    url: \(target.url)", "    topics: [app]",
        ])
        _ = try startDaemon()
        try waitForSlotActive()
        let marker = try commitMarked("UPDATE big SET note = note WHERE id = 1")
        try eventually(timeout: 60, "the target to apply the marker" + logTail) { try postgresTargetLSN().map { $0 >= marker } ?? false }

        let outPath = directory + "/verify-big.out"
        let process = try SluiceProcess(program: sluiceBinary, ["verify", "--config", configPath, "--json"], logPath: outPath,
                                        errorPath: outPath + ".err")
        var peak = 0
        let deadline = Date().addingTimeInterval(240)
        while process.isRunning && Date() < deadline {
            peak = max(peak, process.peakRSSKilobytes ?? 0)
            usleep(20_000)
        }
        let exited = process.wait(timeout: 1)
        if exited == nil { process.kill() }
        let status: Int32 = exited ?? -1
        let output = process.log
        let errors = (try? String(contentsOfFile: outPath + ".err", encoding: .utf8)) ?? ""
        print("peak RSS of sluice verify over \(rows) rows: \(peak / 1024) MB (\(peak) kB)")
        XCTAssertEqual(status, 1, "differences found: \(output)\n\(errors)")
        let report = Report(output)
        XCTAssertEqual(report.tables["replica public.big"]?["rows"] as? Int, rows, output)
        XCTAssertEqual(report.differences("replica", "public.big"), ["different id=123456", "missing id=654321", "extra id=\(rows + 7)"], output)
        XCTAssertGreaterThan(peak, 0, "the peak RSS was read")
        XCTAssertLessThan(peak, 150 * 1024, "peak RSS under 150 MB for \(rows) rows")
    }

    /// Sinks that transform: verify compares what they should hold — renamed, filtered by the sink's
    /// where, excluded columns left out, masks applied to the source's values — and says which sink's
    /// tables it cannot compare (history). An aggregate's GROUP BY follows the sink's rename and where.
    func testVerifyComparesWhatTheSinksTransformsMakeOfTheSource() throws {
        try source.query("""
            CREATE TABLE people (id int PRIMARY KEY, name text, email text, ssn text, age int);
            INSERT INTO people SELECT i, 'person ' || i, CASE WHEN i % 7 = 0 THEN NULL ELSE 'p' || i || '@example.com' END,
                                      'ssn ' || i, i % 60 FROM generate_series(1, 300) i;
            CREATE TABLE visits (id int PRIMARY KEY, age int, at timestamptz, amount numeric);
            ALTER TABLE visits REPLICA IDENTITY FULL;
            INSERT INTO visits SELECT i, i % 4, timestamptz '2026-01-01 00:00:00+00' + i * interval '7 minutes', i * 1.25
            FROM generate_series(1, 120) i;
            """)
        let transforms = [
            "    columns: {public.people: {exclude: [ssn], mask: {email: hash, name: redact}}}",
            "    mask_key: verify-key",
            "    metadata: [lsn, op]",
        ]
        try writeSourceConfig(tables: ["public.people", "public.visits"], sourceExtra: ["heartbeat_interval: 500ms"], sinks: [
            "  - name: replica", "    type: postgres", "    url: \(target.url)", "    topics: [app]",
            "    where: {public.people: \"age >= 30\", public.visits: \"amount > 10\"}", "    rename: {public.visits: stats.visits}",
            "    aggregates:", "      - table: public.visits_per_age", "        from: stats.visits", "        group_by: [age]",
            "        window: {tumbling: 1h, time: commit_time}", "        measures: {people: \"count(*)\"}",
            "      - table: public.visits_hourly", "        from: stats.visits", "        group_by: [age]", "        where: \"age > 0\"",
            "        window: {hopping: 2h, every: 1h, time: at}",
            "        measures: {visits: \"count(*)\", total: \"sum(amount)\", mean: \"avg(amount)\", top: \"max(amount)\"}",
        ] + transforms + [
            "  - name: local", "    type: sqlite", "    path: \(sqlitePath)", "    topics: [app]",
            "    rename: {public.people: crm.people}", "    where: {public.people: \"age >= 30\"}",
        ] + transforms + [
            "  - name: changelog", "    type: sqlite", "    path: \(directory!)/changelog.db", "    topics: [app]", "    mode: history",
        ])
        _ = try startDaemon()
        try waitForSlotActive()
        // A row leaves the sink's filter, another enters it: the sinks delete and insert them.
        try waitForTargets(lsn: try commitMarked("UPDATE people SET age = 10 WHERE id = 45; UPDATE people SET age = 50 WHERE id = 5"))
        // A value of a wider scale added, then retracted: the kept sum keeps the scale (…0000), GROUP BY
        // has that of the rows left; the same sum all the same.
        try waitForTargets(lsn: try commitMarked("INSERT INTO visits VALUES (500, 2, timestamptz '2026-01-01 05:10:00+00', 20.5000)"))
        try waitForTargets(lsn: try commitMarked("DELETE FROM visits WHERE id = 500"))

        let passing = Int(try source.scalar("SELECT count(*) FROM people WHERE age >= 30") ?? "") ?? -1
        let (equal, report) = try verify()
        XCTAssertEqual(equal.status, 0, equal.describe)
        for sink in ["replica", "local"] {
            let table = report.tables["\(sink) public.people"]
            XCTAssertEqual(table?["rows"] as? Int, passing, "the rows the sink's where passes: \(equal.out)")
            XCTAssertEqual(table?["transforms"] as? [String], sink == "local" ? ["rename", "columns", "where"] : ["columns", "where"], equal.out)
        }
        XCTAssertEqual(report.tables["replica public.visits"]?["equal"] as? Bool, true, equal.out)
        XCTAssertEqual(report.tables["local public.people"]?["target_table"] as? String, "crm_people", equal.out)
        XCTAssertTrue((report.tables["changelog public.people"]?["skipped"] as? String ?? "").contains("history"), equal.out)
        XCTAssertTrue(report.tables["changelog public.people"]?["equal"] is NSNull, "not compared is not equal: \(equal.out)")
        // --sink twice: both sinks, not the last one only.
        let (two, twoReport) = try verify(["--sink", "replica", "--sink", "local"])
        XCTAssertEqual(two.status, 0, two.describe)
        XCTAssertEqual(Set(twoReport.tables.keys.map { String($0.split(separator: " ")[0]) }), ["replica", "local"], two.out)
        XCTAssertTrue((report.tables["replica public.visits_per_age"]?["skipped"] as? String ?? "").contains("aggregate table of stats.visits"),
                      "aggregate tables are listed as not compared: \(equal.out)")
        // An aggregate over a time column equals the GROUP BY at the source (hopping windows, sum, avg, max).
        let hourly = report.tables["replica public.visits_hourly"]
        XCTAssertEqual(hourly?["equal"] as? Bool, true, equal.out)
        XCTAssertGreaterThan(hourly?["rows"] as? Int ?? 0, 20, "windows × groups compared: \(equal.out)")

        // Hand-made differences at the transformed targets: a hashed value, a redacted one, a row deleted.
        try target.query("""
            UPDATE people SET email = 'not the hash' WHERE id = 40; DELETE FROM people WHERE id = 41;
            UPDATE visits_hourly SET visits = visits + 1 WHERE age = 2 AND window_start = '2026-01-01 05:00:00+00';
            """)
        try SQLiteDatabase(path: sqlitePath).execute("UPDATE crm_people SET name = 'unredacted' WHERE id = 42")
        let (found, differing) = try verify()
        XCTAssertEqual(found.status, 1, found.describe)
        XCTAssertEqual(differing.differences("replica", "public.people"), ["different id=40", "missing id=41"], found.out)
        XCTAssertEqual(differing.differences("local", "public.people"), ["different id=42"], found.out)
        XCTAssertEqual(differing.tables["replica public.visits_hourly"]?["missing"] as? Int, 1, found.out)
        XCTAssertEqual(differing.tables["replica public.visits_hourly"]?["extra"] as? Int, 1, found.out)

        // --repair rebuilds the aggregate (its source table backfilled whole) and mends the mirrored rows.
        let (repaired, _) = try verify(["--repair", "--sink", "replica"])
        XCTAssertEqual(repaired.status, 0, repaired.describe)
        let hashed = (differing.tables["replica public.people"]?["differences"] as? [[String: Any]] ?? [])
            .first { $0["kind"] as? String == "different" }?["source"] as? [String: Any]
        XCTAssertEqual((hashed?["email"] as? String)?.count, 64, "the source side is the HMAC-SHA256 hex: \(found.out)")
        XCTAssertNil(hashed?["ssn"], "excluded columns are not compared: \(found.out)")
    }

    func testBadUsageExitsTwoWithTheReason() throws {
        try source.query("CREATE TABLE t (id int PRIMARY KEY)")
        try writeSourceConfig(tables: ["public.t"], sinks: [
            "  - name: local", "    type: sqlite", "    path: \(sqlitePath)", "    topics: [app]",
            "  - name: files", "    type: file", "    path: \(directory!)/out", "    topics: [app]",
            "  - name: changelog", "    type: sqlite", "    path: \(directory!)/changelog.db", "    topics: [app]",
            "    mode: history",
        ])
        let cases: [([String], String)] = [
            (["--sink", "nope"], "there is no sink 'nope'"),
            (["--sink", "files"], "not a SQL sink"),
            (["--table", "public.missing"], "public.missing is not captured"),
            (["--table", "a.b.c"], "--table 'a.b.c'"),
        ]
        for (arguments, reason) in cases {
            let result = try sluice(["verify", "--config", configPath] + arguments)
            XCTAssertEqual(result.status, 2, "\(arguments): \(result.describe)")
            XCTAssertTrue(result.err.contains(reason), "\(arguments) should say \(reason): \(result.describe)")
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: sqlitePath), "bad usage touched no target")

        // A sink whose tables cannot equal the source's (a changelog): verify says it skips them.
        let skipped = try sluice(["verify", "--config", configPath, "--sink", "changelog", "--json"])
        XCTAssertEqual(skipped.status, 0, skipped.describe)
        XCTAssertTrue(skipped.out.contains("\"skipped\":\"the sink keeps history (mode: history)"), skipped.describe)
    }
}

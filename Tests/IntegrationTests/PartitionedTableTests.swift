import Foundation
import SluiceWire
import XCTest

/// Partitioned source tables. A table listed in `tables:` that is partitioned is captured through its
/// root: the publication Sluice creates publishes via the partition root, so the snapshot, the stream
/// and backfill all see one table `public.measurements` (never its partitions), rows moved between
/// partitions by an UPDATE land once, and partitions created or attached later are followed. A user
/// publication without `publish_via_partition_root` is refused with the fix. And changes the
/// publication sends for a table Sluice does not capture are counted and logged, never dropped silently.
final class PartitionedTableTests: SinkTestCase {
    override var fixtureName: String { "partition" }

    private static let partitionNames = (2024...2028).map { "measurements_\($0)" }

    private func createMeasurements(preload rows: Int) throws {
        try source.query("""
            CREATE TABLE measurements (id int, taken date, value numeric(12,2), note text, PRIMARY KEY (id, taken))
                PARTITION BY RANGE (taken);
            CREATE TABLE measurements_2024 PARTITION OF measurements FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
            CREATE TABLE measurements_2025 PARTITION OF measurements FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
            CREATE TABLE measurements_2026 PARTITION OF measurements FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
            """)
        if rows > 0 {
            // Every third day from 2024-01-04 on: rows in all three partitions.
            try source.query("""
                INSERT INTO measurements
                SELECT i, date '2024-01-01' + i * 3, i * 1.25, CASE WHEN i % 9 = 0 THEN NULL ELSE 'row ' || i END
                FROM generate_series(1, \(rows)) i
                """)
        }
    }

    /// Tables in the SQLite target (without SQLite's own).
    private func sqliteTables() throws -> Set<String> {
        let db = try SQLiteDatabase(path: sqlitePath)
        return Set(try db.query("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'").compactMap { $0[0] })
    }

    private func rowsPerPartition() throws -> [String: Int] {
        var counts: [String: Int] = [:]
        for row in try source.query("SELECT tableoid::regclass::text, count(*) FROM measurements GROUP BY 1") {
            counts[row[0]!] = Int(row[1]!)
        }
        return counts
    }

    /// The targets hold `public.measurements` only, no table named after a partition.
    private func assertNoPartitionTablesAtTargets(file: StaticString = #filePath, line: UInt = #line) throws {
        let lite = try sqliteTables()
        for name in Self.partitionNames {
            XCTAssertEqual(try target.scalar("SELECT to_regclass($1) IS NULL", ["public." + name]), "t",
                           "the PostgreSQL target must not hold a table for partition \(name)" + logTail, file: file, line: line)
            XCTAssertFalse(lite.contains(name), "the SQLite target must not hold a table for partition \(name): \(lite.sorted())",
                           file: file, line: line)
        }
        XCTAssertTrue(lite.contains("measurements"), "the SQLite target holds measurements: \(lite.sorted())", file: file, line: line)
    }

    /// N from backfill's last line, `backfill: copied N rows of …`.
    private func copiedRows(_ output: String) -> Int? {
        guard let range = output.range(of: #"backfill: copied (\d+) rows"#, options: .regularExpression) else { return nil }
        return Int(output[range].split(separator: " ")[2])
    }

    // MARK: A. Snapshot, stream and backfill of a partitioned table

    func testPartitionedTableIsCapturedThroughItsRoot() throws {
        try createMeasurements(preload: 300)
        XCTAssertEqual(try rowsPerPartition().count, 3, "the preload spans the three partitions")
        try writeConfig(tables: ["public.measurements"])
        let daemon = try startDaemon()
        try waitForSlotActive()
        let db = try source.connect()
        // Sluice created the publication; it publishes changes as the root's.
        XCTAssertEqual(try source.scalar("SELECT pubviaroot::text FROM pg_publication WHERE pubname = 'sluice_app'"), "true",
                       "publication sluice_app must be created WITH (publish_via_partition_root = true)" + logTail)

        // The snapshot: the preloaded rows, once, in one table.
        var end = try commitMarked("UPDATE measurements SET note = 'after snapshot' WHERE id = 1", on: db)
        try waitForTargets(lsn: end)
        try assertTargetsEqualSource("public.measurements")

        // Inserts into each partition, in one transaction.
        try db.execute("""
            INSERT INTO measurements
            SELECT 1000 + i, (ARRAY[date '2024-06-01', date '2025-06-01', date '2026-06-01'])[1 + i % 3] + i, i * 0.5, 'streamed ' || i
            FROM generate_series(1, 30) i
            """)
        // Updates that stay inside their partition (one of them changes taken, part of the key, within 2024).
        try db.execute("UPDATE measurements SET value = value + 1, note = 'updated in place' WHERE id % 10 = 0")
        try db.execute("UPDATE measurements SET taken = date '2024-12-31' WHERE id = 1003")  // 2024-06-04 → 2024-12-31
        // Updates that move rows to another partition: 2024 → 2025, 2026 → 2024, in one transaction.
        let movedForward = try source.query("SELECT id FROM measurements WHERE taken < '2025-01-01' AND id BETWEEN 1 AND 40").map { $0[0]! }
        let movedBack = try source.query("SELECT id FROM measurements WHERE taken >= '2026-01-01' AND id BETWEEN 250 AND 270").map { $0[0]! }
        XCTAssertFalse(movedForward.isEmpty)
        XCTAssertFalse(movedBack.isEmpty)
        try db.execute("""
            BEGIN;
            UPDATE measurements SET taken = taken + 366, note = 'moved forward' WHERE taken < '2025-01-01' AND id BETWEEN 1 AND 40;
            UPDATE measurements SET taken = taken - 731, value = -value, note = 'moved back' WHERE taken >= '2026-01-01' AND id BETWEEN 250 AND 270;
            COMMIT;
            """)
        // A row moved twice in one transaction, and one moved and deleted.
        try db.execute("""
            BEGIN;
            UPDATE measurements SET taken = date '2025-03-03' WHERE id = 41;
            UPDATE measurements SET taken = date '2026-03-03', note = 'moved twice' WHERE id = 41;
            UPDATE measurements SET taken = date '2026-04-04' WHERE id = 42;
            DELETE FROM measurements WHERE id = 42;
            COMMIT;
            """)
        // Deletes: scattered, and a range inside one partition.
        try db.execute("DELETE FROM measurements WHERE id % 7 = 0")
        try db.execute("DELETE FROM measurements WHERE taken BETWEEN '2025-02-01' AND '2025-02-28'")

        end = try commitMarked("UPDATE measurements SET note = 'before new partitions' WHERE id = 3", on: db)
        try waitForTargets(lsn: end)
        try assertTargetsEqualSource("public.measurements")

        // A partition created later, and an empty table attached as one.
        try db.execute("CREATE TABLE measurements_2027 PARTITION OF measurements FOR VALUES FROM ('2027-01-01') TO ('2028-01-01')")
        try db.execute("INSERT INTO measurements SELECT 2000 + i, date '2027-01-01' + i * 5, i, '2027 ' || i FROM generate_series(1, 40) i")
        try db.execute("""
            CREATE TABLE measurements_2028 (LIKE measurements INCLUDING ALL);
            ALTER TABLE measurements ATTACH PARTITION measurements_2028 FOR VALUES FROM ('2028-01-01') TO ('2029-01-01');
            """)
        try db.execute("INSERT INTO measurements SELECT 3000 + i, date '2028-01-01' + i * 5, i * 2, '2028 ' || i FROM generate_series(1, 30) i")
        // Written to the leaf directly: still published as the root's change.
        try db.execute("INSERT INTO measurements_2028 VALUES (3999, '2028-12-31', 99.99, 'into the leaf')")
        try db.execute("UPDATE measurements SET value = value * 10, note = 'updated 2027' WHERE id BETWEEN 2001 AND 2010")
        try db.execute("UPDATE measurements_2028 SET note = 'updated in the leaf' WHERE id BETWEEN 3001 AND 3005")
        // Moves into and between the new partitions.
        try db.execute("UPDATE measurements SET taken = taken + 365, note = 'moved to 2028' WHERE id BETWEEN 2011 AND 2015")
        try db.execute("UPDATE measurements SET taken = date '2027-07-07', note = 'moved to 2027' WHERE id IN (1003, 1006)")
        try db.execute("DELETE FROM measurements WHERE id BETWEEN 3020 AND 3025 OR id = 2040")
        end = try commitMarked("UPDATE measurements SET note = 'last' WHERE id = 2001", on: db)
        try waitForTargets(lsn: end)

        let partitions = try rowsPerPartition()
        XCTAssertEqual(partitions.count, 5, "the source rows span five partitions: \(partitions)")
        try assertTargetsEqualSource("public.measurements")
        // Each moved row is at each target once, under its new key.
        let moved = movedForward + movedBack + ["41", "1003", "1006", "2011", "2015"]
        let lite = try SQLiteDatabase(path: sqlitePath)
        for id in moved {
            let want = try source.scalar("SELECT count(*)::text || ' ' || coalesce(max(taken)::text, '-') FROM measurements WHERE id = $1", [id])
            XCTAssertEqual(try target.scalar("SELECT count(*)::text || ' ' || coalesce(max(taken)::text, '-') FROM public.measurements WHERE id = $1", [id]),
                           want, "moved row \(id) at the PostgreSQL target")
            XCTAssertEqual(try lite.query("SELECT count(*) || ' ' || coalesce(max(taken), '-') FROM measurements WHERE id = ?", [id]).first?[0],
                           want, "moved row \(id) at the SQLite target")
        }
        XCTAssertEqual(try target.scalar("SELECT count(*) FROM public.measurements WHERE id = 42"), "0", "a row moved, then deleted")
        try assertNoPartitionTablesAtTargets()
        // The PostgreSQL target keeps the root's key.
        XCTAssertEqual(try target.scalar("""
            SELECT string_agg(a.attname, ',' ORDER BY a.attnum) FROM pg_index i
            JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
            WHERE i.indrelid = to_regclass('public.measurements') AND i.indisprimary
            """), "id,taken", "the PostgreSQL target's primary key")

        // Backfill through the root, with the daemon running: first damage the targets, so that only a
        // copy of every partition's rows makes them exact again.
        try target.query("DELETE FROM public.measurements WHERE id % 5 = 1; UPDATE public.measurements SET note = 'damaged' WHERE id % 5 = 2")
        try lite.execute("DELETE FROM measurements WHERE id % 5 = 1; UPDATE measurements SET note = 'damaged' WHERE id % 5 = 2")
        let result = try sluice(["backfill", "--config", configPath, "--table", "public.measurements"], timeout: 240)
        XCTAssertEqual(result.status, 0, "sluice backfill --table public.measurements: " + result.describe + logTail)
        XCTAssertTrue(daemon.isRunning, "the daemon keeps running through the backfill" + logTail)
        // It copied the root's rows: every partition's, once.
        XCTAssertEqual(copiedRows(result.err), Int(try source.scalar("SELECT count(*) FROM measurements") ?? ""),
                       "backfill copies every row of every partition once: " + result.describe)
        XCTAssertTrue(result.err.contains("replica") && result.err.contains("local"), "applied by both sinks: " + result.describe)
        try assertTargetsEqualSource("public.measurements")
        try assertNoPartitionTablesAtTargets()

        // The stream goes on after the backfill.
        end = try commitMarked("""
            INSERT INTO measurements VALUES (5000, '2024-02-29', 1, 'after backfill'), (5001, '2028-02-29', 2, 'after backfill');
            UPDATE measurements SET taken = date '2024-12-24', note = 'moved after backfill' WHERE id = 2002;
            """, on: db)
        try waitForTargets(lsn: end)
        try assertTargetsEqualSource("public.measurements")
        try assertNoPartitionTablesAtTargets()
        XCTAssertEqual(daemon.terminate(), 0, "clean exit on SIGTERM" + logTail)
    }

    // MARK: B. A user publication that does not publish via the partition root

    func testUserPublicationWithoutViaRootIsRefusedWithTheFix() throws {
        try createMeasurements(preload: 20)
        try source.query("CREATE PUBLICATION mine FOR TABLE measurements")
        try writeConfig(tables: ["public.measurements"], sourceExtra: ["publication: mine"])

        let check = try sluice(["check", "--config", configPath], timeout: 60)
        XCTAssertEqual(check.status, 2, "sluice check must refuse a publication that publishes the partitions: " + check.describe)
        XCTAssertTrue(check.all.contains("publish_via_partition_root"), "check names the option: " + check.describe)
        XCTAssertTrue(check.all.contains("ALTER PUBLICATION"), "check prints the SQL that fixes it: " + check.describe)

        let run = try sluice(["run", "--config", configPath], timeout: 60)
        XCTAssertFalse(run.timedOut, "sluice run must stop by itself: " + run.describe)
        XCTAssertEqual(run.status, 2, "sluice run must exit 2 (bad configuration): " + run.describe)
        XCTAssertTrue(run.all.contains("publish_via_partition_root"), "run names the option: " + run.describe)
        // Refused before anything is created or changed.
        XCTAssertEqual(try source.scalar("SELECT count(*) FROM pg_replication_slots"), "0", "no slot created: " + run.describe)
        XCTAssertEqual(try source.scalar("SELECT pubviaroot::text FROM pg_publication WHERE pubname = 'mine'"), "false",
                       "the user's publication is left as it is")
        XCTAssertEqual(try target.scalar("SELECT to_regclass('public.measurements') IS NULL"), "t", "no target table created")

        // The fix it names makes the configuration good.
        try source.query("ALTER PUBLICATION mine SET (publish_via_partition_root = true)")
        let fixed = try sluice(["check", "--config", configPath], timeout: 60)
        XCTAssertEqual(fixed.status, 0, "after ALTER PUBLICATION mine SET (publish_via_partition_root = true): " + fixed.describe)
    }

    // MARK: C. Changes of a table the publication sends but Sluice does not capture

    func testChangesOfUncapturedTablesAreCountedAndLoggedOnce() throws {
        try source.query("""
            CREATE TABLE kept (id int PRIMARY KEY, v text);
            CREATE TABLE other (id int PRIMARY KEY, v text);
            CREATE PUBLICATION mine FOR TABLE kept, other;
            """)
        let port = try freePort()
        try writeConfig(tables: ["public.kept"], sourceExtra: ["publication: mine"],
                        topExtra: ["metrics:", "  listen: \"127.0.0.1:\(port)\""])
        let daemon = try startDaemon()
        try waitForSlotActive()
        let db = try source.connect()

        // Changes to `other`, mixed with `kept`'s and on their own: 5 + 3 + 1 + 3 + 2 = 14.
        var otherChanges = 0
        try db.execute("BEGIN; INSERT INTO kept SELECT i, 'k' || i FROM generate_series(1, 5) i; INSERT INTO other SELECT i, 'o' || i FROM generate_series(1, 5) i; COMMIT")
        otherChanges += 5
        try db.execute("BEGIN; UPDATE other SET v = 'changed' WHERE id <= 3; INSERT INTO kept VALUES (6, 'k6'); COMMIT")
        otherChanges += 3
        try db.execute("BEGIN; DELETE FROM other WHERE id = 5; UPDATE kept SET v = 'changed' WHERE id = 2; COMMIT")
        otherChanges += 1
        try db.execute("INSERT INTO other SELECT i, 'only other' FROM generate_series(10, 12) i")
        otherChanges += 3
        try db.execute("UPDATE other SET v = 'again' WHERE id IN (10, 11)")
        otherChanges += 2
        let end = try commitMarked("DELETE FROM kept WHERE id = 3; INSERT INTO kept VALUES (7, 'last')", on: db)
        try waitForTargets(lsn: end)
        try assertTargetsEqualSource("public.kept")

        // Counted per table in the metrics.
        var samples: [OpsSample] = []
        try eventually(timeout: 30, "sluice_source_ignored_changes_total{source=\"app\",table=\"public.other\"} >= \(otherChanges)" + logTail) {
            let (status, body) = try opsHTTPGet(port: port, path: "/metrics")
            guard status == 200 else { return false }
            samples = opsParseMetrics(body)
            return (opsMetric(samples, "sluice_source_ignored_changes_total", ["source": "app", "table": "public.other"]) ?? 0)
                >= Double(otherChanges)
        }
        XCTAssertNil(opsMetric(samples, "sluice_source_ignored_changes_total", ["source": "app", "table": "public.kept"]),
                     "kept's changes are captured, not ignored")

        // Logged once for the table, not once per change.
        let mentions = daemon.log.split(separator: "\n").filter { $0.contains("public.other") && $0.contains("not captured") }
        XCTAssertEqual(mentions.count, 1, "one log line saying public.other is not captured, got:\n\(mentions.joined(separator: "\n"))" + logTail)

        // And not applied anywhere.
        XCTAssertEqual(try target.scalar("SELECT to_regclass('public.other') IS NULL"), "t", "the PostgreSQL target holds no table other")
        XCTAssertFalse(try sqliteTables().contains("other"), "the SQLite target holds no table other")
        XCTAssertEqual(daemon.terminate(), 0, "clean exit on SIGTERM" + logTail)
    }
}

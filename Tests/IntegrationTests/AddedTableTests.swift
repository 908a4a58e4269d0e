import Foundation
import XCTest

/// A table added to `tables:` after the first run gets its existing rows copied automatically (with
/// `snapshot: initial`), through the backfill path while writes to it go on; with `snapshot: never`
/// the log says how to copy them.
final class AddedTableTests: SinkTestCase {
    override var fixtureName: String { "addedtable" }

    func testTableAddedLaterIsCopiedThenStreamed() throws {
        try source.query("""
            CREATE TABLE a (id int PRIMARY KEY, note text);
            INSERT INTO a SELECT i, 'a' FROM generate_series(1, 100) i;
            CREATE TABLE b (id int PRIMARY KEY, note text);
            INSERT INTO b SELECT i, 'before' FROM generate_series(1, 3000) i;
            """)
        try writeConfig(tables: ["public.a"])
        var daemon = try startDaemon()
        try waitForTargets(lsn: try commitMarked("INSERT INTO a VALUES (101, 'a')"))
        XCTAssertEqual(daemon.terminate(timeout: 20), 0, logTail)
        XCTAssertEqual(try target.scalar("SELECT to_regclass('public.b')::text"), nil, "b is not captured yet")

        // b joins: its 3,000 rows were never snapshotted; rows change while it is copied.
        try writeConfig(tables: ["public.a", "public.b"])
        daemon = try startDaemon()
        for round in 0..<5 {
            try commitMarked("UPDATE b SET note = 'changed \(round)' WHERE id % 7 = \(round); INSERT INTO b VALUES (\(3001 + round), 'new')")
        }
        let last = try commitMarked("DELETE FROM b WHERE id <= 10")
        try waitForTargets(lsn: last)
        try eventually(timeout: 120, "b's existing rows to reach both targets" + logTail) {
            try target.count("public.b") == 2995 && sqliteCount("public.b") == 2995
        }
        let columns = try sourceColumns("public.b")
        XCTAssertEqual(try postgresRows(target, "public.b", columns: columns.map(\.name)),
                       try postgresRows(source, "public.b", columns: columns.map(\.name)), "PostgreSQL target equals the source")
        XCTAssertEqual(try sqliteRows("public.b", columns: columns), try expectedSQLiteRows("public.b", columns: columns),
                       "SQLite target equals the source")
        XCTAssertTrue(daemon.log.contains("new tables join the capture"), logTail)
        XCTAssertEqual(daemon.terminate(timeout: 20), 0, logTail)
    }

    func testWithSnapshotNeverTheLogSaysHowToCopy() throws {
        try source.query("""
            CREATE TABLE a (id int PRIMARY KEY);
            CREATE TABLE b (id int PRIMARY KEY);
            INSERT INTO b SELECT generate_series(1, 10);
            """)
        try writeConfig(tables: ["public.a"], sourceExtra: ["snapshot: never"])
        var daemon = try startDaemon()
        try waitForSlotActive()
        try waitForTargets(lsn: try commitMarked("INSERT INTO a VALUES (1)"))
        XCTAssertEqual(daemon.terminate(timeout: 20), 0, logTail)
        try writeConfig(tables: ["public.a", "public.b"], sourceExtra: ["snapshot: never"])
        daemon = try startDaemon()
        try eventually(timeout: 60, "the log to say how to copy b" + logTail) {
            daemon.log.contains("sluice backfill --config") && daemon.log.contains("--table public.b")
        }
        try waitForTargets(lsn: try commitMarked("INSERT INTO b VALUES (11)"))
        XCTAssertEqual(try target.count("public.b"), 1, "only the streamed row: existing ones are not copied with snapshot: never")
        XCTAssertEqual(daemon.terminate(timeout: 20), 0, logTail)
    }
}

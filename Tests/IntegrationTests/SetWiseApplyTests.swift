import Foundation
import SluiceWire
import XCTest

/// Runs of updates and deletes of a keyed table reach the PostgreSQL target set-wise (COPY into a
/// staging table, then `DELETE … USING` / `UPDATE … FROM`), folding several changes of one key in order.
/// Each test mixes the cases a fold can get wrong inside runs long enough to go set-wise, and compares
/// both targets with the source.
final class SetWiseApplyTests: SinkTestCase {
    override var fixtureName: String { "setwise" }

    /// Updates, deletes and inserts of the same keys in one transaction and across transactions,
    /// primary-key changes (a shift and a swap through a free key), and rows deleted and inserted again.
    func testFoldedChangesOfTheSameKeysStayExact() throws {
        try source.query("""
            CREATE TABLE acct (id int PRIMARY KEY, balance numeric(12,2) NOT NULL, owner text NOT NULL, note text);
            INSERT INTO acct SELECT i, i, 'owner ' || i, NULL FROM generate_series(1, 3000) i;
            """)
        try writeConfig(tables: ["public.acct"])
        let daemon = try startDaemon()
        try waitForSlotActive()
        let db = try source.connect()
        try db.execute("""
            BEGIN;
            UPDATE acct SET balance = balance + 1 WHERE id <= 1000;
            UPDATE acct SET balance = balance * 2, note = 'twice' WHERE id BETWEEN 500 AND 700;
            DELETE FROM acct WHERE id BETWEEN 600 AND 650;
            INSERT INTO acct SELECT i, -i, 'again ' || i, 'reinserted' FROM generate_series(620, 640) i;
            UPDATE acct SET note = 'after reinsert' WHERE id BETWEEN 630 AND 635;
            INSERT INTO acct SELECT i, i, 'new ' || i, NULL FROM generate_series(5001, 5400) i;
            UPDATE acct SET owner = 'updated new' WHERE id BETWEEN 5001 AND 5100;
            DELETE FROM acct WHERE id BETWEEN 5050 AND 5060;
            UPDATE acct SET id = id + 10000 WHERE id BETWEEN 2001 AND 2300;
            UPDATE acct SET balance = 0 WHERE id BETWEEN 12001 AND 12100;
            UPDATE acct SET id = 99999 WHERE id = 1;
            UPDATE acct SET id = 1 WHERE id = 2;
            UPDATE acct SET id = 2 WHERE id = 99999;
            DELETE FROM acct WHERE id BETWEEN 2800 AND 3000;
            COMMIT;
            """)
        for round in 0..<3 {
            try db.execute("""
                BEGIN;
                UPDATE acct SET balance = balance + \(round), note = 'round \(round)' WHERE id % 3 = \(round);
                DELETE FROM acct WHERE id % 97 = \(round);
                INSERT INTO acct SELECT i, \(round), 'round row', NULL FROM generate_series(\(20000 + round * 200), \(20199 + round * 200)) i;
                COMMIT;
                """)
        }
        let end = try commitMarked("UPDATE acct SET note = 'last' WHERE id BETWEEN 100 AND 400", on: db)
        try waitForTargets(lsn: end)
        try assertTargetsEqualSource("public.acct")
        XCTAssertEqual(try target.scalar("SELECT count(*) FROM public.acct WHERE id BETWEEN 2001 AND 2300"), "0", "moved keys left their old place")
        XCTAssertEqual(daemon.terminate(), 0, logTail)
    }

    /// Unchanged TOASTed values (not sent by pgoutput) are kept, alone and folded into a row inserted
    /// or updated earlier in the run; keyless tables (REPLICA IDENTITY FULL, with duplicate rows) are
    /// changed between the keyed runs, and a key change that leaves a TOASTed value unchanged is applied
    /// in order inside a run.
    func testUnchangedToastAndKeylessTablesStayExact() throws {
        try source.query("""
            CREATE TABLE doc (id int PRIMARY KEY, title text, body text, version int);
            ALTER TABLE doc ALTER COLUMN body SET STORAGE EXTERNAL;
            INSERT INTO doc SELECT i, 'title ' || i, repeat(md5(i::text), 200), 0 FROM generate_series(1, 600) i;
            CREATE TABLE events (kind text, n int);
            ALTER TABLE events REPLICA IDENTITY FULL;
            INSERT INTO events SELECT 'k' || (i % 5), i % 3 FROM generate_series(1, 300) i;
            """)
        try writeConfig(tables: ["public.doc", "public.events"])
        let daemon = try startDaemon()
        try waitForSlotActive()
        let db = try source.connect()
        try db.execute("""
            BEGIN;
            UPDATE doc SET version = version + 1 WHERE id <= 400;
            UPDATE doc SET title = 'retitled' WHERE id BETWEEN 100 AND 250;
            UPDATE events SET n = n + 10 WHERE ctid IN (SELECT ctid FROM events WHERE kind = 'k1' LIMIT 7);
            DELETE FROM events WHERE ctid IN (SELECT ctid FROM events WHERE kind = 'k2' LIMIT 5);
            UPDATE doc SET body = repeat('new body ', 500) WHERE id BETWEEN 300 AND 320;
            UPDATE doc SET version = 100 WHERE id BETWEEN 300 AND 320;
            INSERT INTO doc SELECT i, 'fresh', repeat(md5((i * 7)::text), 200), 0 FROM generate_series(1001, 1200) i;
            UPDATE doc SET version = 5 WHERE id BETWEEN 1001 AND 1200;
            UPDATE doc SET id = id + 5000 WHERE id BETWEEN 500 AND 520;
            UPDATE doc SET version = 7 WHERE id BETWEEN 5500 AND 5520;
            DELETE FROM doc WHERE id BETWEEN 590 AND 600;
            INSERT INTO events SELECT 'k9', i FROM generate_series(1, 50) i;
            COMMIT;
            """)
        let end = try commitMarked("UPDATE doc SET version = version + 1 WHERE id % 2 = 0", on: db)
        try waitForTargets(lsn: end)
        try assertTargetsEqualSource("public.doc")
        try assertTargetsEqualSource("public.events")
        XCTAssertEqual(try target.scalar("SELECT count(*) FROM public.doc WHERE body IS NULL"), "0", "TOASTed bodies were kept")
        XCTAssertEqual(daemon.terminate(), 0, logTail)
    }

    /// Killed while a set-wise run is being copied into its staging table, the sink's open transaction
    /// (the run, and the position it would have stored) is lost whole; the restart applies it once.
    func testCrashMidStagingCopyAppliesTheRunOnce() throws {
        try source.query("""
            CREATE TABLE stock (id int PRIMARY KEY, qty int NOT NULL, label text);
            INSERT INTO stock SELECT i, i, repeat('x', 100) FROM generate_series(1, 20000) i;
            """)
        try writeConfig(tables: ["public.stock"])
        var daemon = try startDaemon()
        try waitForSlotActive()
        try waitForTargets(lsn: try commitMarked("UPDATE stock SET qty = 0 WHERE id = 1"))
        XCTAssertEqual(daemon.terminate(), 0, logTail)
        // While the daemon is down: only updates and deletes, so the first COPY the sink sends is a run's.
        let end = try commitMarked("""
            UPDATE stock SET qty = qty + 1, label = 'updated' WHERE id <= 15000;
            DELETE FROM stock WHERE id % 4 = 0;
            UPDATE stock SET qty = -qty WHERE id % 5 = 0;
            """)
        daemon = try startDaemon(environment: ["SLUICE_FAILPOINTS": "sink.postgres.mid_change_copy@1"])
        let status = daemon.wait(timeout: 90)
        XCTAssertEqual(status, 128 + SIGKILL, "killed at the failpoint" + logTail)
        XCTAssertTrue(((try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "").contains("failpoint sink.postgres.mid_change_copy fired"), logTail)
        XCTAssertLessThan(try XCTUnwrap(postgresTargetLSN()), end, "the crashed run stored no position" + logTail)
        daemon = try startDaemon()
        try waitForTargets(lsn: end)
        try assertTargetsEqualSource("public.stock")
        XCTAssertEqual(daemon.terminate(), 0, logTail)
    }
}

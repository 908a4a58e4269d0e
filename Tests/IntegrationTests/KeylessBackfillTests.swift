import Foundation
import SluiceWire
import XCTest

/// `sluice backfill` with no `--table` copies every captured table, a keyless one (REPLICA IDENTITY
/// FULL, duplicate rows) whole from a snapshot at a known stream position, while writers change it:
/// afterwards both targets, damaged on purpose before, equal the source as multisets.
final class KeylessBackfillTests: SinkTestCase {
    override var fixtureName: String { "keylessfill" }

    func testKeylessTableIsBackfilledExactlyUnderConcurrentWrites() throws {
        try source.query("""
            CREATE TABLE ledger (account int, amount int, note text);
            ALTER TABLE ledger REPLICA IDENTITY FULL;
            INSERT INTO ledger SELECT i % 40, i % 3, 'dup' FROM generate_series(1, 3000) i;  -- 25 copies of each row
            CREATE TABLE accounts (id int PRIMARY KEY, name text);
            INSERT INTO accounts SELECT i, 'a' || i FROM generate_series(1, 200) i;
            """)
        try writeConfig(tables: ["public.ledger", "public.accounts"])
        let daemon = try startDaemon()
        try waitForSlotActive()
        var end = try commitMarked("INSERT INTO ledger VALUES (0, 0, 'dup')")
        try waitForTargets(lsn: end)

        // Damage both targets: rows missing, extra duplicates, a changed row.
        let damage = """
            DELETE FROM ledger WHERE account % 5 = 0;
            INSERT INTO ledger VALUES (1, 1, 'dup'), (1, 1, 'dup'), (777, 7, 'not at the source');
            UPDATE ledger SET note = 'changed' WHERE account = 3;
            DELETE FROM accounts WHERE id % 4 = 0;
            """
        try target.query(damage)
        let lite = try SQLiteDatabase(path: sqlitePath)
        for statement in damage.split(separator: ";") where !statement.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty {
            try lite.execute(String(statement))
        }

        // Writers insert, update and delete duplicate rows (one of several identical ones at a time).
        let url = source.url
        let stats = SinkTestStats()
        let stop = SinkTestFlag()
        let writer = SinkTestWorker("keyless-writer", stop: stop) {
            guard let db = try? PGConnection(url: url) else { return stats.count("connect failed") }
            for sequence in 1...5000 where !stop.isSet {
                let account = Int.random(in: 0..<40)
                runWorkloadTransaction(on: db, sequence: sequence, stats: stats, label: "keyless writer: ") {
                    try db.execute("INSERT INTO ledger VALUES (\(account), \(sequence % 3), 'dup')")
                    try db.execute("""
                        UPDATE ledger SET amount = amount + 10 WHERE ctid = (SELECT ctid FROM ledger
                        WHERE account = \((account + 7) % 40) LIMIT 1)
                        """)
                    try db.execute("DELETE FROM ledger WHERE ctid = (SELECT ctid FROM ledger WHERE account = \((account + 13) % 40) LIMIT 1)")
                    try db.execute("UPDATE accounts SET name = 'w\(sequence)' WHERE id = \(1 + sequence % 200)")
                }
                usleep(3_000)
            }
        }
        defer { writer.stop() }
        try eventually(timeout: 30, "the writers to commit") { stats["committed"] >= 30 }

        let result = try sluice(["backfill", "--config", configPath], timeout: 180)
        XCTAssertEqual(result.status, 0, result.describe + logTail)
        XCTAssertTrue(result.err.contains("public.ledger"), result.describe)
        let duringBackfill = stats["committed"]
        try eventually(timeout: 30, "more writes after the backfill") { stats["committed"] >= duringBackfill + 20 }
        writer.stop()
        XCTAssertEqual(stats["failed"], 0, stats.summary + "\(stats.notes)")

        end = try commitMarked("UPDATE accounts SET name = 'final' WHERE id = 1")
        try waitForTargets(lsn: end)
        try assertTargetsEqualSource("public.ledger")
        try assertTargetsEqualSource("public.accounts")
        XCTAssertEqual(try target.scalar("SELECT count(*) FROM ledger WHERE account = 777"), "0")
        let tail = try sluice(["tail", "app", "--config", configPath, "--from-beginning", "--json"])
        XCTAssertTrue(tail.out.contains(#""op":"truncate","table":"public.ledger""#) && tail.out.contains(#""backfill":true"#),
                      "the copy opens with a truncate flagged backfill")
        print("keyless backfill: writers \(stats.summary), source rows \(try source.count("ledger"))")
        XCTAssertEqual(daemon.terminate(), 0, logTail)
    }
}

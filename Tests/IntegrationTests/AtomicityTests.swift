import Foundation
import SluiceWire
import XCTest

/// Concurrent transfers keep the total balance constant on the source; a reader sampling both targets
/// many times a second must never see a different total — a target never shows half a transaction.
final class AtomicityTests: SinkTestCase {
    override var fixtureName: String { "atomic" }

    static let accounts = 40
    static let total = 40 * 1_000

    func testReadersOfBothTargetsNeverSeeHalfATransfer() throws {
        try source.query("""
            CREATE TABLE accounts (id int PRIMARY KEY, balance bigint NOT NULL, note text);
            INSERT INTO accounts SELECT i, 1000, 'account ' || i FROM generate_series(1, \(Self.accounts)) i;
            """)
        try writeConfig(tables: ["public.accounts"])
        let daemon = try startDaemon()
        try waitForSlotActive()

        let stop = SinkTestFlag()
        let stats = SinkTestStats()
        let url = source.url
        let total = Self.total

        // Writers: each transaction moves money between two accounts (two UPDATEs); some open a new
        // account funded from an existing one (INSERT + UPDATE), some close an opened account into
        // another (DELETE + UPDATE). Every statement is checked to touch one row, else it rolls back.
        let writers = (0..<4).map { number in
            SinkTestWorker("writer-\(number)") {
                do {
                    let db = try PGConnection(url: url)
                    var nextID = 1_000_000 * (number + 1)
                    while !stop.isSet {
                        do {
                            try db.execute("BEGIN")
                            let roll = Int.random(in: 0..<10)
                            var touched: [Int] = []
                            if roll == 0 {
                                nextID += 1
                                let from = Int.random(in: 1...Self.accounts)
                                touched.append(try db.execute("UPDATE accounts SET balance = balance - 50 WHERE id = $1 AND balance >= 50", [String(from)]).affectedRows)
                                touched.append(try db.execute("INSERT INTO accounts VALUES ($1, 50, 'opened')", [String(nextID)]).affectedRows)
                            } else if roll == 1 {
                                let into = Int.random(in: 1...Self.accounts)
                                let closed = try db.execute("""
                                    DELETE FROM accounts WHERE id = (SELECT id FROM accounts WHERE id > 1000000 ORDER BY random() LIMIT 1 FOR UPDATE SKIP LOCKED)
                                    RETURNING balance
                                    """)
                                touched.append(closed.rowCount)
                                if closed.rowCount == 1 {
                                    touched.append(try db.execute("UPDATE accounts SET balance = balance + $1 WHERE id = $2",
                                                                  [closed.string(0, 0), String(into)]).affectedRows)
                                }
                            } else {
                                let a = Int.random(in: 1...Self.accounts)
                                var b = Int.random(in: 1...Self.accounts)
                                if b == a { b = a % Self.accounts + 1 }
                                let amount = Int.random(in: 1...100)
                                // Lock in id order so writers do not deadlock (they may still; that rolls back).
                                for (id, delta) in [(a, -amount), (b, amount)].sorted(by: { $0.0 < $1.0 }) {
                                    touched.append(try db.execute("UPDATE accounts SET balance = balance + $1, note = $2 WHERE id = $3",
                                                                  [String(delta), "moved \(delta)", String(id)]).affectedRows)
                                }
                            }
                            if touched.allSatisfy({ $0 == 1 }) {
                                try db.execute("COMMIT")
                                stats.count("committed")
                            } else {
                                try db.execute("ROLLBACK")
                                stats.count("skipped")
                            }
                        } catch {
                            _ = try? db.execute("ROLLBACK")
                            stats.count("failed")
                            stats.note("writer \(number): \(error)")
                        }
                    }
                } catch {
                    stats.note("writer \(number) cannot connect: \(error)")
                }
            }
        }

        // The reader: samples both targets as fast as it can while the writers run.
        let sqlitePath = self.sqlitePath
        let targetURL = target.url
        let violations = SinkTestStats()
        let reader = SinkTestWorker("reader") {
            var pg: PGConnection?
            var lite: SQLiteDatabase?
            var seenPG = Set<String>()
            var seenLite = Set<String>()
            while !stop.isSet {
                do {
                    if pg == nil { pg = try PGConnection(url: targetURL) }
                    // One statement sees one snapshot of the target.
                    let result = try pg!.execute("SELECT sum(balance)::text, count(*)::text, sum(balance * id)::text FROM accounts")
                    if result.string(0, 0) == nil, !seenPG.isEmpty {
                        violations.note("PostgreSQL target: empty after it held the accounts")
                    }
                    if let sum = result.string(0, 0) {
                        stats.count("pg samples")
                        seenPG.insert(result.string(0, 2) ?? "")
                        if Int(sum) != total { violations.note("PostgreSQL target: sum \(sum) over \(result.string(0, 1)!) rows") }
                    }
                } catch {
                    stats.count("pg not ready")  // the table does not exist before the snapshot lands
                }
                do {
                    if lite == nil, FileManager.default.fileExists(atPath: sqlitePath) { lite = try SQLiteDatabase(path: sqlitePath) }
                    if let lite {
                        let row = try lite.query("SELECT sum(balance), count(*), sum(balance * id) FROM accounts")
                        if row.first?[0] == nil, !seenLite.isEmpty {
                            violations.note("SQLite target: empty after it held the accounts")
                        }
                        if let sum = row.first?[0] {
                            stats.count("sqlite samples")
                            seenLite.insert(row[0][2] ?? "")
                            if Int(sum) != total { violations.note("SQLite target: sum \(sum) over \(row[0][1]!) rows") }
                        }
                    }
                } catch {
                    stats.count("sqlite not ready")
                }
                usleep(5_000)
            }
            stats.count("pg distinct states", seenPG.count)
            stats.count("sqlite distinct states", seenLite.count)
        }

        defer {
            stop.set()
            writers.forEach { $0.join() }
            reader.join()
        }
        let started = Date()
        while Date().timeIntervalSince(started) < 12 && violations.notes.isEmpty { usleep(100_000) }
        stop.set()
        writers.forEach { $0.join() }
        reader.join()

        XCTAssertEqual(violations.notes, [], "a target showed a total other than \(total): half a transaction was visible" + logTail)
        XCTAssertEqual(try source.scalar("SELECT sum(balance) FROM accounts"), String(total), "the workload keeps the total")
        print("atomicity workload: \(stats.summary)")
        XCTAssertGreaterThan(stats["committed"], 200, "the writers committed transfers: \(stats.summary) \(stats.notes)")
        XCTAssertGreaterThan(stats["pg samples"], 100, "the PostgreSQL target was sampled: \(stats.summary)" + logTail)
        XCTAssertGreaterThan(stats["sqlite samples"], 100, "the SQLite target was sampled: \(stats.summary)" + logTail)
        // The samples saw the targets move (many intermediate states), not just one state.
        XCTAssertGreaterThan(stats["pg distinct states"], 10, "the PostgreSQL target advanced while sampled: \(stats.summary)" + logTail)
        XCTAssertGreaterThan(stats["sqlite distinct states"], 10, "the SQLite target advanced while sampled: \(stats.summary)" + logTail)

        let db = try source.connect()
        let end = try commitMarked("UPDATE accounts SET note = 'final' WHERE id = 1", on: db)
        try waitForTargets(lsn: end)
        try assertTargetsEqualSource("public.accounts")
        XCTAssertEqual(daemon.terminate(), 0, "clean exit on SIGTERM" + logTail)
    }
}

import Foundation
import SluiceWire
import XCTest

/// SIGKILL `sluice run` at random moments — once during the initial snapshot, then at least eight times
/// while a mixed workload runs — and restart it each time. Afterwards both targets hold exactly the
/// source's rows: nothing lost, nothing applied twice (a duplicated row of a keyless table shows).
final class SinkCrashLoopTests: SinkTestCase {
    override var fixtureName: String { "sinkcrash" }

    static let tables = ["public.items", "public.tags", "public.journal"]
    /// Rows in `items` before the first start, so the initial snapshot takes a moment.
    static let preloaded = 100_000

    func occurrences(_ text: String) -> Int {
        ((try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "").components(separatedBy: text).count - 1
    }

    func testKillingTheDaemonRepeatedlyKeepsBothTargetsExact() throws {
        try source.query("""
            CREATE TABLE items (id int PRIMARY KEY, val int NOT NULL, note text);
            INSERT INTO items SELECT i, i % 1000, 'item ' || i FROM generate_series(1, \(Self.preloaded)) i;
            CREATE TABLE tags (k int, v text);
            ALTER TABLE tags REPLICA IDENTITY FULL;
            INSERT INTO tags SELECT i % 50, 'dup' FROM generate_series(1, 300) i;  -- 6 identical rows per k
            INSERT INTO tags VALUES (NULL, 'null key'), (NULL, 'null key'), (7, NULL);
            CREATE TABLE journal (id bigserial PRIMARY KEY, writer int, payload text);
            """)
        try writeConfig(tables: Self.tables)

        let stop = SinkTestFlag()
        let stats = SinkTestStats()
        let url = source.url
        let writers = (0..<2).map { number in
            SinkTestWorker("writer-\(number)") { Self.workload(url: url, writer: number, stop: stop, stats: stats) }
        }
        defer {
            stop.set()
            writers.forEach { $0.join() }
        }

        // First incarnation: killed while the initial snapshot is being taken.
        var daemon = try startDaemon()
        try eventually(timeout: 30, "the replication slot to be created" + logTail) {
            try source.scalar("SELECT count(*) FROM pg_replication_slots") == "1"
        }
        usleep(UInt32.random(in: 50_000...300_000))
        daemon.kill()
        let killedDuringSnapshot = occurrences("initial snapshot done") == 0
        print("first kill during the initial snapshot: \(killedDuringSnapshot)")
        var kills = 1

        // Second incarnation: takes the snapshot again, and is killed soon after it is in the topic,
        // while the sinks apply its rows.
        daemon = try startDaemon()
        try eventually(timeout: 60, "the initial snapshot to complete" + logTail) { occurrences("initial snapshot done") == 1 }
        usleep(UInt32.random(in: 0...700_000))
        daemon.kill()
        kills += 1

        // Then kill at random moments while the workload streams.
        var killsWhileApplying = 0
        var lastPositions = [try? postgresTargetLSN(), try? sqliteTargetLSN()]
        let started = Date()
        while kills < 10 || Date().timeIntervalSince(started) < 15 {
            daemon = try startDaemon()
            if killsWhileApplying < 3 {
                // Until three have, an incarnation is first seen applying transactions (a target's stored
                // position moves), so its kill lands mid-stream however slow the machine is.
                try eventually(timeout: 120, "incarnation \(kills + 1) to apply transactions" + logTail) {
                    [try? postgresTargetLSN(), try? sqliteTargetLSN()] != lastPositions
                }
                usleep(UInt32.random(in: 0...300_000))
            } else {
                usleep(UInt32.random(in: 300_000...1_500_000))
            }
            daemon.kill()
            kills += 1
            // Did this incarnation apply anything (so the kill likely hit a sink mid-stream)?
            let positions = [try? postgresTargetLSN(), try? sqliteTargetLSN()]
            if positions != lastPositions { killsWhileApplying += 1 }
            lastPositions = positions
        }
        stop.set()
        writers.forEach { $0.join() }
        print("sink crash loop: \(kills) kills, \(killsWhileApplying) after the incarnation applied transactions; workload \(stats.summary)")
        XCTAssertGreaterThanOrEqual(kills, 10)
        XCTAssertGreaterThanOrEqual(killsWhileApplying, 3, "incarnations got to apply transactions between kills" + logTail)
        XCTAssertGreaterThan(stats["committed"], 100, "the workload ran: \(stats.summary) \(stats.notes)")

        // The last incarnation catches up and stops cleanly.
        daemon = try startDaemon()
        try waitForSlotActive()
        let db = try source.connect()
        let end = try commitMarked("INSERT INTO journal (writer, payload) VALUES (-1, 'final')", on: db)
        try waitForTargets(lsn: end, timeout: 150)
        for table in Self.tables { try assertTargetsEqualSource(table) }
        XCTAssertEqual(occurrences("initial snapshot done"), 1, "the snapshot completes once" + logTail)
        XCTAssertEqual(daemon.terminate(), 0, "clean exit on SIGTERM" + logTail)
    }

    /// Small mixed transactions: inserts, updates, deletes and key changes on `items`; duplicate rows
    /// and changes to one of several identical rows on the keyless `tags`; inserts into `journal`.
    static func workload(url: String, writer: Int, stop: SinkTestFlag, stats: SinkTestStats) {
        let preloaded = Self.preloaded
        guard let db = try? PGConnection(url: url) else {
            stats.note("writer \(writer) cannot connect")
            return
        }
        var nextID = 1_000_000 * (writer + 1)
        var sequence = 0
        while !stop.isSet {
            sequence += 1
            runWorkloadTransaction(on: db, sequence: sequence, stats: stats, label: "writer \(writer): ") {
                for _ in 0..<Int.random(in: 1...4) {
                    let id = String(Int.random(in: 1...preloaded))
                    switch Int.random(in: 0..<12) {
                    case 0, 1:
                        nextID += 1
                        try db.execute("INSERT INTO items VALUES ($1, $2, $3)", [String(nextID), String(sequence), "new \(writer)/\(sequence)"])
                    case 2, 3:
                        try db.execute("UPDATE items SET val = val + 1, note = $2 WHERE id = $1", [id, "upd \(writer)/\(sequence)"])
                    case 4:
                        try db.execute("DELETE FROM items WHERE id = $1", [id])
                    case 5:
                        // A primary-key change.
                        nextID += 1
                        try db.execute("UPDATE items SET id = $2, note = 'moved' WHERE id = $1", [id, String(nextID)])
                    case 6:
                        // Identical rows, two or three at once.
                        let k = String(Int.random(in: 0..<60))
                        try db.execute("INSERT INTO tags SELECT $1::int, 'dup' FROM generate_series(1, $2::int)", [k, String(Int.random(in: 2...3))])
                    case 7:
                        // Delete one of several identical rows.
                        try db.execute("DELETE FROM tags WHERE ctid = (SELECT ctid FROM tags WHERE k = $1 AND v = 'dup' LIMIT 1)",
                                       [String(Int.random(in: 0..<60))])
                    case 8:
                        // Update one of several identical rows (it stays a duplicate of other changed ones).
                        try db.execute("UPDATE tags SET v = 'changed' WHERE ctid = (SELECT ctid FROM tags WHERE k = $1 AND v = 'dup' LIMIT 1)",
                                       [String(Int.random(in: 0..<60))])
                    case 9:
                        try db.execute("UPDATE tags SET v = NULL WHERE ctid = (SELECT ctid FROM tags WHERE k = $1 AND v = 'changed' LIMIT 1)",
                                       [String(Int.random(in: 0..<60))])
                    default:
                        try db.execute("INSERT INTO journal (writer, payload) VALUES ($1, $2)", [String(writer), "entry \(sequence) " + String(repeating: "x", count: sequence % 200)])
                    }
                }
            }
            usleep(UInt32.random(in: 0...3_000))
        }
    }
}

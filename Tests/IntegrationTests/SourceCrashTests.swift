import Foundation
import SluiceWire
import XCTest

/// SIGKILL `sluice run` at random moments while thousands of small transactions commit; afterwards
/// the topic holds every committed transaction exactly once, in commit order, and nothing rolled back.
final class SourceCrashTests: DaemonTestCase {
    override var fixtureName: String { "crash" }

    func testKillingTheDaemonRepeatedlyLosesAndDuplicatesNothing() throws {
        try source.query("""
            CREATE TABLE ledger (id bigint PRIMARY KEY, seq int NOT NULL, payload text);
            CREATE TABLE audit (id bigserial PRIMARY KEY, seq int NOT NULL);
            """)
        let config = try writeSourceConfig(tables: ["public.ledger", "public.audit"])

        // The workload: numbered transactions on one connection (so commit order is ours); every
        // tenth rolls back; some touch both tables, some update or delete earlier rows.
        final class Workload: @unchecked Sendable {
            var committed: [(xid: Int, seq: Int)] = []
            var rolledBack: Set<Int> = []
            var done = false
            let lock = NSLock()
        }
        let workload = Workload()
        let url = source.url
        let writer = Thread {
            let db = try! PGConnection(url: url)
            var seq = 0
            while seq < 4000 {
                seq += 1
                try! db.execute("BEGIN")
                let xid = Int(try! db.execute("SELECT txid_current()").string(0, 0)!)!
                try! db.execute("INSERT INTO ledger VALUES (\(seq), \(seq), 'row \(seq)')")
                if seq % 3 == 0 { try! db.execute("INSERT INTO audit (seq) VALUES (\(seq))") }
                if seq % 7 == 0 { try! db.execute("UPDATE ledger SET payload = 'updated \(seq)' WHERE id = \(seq - 1)") }
                if seq % 10 == 0 {
                    try! db.execute("ROLLBACK")
                    workload.lock.lock(); workload.rolledBack.insert(seq); workload.lock.unlock()
                    continue
                }
                try! db.execute("COMMIT")
                workload.lock.lock(); workload.committed.append((xid, seq)); workload.lock.unlock()
            }
            workload.lock.lock(); workload.done = true; workload.lock.unlock()
        }

        var daemon = try startDaemon()
        try eventually("the slot to exist") { try source.scalar("SELECT count(*) FROM pg_replication_slots") == "1" }
        writer.start()
        var kills = 0
        while true {
            workload.lock.lock()
            let finished = workload.done
            workload.lock.unlock()
            if finished && kills >= 5 { break }
            usleep(UInt32.random(in: 150_000...700_000))
            kills += 1
            guard kills % 2 == 1 else {
                daemon.kill()
                daemon = try startDaemon()
                continue
            }
            // Restarted at once, without waiting for the killed one to be gone (as a script might).
            let killed = daemon
            killed.signal(SIGKILL)
            daemon = try startDaemon()
            _ = killed.wait()
        }
        XCTAssertGreaterThanOrEqual(kills, 5)
        let log = (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? ""
        XCTAssertFalse(log.contains("another sluice process"), "a killed holder of data_dir is waited for" + logTail)

        // Let the last incarnation catch up, then stop it gracefully.
        let expected = workload.committed
        try eventually("the last incarnation to stream") {
            try source.scalar("SELECT active FROM pg_replication_slots") == "t"
        }
        let end = try XCTUnwrap(source.scalar("SELECT pg_current_wal_insert_lsn()::text"))
        try eventually(timeout: 120, "the slot to confirm \(end)") {
            let confirmed = try source.scalar("SELECT confirmed_flush_lsn::text FROM pg_replication_slots") ?? "0/0"
            return lsnValue(confirmed) >= lsnValue(end)
        }
        XCTAssertEqual(daemon.terminate(), 0, daemon.log)

        let dump = try TopicDump.read(topic: "app", config: config)
        let streamed = dump.transactions.filter { $0.xid != 0 }
        XCTAssertEqual(streamed.count, expected.count, "each committed transaction once")
        XCTAssertEqual(streamed.map(\.xid), expected.map(\.xid), "in commit order")
        let lsns = streamed.map { lsnValue($0.lsn) }
        XCTAssertEqual(lsns, lsns.sorted())
        XCTAssertEqual(Set(lsns).count, lsns.count)
        // Row contents: each transaction carries exactly its own rows.
        for (transaction, (_, seq)) in zip(streamed, expected) {
            let inserted = transaction.changes.filter { $0["op"] as? String == "insert" && $0["table"] as? String == "public.ledger" }
            XCTAssertEqual(inserted.count, 1)
            let after = inserted.first?["after"] as? [String: Any]
            XCTAssertEqual(after?["seq"] as? Int, seq)
            XCTAssertEqual(after?["payload"] as? String, "row \(seq)")
            let updatesEarlierRow = seq % 7 == 0 && (seq - 1) % 10 != 0  // a rolled-back row is not there to update
            XCTAssertEqual(transaction.changes.count, 1 + (seq % 3 == 0 ? 1 : 0) + (updatesEarlierRow ? 1 : 0))
        }
        let seqs = Set(dump.records.compactMap { ($0["after"] as? [String: Any])?["seq"] as? Int })
        XCTAssertTrue(seqs.isDisjoint(with: workload.rolledBack), "nothing from rolled-back transactions")
    }
}

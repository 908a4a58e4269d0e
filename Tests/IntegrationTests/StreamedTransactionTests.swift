import Foundation
import SluiceWire
import XCTest

/// Large transactions that PostgreSQL streams while they run (pgoutput protocol 2, `streaming 'on'`):
/// with `logical_decoding_work_mem` at its 64kB minimum, every transaction here of more than a few
/// hundred rows reaches Sluice in Stream Start … Stream Stop blocks before its commit.
final class StreamedTransactionTests: SinkTestCase {
    override var fixtureName: String { "streamed" }

    override func setUpWithError() throws {
        try super.setUpWithError()
        try source.query("ALTER SYSTEM SET logical_decoding_work_mem = '64kB'")
        try source.query("SELECT pg_reload_conf()")
        try source.query("""
            CREATE TABLE big (id int PRIMARY KEY, who text NOT NULL, payload text NOT NULL);
            CREATE TABLE side (id int PRIMARY KEY, note text);
            """)
    }

    var stagingDirectory: String { dataDirectory + "/sources/app/streaming" }

    func stagedFiles() -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: stagingDirectory)) ?? []).sorted()
    }

    /// `INSERT`s rows `range` of `big` labelled `who`, ~100 bytes each.
    func insert(_ range: ClosedRange<Int>, _ who: String) -> String {
        "INSERT INTO big SELECT i, '\(who)', md5(i::text) || md5((i * 7)::text) || md5((i * 13)::text) "
            + "FROM generate_series(\(range.lowerBound), \(range.upperBound)) i;"
    }

    /// The slot's streaming and spilling counters: (stream_txns, spill_txns, spill_bytes).
    func slotCounters() throws -> (streamed: Int, spilled: Int, spillBytes: Int) {
        let row = try XCTUnwrap(source.query("SELECT stream_txns, spill_txns, spill_bytes FROM pg_stat_replication_slots").first)
        return (Int(row[0] ?? "") ?? 0, Int(row[1] ?? "") ?? 0, Int(row[2] ?? "") ?? 0)
    }

    /// A large transaction with a rolled-back savepoint and a released one, two large transactions
    /// whose streams interleave (committed in the other order), and a large transaction rolled back:
    /// the targets get exactly the committed rows, the topic each committed transaction once and whole,
    /// and the walsender streamed them rather than spilling them to disk.
    func testStreamedTransactionsArriveWholeWithSavepointsAndAbortsHonoured() throws {
        try writeConfig(tables: ["public.big", "public.side"])
        let daemon = try startDaemon()
        try waitForSlotActive()

        // (1) A savepoint's rows rolled back inside a streamed transaction.
        let savepoints = try source.connect()
        try savepoints.execute("BEGIN")
        try savepoints.execute(insert(1...6_000, "kept"))
        try savepoints.execute("SAVEPOINT a")
        try savepoints.execute(insert(6_001...9_000, "rolled back"))
        try savepoints.execute("SAVEPOINT nested")
        try savepoints.execute(insert(9_001...10_000, "rolled back, nested"))
        try savepoints.execute("ROLLBACK TO SAVEPOINT a")
        try savepoints.execute("SAVEPOINT b")
        try savepoints.execute(insert(6_001...8_000, "released"))
        try savepoints.execute("RELEASE SAVEPOINT b")
        try savepoints.execute(insert(8_001...12_000, "kept after"))
        // Staged while it runs: its file exists before the commit.
        try eventually(timeout: 60, "the open transaction to be staged" + logTail) { !stagedFiles().isEmpty }
        try savepoints.execute("COMMIT")

        // (2) Two streams interleaved, committed in the reverse order; (3) one rolled back.
        let first = try source.connect()
        let second = try source.connect()
        let rolledBack = try source.connect()
        try first.execute("BEGIN")
        try second.execute("BEGIN")
        try rolledBack.execute("BEGIN")
        for round in 0..<4 {
            let base = 100_000 + round * 5_000
            try first.execute(insert(base + 1...base + 2_500, "first"))
            try second.execute(insert(base + 2_501...base + 5_000, "second"))
            try rolledBack.execute(insert(500_000 + round * 3_000 + 1...500_000 + round * 3_000 + 3_000, "aborted"))
            try source.query("INSERT INTO side VALUES (\(round), 'small, between the streams')")
        }
        try eventually(timeout: 60, "three open transactions to be staged" + logTail) { stagedFiles().count >= 3 }
        try rolledBack.execute("ROLLBACK")
        try second.execute("COMMIT")
        try first.execute("COMMIT")
        let end = try commitMarked("INSERT INTO side VALUES (100, 'after')")
        try waitForTargets(lsn: end, timeout: 120)

        XCTAssertEqual(try source.count("big"), 32_000)
        XCTAssertEqual(try source.scalar("SELECT count(*) FROM big WHERE who LIKE 'rolled back%' OR who = 'aborted'"), "0")
        try assertTargetsEqualSource("public.big")
        try assertTargetsEqualSource("public.side")
        XCTAssertEqual(try target.scalar("SELECT count(*) FROM big WHERE who = 'released'"), "2000")
        XCTAssertEqual(stagedFiles(), [], "committed and aborted transactions leave no staged file")

        // The topic holds each committed transaction once, whole, in commit order.
        let dump = try TopicDump.read(topic: "app", config: configPath)
        let bigTransactions = dump.transactions.filter { $0.changes.contains { $0["table"] as? String == "public.big" } }
        XCTAssertEqual(bigTransactions.map(\.changes.count), [12_000, 10_000, 10_000],
                       "the savepoint transaction, then second, then first" + logTail)
        XCTAssertEqual(Set(dump.transactions.map(\.xid)).count, dump.transactions.count, "no transaction twice")
        XCTAssertEqual(bigTransactions.map { ($0.changes.first?["after"] as? [String: Any])?["who"] as? String },
                       ["kept", "second", "first"])

        // The walsender streamed all four large transactions and spilled none.
        try eventually(timeout: 30, "pg_stat_replication_slots to count the streams: \((try? slotCounters()).map { "\($0)" } ?? "")") {
            try slotCounters().streamed >= 4
        }
        let counters = try slotCounters()
        XCTAssertEqual(counters.spilled, 0, "nothing spilled: \(counters)")
        XCTAssertEqual(counters.spillBytes, 0, "nothing spilled: \(counters)")
        print("pg_stat_replication_slots: stream_txns \(counters.streamed), spill_txns \(counters.spilled), spill_bytes \(counters.spillBytes)")
        XCTAssertEqual(daemon.terminate(), 0, "clean exit on SIGTERM" + logTail)
    }

    /// SIGKILL while a large transaction is being staged, then again while its staged changes are being
    /// appended to the topic (failpoint `source.mid_stream_commit`): after the restarts the targets hold
    /// it exactly once, and the staged files of the killed runs are gone.
    func testKilledWhileStagingOrAppendingLosesAndDuplicatesNothing() throws {
        try writeConfig(tables: ["public.big", "public.side"])
        var daemon = try startDaemon()
        try waitForSlotActive()

        let db = try source.connect()
        try db.execute("BEGIN")
        try db.execute(insert(1...40_000, "before the kill"))
        try eventually(timeout: 60, "the open transaction to be staged" + logTail) { !stagedFiles().isEmpty }
        daemon.kill()
        XCTAssertFalse(stagedFiles().isEmpty, "SIGKILL left the staged file behind")
        try db.execute(insert(40_001...90_000, "after the kill"))
        try db.execute("COMMIT")

        // Streamed again from its first change and killed while appending it (after 65,536 messages).
        daemon = try startDaemon(environment: ["SLUICE_FAILPOINTS": "source.mid_stream_commit"])
        let status = daemon.wait(timeout: 120)
        XCTAssertEqual(status, 137, "killed by the failpoint" + logTail)
        XCTAssertTrue(daemon.log.contains("failpoint source.mid_stream_commit fired"), logTail)
        XCTAssertEqual((try? target.count("big")) ?? 0, 0, "nothing of the killed append reached a target" + logTail)

        daemon = try startDaemon()
        let end = try commitMarked("INSERT INTO side VALUES (1, 'after')")
        try waitForTargets(lsn: end, timeout: 120)
        XCTAssertEqual(try target.count("big"), 90_000)
        try assertTargetsEqualSource("public.big")
        XCTAssertEqual(stagedFiles(), [], "the killed runs' staged files are gone")
        let dump = try TopicDump.read(topic: "app", config: configPath)
        // The initial snapshot (no rows), the large transaction once and whole, the small one.
        XCTAssertEqual(dump.transactions.map(\.changes.count), [0, 90_000, 1], logTail)
        XCTAssertEqual(daemon.terminate(), 0, "clean exit on SIGTERM" + logTail)
    }
}

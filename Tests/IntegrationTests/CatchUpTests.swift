import Foundation
import SluiceWire
import XCTest

/// Catch-up capture (`catch_up_threshold`): a burst written while the daemon is stopped is read through
/// `pg_logical_slot_peek_binary_changes` in batches, then the source streams again. The topic must hold
/// every committed transaction once, in commit order, across the switch and across crashes mid-catch-up.
final class CatchUpTests: DaemonTestCase {
    override var fixtureName: String { "catchup" }

    /// Rows per burst transaction; `ids` numbers rows in commit order.
    static let perTransaction = 100

    private func createTable() throws {
        try source.query("CREATE TABLE ledger (id bigint PRIMARY KEY, payload text NOT NULL)")
        // Small batches and threshold, so a burst of a few MB takes several batches.
        try writeSourceConfig(tables: ["public.ledger"],
                              sourceExtra: ["snapshot: never", "catch_up_threshold: 1MB", "catch_up_batch: 2000"])
    }

    /// Commits rows `range` in transactions of `perTransaction`; returns their xids in commit order.
    private func burst(_ range: ClosedRange<Int>) throws -> [Int] {
        let db = try PGConnection(url: source.url)
        var xids: [Int] = []
        for low in stride(from: range.lowerBound, through: range.upperBound, by: Self.perTransaction) {
            let high = min(range.upperBound, low + Self.perTransaction - 1)
            let result = try db.execute("""
                BEGIN;
                INSERT INTO ledger SELECT i, repeat('x', 80) || i FROM generate_series(\(low), \(high)) i;
                SELECT txid_current();
                """)
            xids.append(Int(try XCTUnwrap(result.string(0, 0)))!)
            try db.execute("COMMIT")
        }
        return xids
    }

    /// Runs a daemon once so the slot exists, then stops it.
    private func createSlot() throws {
        let daemon = try startDaemon()
        try waitForSlotActive()
        XCTAssertEqual(daemon.terminate(), 0, logTail)
    }

    private func waitUntilConfirmed(timeout: TimeInterval = 180) throws {
        let end = try XCTUnwrap(source.scalar("SELECT pg_current_wal_insert_lsn()::text"))
        try eventually(timeout: timeout, "the slot to confirm \(end)" + logTail) {
            lsnValue(try source.scalar("SELECT confirmed_flush_lsn::text FROM pg_replication_slots") ?? "0/0") >= lsnValue(end)
        }
    }

    /// The topic holds exactly these transactions, in this order, with rows 1…rows once each, ascending.
    private func assertTopic(xids: [Int], rows: Int, file: StaticString = #filePath, line: UInt = #line) throws {
        let dump = try TopicDump.read(topic: "app", config: configPath, file: file, line: line)
        XCTAssertEqual(dump.transactions.map(\.xid), xids, "each committed transaction once, in commit order" + logTail,
                       file: file, line: line)
        let ids = dump.transactions.flatMap(\.changes).compactMap { ($0["after"] as? [String: Any])?["id"] as? Int }
        XCTAssertEqual(ids, Array(1...rows), "every row once, in order", file: file, line: line)
    }

    /// Starts a daemon and waits until it streams (its own "streaming" line: an earlier incarnation's
    /// walsender may still show the slot active for a moment).
    private func startStreamingDaemon() throws -> SluiceProcess {
        let before = occurrences(Self.streamingLine)
        let daemon = try startDaemon()
        try eventually(timeout: 180, "the daemon to stream" + logTail) { occurrences(Self.streamingLine) > before }
        return daemon
    }

    static let streamingLine = "INFO    streaming  "

    private func occurrences(_ text: String) -> Int {
        ((try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "").components(separatedBy: text).count - 1
    }

    func testABurstWhileStoppedIsCaughtUpExactlyAndLaterWritesStream() throws {
        try createTable()
        try createSlot()
        let rows = 30_000
        var xids = try burst(1...rows)
        let daemon = try startStreamingDaemon()
        XCTAssertEqual(occurrences("caught up; streaming from here"), 1, logTail)
        XCTAssertEqual(occurrences("catching up through the SQL decoding interface"), 1, logTail)
        // Written after the switch: they arrive through START_REPLICATION.
        xids += try burst(rows + 1...rows + 500)
        try waitUntilConfirmed()
        XCTAssertEqual(daemon.terminate(), 0, logTail)
        try assertTopic(xids: xids, rows: rows + 500)

        // A slot within the threshold streams at once.
        let quiet = try startStreamingDaemon()
        XCTAssertEqual(quiet.terminate(), 0, logTail)
        XCTAssertEqual(occurrences("catching up through the SQL decoding interface"), 1, "no catch-up for a slot near the tail" + logTail)
    }

    func testKillsDuringCatchUpLoseAndRepeatNothing() throws {
        try createTable()
        try createSlot()
        let rows = 40_000
        let xids = try burst(1...rows)

        // Deterministic: a batch is durable in the topic, the slot not yet advanced past it.
        let crashed = try startDaemon(environment: ["SLUICE_FAILPOINTS": "source.catch_up.before_advance@1"])
        XCTAssertEqual(crashed.wait(timeout: 180), 137, "the failpoint killed the daemon" + logTail)
        XCTAssertEqual(occurrences("failpoint source.catch_up.before_advance fired"), 1, logTail)

        // Random: SIGKILL while catching up, at most four times; each restart resumes from the slot.
        // A kill just before the switch can leave the slot within the threshold: that restart streams at once.
        for _ in 0..<4 {
            let started = occurrences("catching up through the SQL decoding interface")
            let streamed = occurrences(Self.streamingLine)
            let daemon = try startDaemon()
            try eventually(timeout: 120, "the daemon to start catching up or streaming" + logTail) {
                occurrences("catching up through the SQL decoding interface") > started
                    || occurrences(Self.streamingLine) > streamed || !daemon.isRunning
            }
            if occurrences(Self.streamingLine) > streamed { daemon.kill(); break }
            usleep(UInt32.random(in: 50_000...1_200_000))
            let done = occurrences("caught up; streaming from here")
            daemon.kill()
            if done > 0 { break }
        }
        let last = try startStreamingDaemon()
        try waitUntilConfirmed()
        XCTAssertEqual(last.terminate(), 0, logTail)
        XCTAssertGreaterThanOrEqual(occurrences("catching up through the SQL decoding interface"), 2, logTail)
        XCTAssertEqual(occurrences("catching up without reading ahead"), 0, "batches were read ahead" + logTail)
        try assertTopic(xids: xids, rows: rows)
        // The read-ahead copies of the slot were temporary: killed sessions took theirs along.
        try eventually(timeout: 30, "the temporary slot copies to be gone") {
            try source.scalar("SELECT count(*) FROM pg_replication_slots WHERE slot_name LIKE 'sluice_catch_up_%'") == "0"
        }
    }

    /// With no free slot for the read-ahead copy, catch-up reads one batch at a time, and says so.
    func testWithoutAFreeSlotBatchesAreReadOneAtATime() throws {
        try createTable()
        try createSlot()
        let rows = 20_000
        let xids = try burst(1...rows)
        let limit = Int(try XCTUnwrap(source.scalar("SHOW max_replication_slots")))!
        let used = Int(try XCTUnwrap(source.scalar("SELECT count(*) FROM pg_replication_slots")))!
        for index in 0..<(limit - used) { try source.query("SELECT pg_create_physical_replication_slot('filler_\(index)')") }
        let daemon = try startStreamingDaemon()
        try waitUntilConfirmed()
        XCTAssertEqual(daemon.terminate(), 0, logTail)
        XCTAssertEqual(occurrences("catching up without reading ahead"), 1, logTail)
        XCTAssertEqual(occurrences("caught up; streaming from here"), 1, logTail)
        try assertTopic(xids: xids, rows: rows)
        for index in 0..<(limit - used) { try source.query("SELECT pg_drop_replication_slot('filler_\(index)')") }
    }
}

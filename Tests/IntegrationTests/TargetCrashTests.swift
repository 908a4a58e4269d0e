import Foundation
import SluiceWire
import XCTest

/// The PostgreSQL sink commits with `synchronous_commit = off`: a crash of the target loses its last
/// commits together with their `sluice_offsets` rows, and the daemon applies them again from the topic,
/// exactly once (a keyless table would show a transaction applied twice as duplicate rows).
final class TargetCrashTests: SinkTestCase {
    override var fixtureName: String { "target-crash" }

    func testCommitsLostInATargetCrashAreAppliedAgainExactlyOnce() throws {
        try source.query("CREATE TABLE events (k int NOT NULL, label text); ALTER TABLE events REPLICA IDENTITY FULL")
        // The WAL writer flushes async commits at most every 10 s: the crash below finds them unflushed.
        try target.query("ALTER SYSTEM SET wal_writer_delay = '10s'")
        try target.query("SELECT pg_reload_conf()")
        try writeConfig(tables: ["public.events"])
        var daemon = try startDaemon()
        try waitForSlotActive()
        let db = try source.connect()
        let transactions = 20
        var lsn: UInt64 = 0
        for t in 0..<transactions {
            lsn = try commitMarked("INSERT INTO events SELECT g, 'tx \(t)' FROM generate_series(\(t * 10), \(t * 10 + 9)) g", on: db)
        }
        try waitForTargets(lsn: lsn)
        XCTAssertEqual(try target.count("public.events"), transactions * 10)
        XCTAssertEqual(daemon.terminate(), 0, daemon.log)

        target.crash()
        try target.start()
        let survived = try target.count("public.events")
        let stored = try postgresTargetLSN() ?? 0
        XCTAssertLessThan(survived, transactions * 10, "the crash lost no commit: nothing was applied again")
        XCTAssertEqual(survived % 10, 0, "a crash leaves whole source transactions")
        XCTAssertLessThan(stored, lsn, "the position was lost with the commits")

        daemon = try startDaemon()
        defer { daemon.terminate() }
        try waitForTargets(lsn: lsn)
        let counts = try target.query("SELECT count(*), count(DISTINCT k), min(k), max(k) FROM public.events")
        XCTAssertEqual(counts.first, ["\(transactions * 10)", "\(transactions * 10)", "0", "\(transactions * 10 - 1)"],
                       "after a target crash every row is applied exactly once (\(survived) survived the crash)")
    }
}

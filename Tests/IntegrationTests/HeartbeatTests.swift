import Foundation
import SluiceWire
import XCTest

/// With `heartbeat_interval: 1s`, a source whose captured table is idle still advances its slot's
/// confirmed_flush_lsn while another (uncaptured) table takes writes, so the slot never pins WAL; the
/// topic receives nothing for the uncaptured table.
final class HeartbeatTests: DaemonTestCase {
    override var fixtureName: String { "heartbeat" }

    func slotPositions() throws -> (confirmed: UInt64, current: UInt64) {
        let row = try XCTUnwrap(try source.query(
            "SELECT confirmed_flush_lsn::text, pg_current_wal_lsn()::text FROM pg_replication_slots WHERE slot_name = 'sluice_app'").first)
        return (lsnValue(row[0] ?? "0/0"), lsnValue(row[1] ?? "0/0"))
    }

    func testHeartbeatsAdvanceAnIdleSlotWhileOtherTablesTakeWrites() throws {
        try source.query("""
            CREATE TABLE quiet (id int PRIMARY KEY, note text);
            INSERT INTO quiet VALUES (1, 'before');
            CREATE TABLE busy (id bigserial PRIMARY KEY, payload text);
            """)
        let config = try writeSourceConfig(tables: ["public.quiet"], sourceExtra: ["heartbeat_interval: 1s"])
        let daemon = try startDaemon(environment: ["SLUICE_LOG_LEVEL": "debug"])
        try eventually(timeout: 60, "the slot to be active\n" + daemon.log) {
            try source.scalar("SELECT active::text FROM pg_replication_slots WHERE slot_name = 'sluice_app'") == "true"
        }
        XCTAssertEqual(try source.scalar("SELECT string_agg(schemaname || '.' || tablename, ',') FROM pg_publication_tables"),
                       "public.quiet", "only quiet is published")
        let start = try slotPositions()

        // ~10 s of writes to the uncaptured table, ~1 KB each, in small transactions.
        let url = source.url
        let written = SinkTestStats()
        let stopWriting = SinkTestFlag()
        let workload = SinkTestWorker("busy-writer", stop: stopWriting) {
            guard let db = try? PGConnection(url: url) else { return }
            while !stopWriting.isSet {
                do {
                    try db.execute("INSERT INTO busy (payload) SELECT repeat(md5(random()::text), 32) FROM generate_series(1, 20)")
                    written.count("rows", 20)
                } catch {
                    written.count("failed")
                }
                usleep(5_000)
            }
        }
        defer { workload.stop() }

        // Ten rounds, each bounded by events: the busy table writes another 512 kB of WAL past the last
        // mark, then the slot confirms that mark (heartbeats carry it, nothing captured is written).
        var samples: [(confirmed: UInt64, current: UInt64)] = []
        var mark = start.current
        for round in 1...10 {
            var position = try slotPositions()
            try eventually(timeout: 30, "round \(round): the busy table to write 512 kB of WAL past \(lsnText(mark)) "
                           + "(at \(lsnText(position.current)); \(written.summary))") {
                position = try slotPositions()
                return position.current >= mark + 512 << 10
            }
            mark = position.current
            try eventually(timeout: 10, "round \(round): the idle slot to confirm \(lsnText(mark)) while the busy table takes "
                           + "writes (confirmed \(lsnText(position.confirmed)))\n" + daemon.log.suffix(5000)) {
                position = try slotPositions()
                return position.confirmed >= mark
            }
            samples.append(position)
        }
        workload.stop()
        let endOfWrites = try slotPositions().current
        let producedWAL = endOfWrites - start.current
        XCTAssertEqual(written["failed"], 0)
        XCTAssertGreaterThan(producedWAL, 4 << 20, "the busy table produced several MB of WAL (\(written["rows"]) rows)")

        // During the writes the confirmed position kept moving (each round confirmed a later mark) and
        // stayed close to the server's.
        let confirmedDuring = samples.map(\.confirmed)
        XCTAssertEqual(confirmedDuring, confirmedDuring.sorted(), "confirmed_flush_lsn never goes back")
        XCTAssertEqual(Set(confirmedDuring).count, samples.count,
                       "confirmed_flush_lsn advanced in every round: \(confirmedDuring.map(lsnText))\n" + daemon.log.suffix(5000))
        let lastSample = try XCTUnwrap(samples.last)
        XCTAssertGreaterThan(lastSample.confirmed, start.confirmed + producedWAL / 2,
                             "the slot confirmed most of the WAL written (start \(lsnText(start.confirmed)), now \(lsnText(lastSample.confirmed)), "
                             + "server \(lsnText(lastSample.current)))\n" + daemon.log.suffix(5000))
        let worstLag = samples.dropFirst(3).map { $0.current - $0.confirmed }.max() ?? 0
        XCTAssertLessThan(worstLag, 4 << 20, "the slot stays within 4 MB of the server's WAL (confirmed/current each round: "
                          + "\(samples.map { "\(lsnText($0.confirmed))/\(lsnText($0.current))" }))")
        // Once the writes stop, a heartbeat or two brings it to the end of what was written.
        try eventually(timeout: 15, "the slot to confirm \(lsnText(endOfWrites)) (at \((try? slotPositions()).map { lsnText($0.confirmed) } ?? "?"))") {
            try slotPositions().confirmed >= endOfWrites
        }
        let status = try sluiceStatus(config)

        // The topic holds only the initial snapshot of quiet: no transaction for busy, no heartbeat.
        let dump = try TopicDump.read(topic: "app", config: config)
        XCTAssertEqual(dump.transactions.count, 1, "only the snapshot transaction: \(dump.transactions.map { ($0.xid, $0.changes.count) })")
        XCTAssertFalse(dump.records.contains { $0["table"] as? String == "public.busy" }, "nothing of public.busy in the topic")
        XCTAssertEqual(dump.transactions.first?.changes.count, 1)
        XCTAssertEqual(status.events("app"), 1, status.text)

        // A change to quiet still arrives after all that.
        try source.query("UPDATE quiet SET note = 'after' WHERE id = 1")
        try eventually(timeout: 30, "the update of quiet to reach the topic") {
            try TopicDump.read(topic: "app", config: config).transactions.count == 2
        }
        XCTAssertEqual(daemon.terminate(), 0, daemon.log.suffix(5000).description)
    }
}

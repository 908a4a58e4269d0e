@testable import PostgresSource
import XCTest

/// The replication loop's decisions on sequences of messages, with no server and a clock passed in.
final class ReplicationProgressTests: XCTestCase {
    let ms: UInt64 = 1_000_000

    func testTransactionsTheTopicHoldsAreSkippedAndLaterOnesWritten() {
        var progress = ReplicationProgress(lastCommitEnd: 0x2000, beyond: nil, now: 0)
        XCTAssertFalse(progress.begin(finalLSN: 0x1F00), "committed before the topic's end: already written")
        XCTAssertTrue(progress.skipping)
        XCTAssertFalse(progress.commit(endLSN: 0x1F80, now: 1))
        XCTAssertFalse(progress.skipping)
        XCTAssertTrue(progress.begin(finalLSN: 0x2000), "a commit at the resume point itself is new")
        XCTAssertTrue(progress.commit(endLSN: 0x2100, now: 2))
        XCTAssertEqual(progress.resumeLSN, 0x2100)
        XCTAssertFalse(progress.begin(finalLSN: 0x20FF), "the slot sending an old one again is skipped too")
    }

    func testOnlyDurableCommitsAreConfirmedAndAtMostEveryHundredMillisecondsWhileDataFlows() {
        var progress = ReplicationProgress(lastCommitEnd: 0x100, beyond: nil, now: 0)
        _ = progress.begin(finalLSN: 0x200)
        progress.data(walStart: 0x200, walEnd: 0x5000)
        _ = progress.commit(endLSN: 0x300, now: 1 * ms)
        // Written but not durable yet: nothing new to tell.
        XCTAssertEqual(progress.confirm(now: 50 * ms, durable: (offset: 3, endLSN: 0x100), allDurable: false, idle: false), .none)
        // Durable, but the last update was under 100 ms ago.
        XCTAssertEqual(progress.confirm(now: 50 * ms, durable: (offset: 7, endLSN: 0x300), allDurable: false, idle: false), .none)
        XCTAssertEqual(progress.confirm(now: 120 * ms, durable: (offset: 7, endLSN: 0x300), allDurable: false, idle: false),
                       .send(written: 0x300, flushed: 0x300))
        progress.sent(flushed: 0x300, now: 120 * ms)
        XCTAssertEqual(progress.confirm(now: 130 * ms, durable: (offset: 7, endLSN: 0x300), allDurable: false, idle: true), .none)
    }

    func testAQuietSlotMovesPastTheTopicOnlyAfterRecordingThePosition() {
        var progress = ReplicationProgress(lastCommitEnd: 0x100, beyond: nil, now: 0)
        progress.keepalive(walEnd: 0x9000, replyRequested: false)
        let durable = (offset: UInt64(4), endLSN: UInt64(0x100))
        let first = progress.confirm(now: 2_000 * ms, durable: durable, allDurable: true, idle: true)
        XCTAssertEqual(first, .record(.init(offset: 4, lsn: 0x9000)), "recorded before the slot is told")
        progress.recorded(.init(offset: 4, lsn: 0x9000), now: 2_000 * ms)
        XCTAssertEqual(progress.confirm(now: 2_000 * ms, durable: durable, allDurable: true, idle: true),
                       .send(written: 0x9000, flushed: 0x9000))
        progress.sent(flushed: 0x9000, now: 2_000 * ms)
        // The server moves on; within a second the record is not renewed, and nothing past it is confirmed.
        progress.keepalive(walEnd: 0xA000, replyRequested: false)
        XCTAssertEqual(progress.confirm(now: 2_500 * ms, durable: durable, allDurable: true, idle: true), .none)
        XCTAssertEqual(progress.confirm(now: 3_100 * ms, durable: durable, allDurable: true, idle: true),
                       .record(.init(offset: 4, lsn: 0xA000)))
    }

    func testAFailedRecordConfirmsNothingPastTheTopic() {
        var progress = ReplicationProgress(lastCommitEnd: 0x100, beyond: nil, now: 0)
        progress.keepalive(walEnd: 0x9000, replyRequested: true)
        let durable = (offset: UInt64(4), endLSN: UInt64(0x100))
        XCTAssertEqual(progress.confirm(now: 2_000 * ms, durable: durable, allDurable: true, idle: true),
                       .record(.init(offset: 4, lsn: 0x9000)))
        progress.recorded(nil, now: 2_000 * ms)
        XCTAssertEqual(progress.confirm(now: 2_000 * ms, durable: durable, allDurable: true, idle: true),
                       .send(written: 0x100, flushed: 0x100), "the requested reply goes out with the durable position only")
    }

    func testARecordForAnEarlierCommitMarkerDoesNotCount() {
        // Recorded when the topic ended at offset 3; it now ends at 9 (the record is stale, not wrong,
        // but it must not be read as covering a position past offset 9's transaction).
        var progress = ReplicationProgress(lastCommitEnd: 0x100, beyond: .init(offset: 3, lsn: 0x9000), now: 0)
        progress.keepalive(walEnd: 0x9000, replyRequested: false)
        XCTAssertEqual(progress.confirm(now: 100 * ms, durable: (offset: 9, endLSN: 0x800), allDurable: true, idle: false),
                       .send(written: 0x800, flushed: 0x800), "captured commits flow: no record, the durable end only")
    }

    func testNothingPastTheTopicWhileATransactionIsOpenOrNotDurable() {
        var progress = ReplicationProgress(lastCommitEnd: 0x100, beyond: .init(offset: 4, lsn: 0x9000), now: 0)
        progress.keepalive(walEnd: 0x9000, replyRequested: false)
        XCTAssertEqual(progress.confirm(now: 200 * ms, durable: (offset: 4, endLSN: 0x100), allDurable: false, idle: true), .none)
        _ = progress.begin(finalLSN: 0x9500)
        XCTAssertEqual(progress.confirm(now: 200 * ms, durable: (offset: 4, endLSN: 0x100), allDurable: true, idle: true), .none)
        _ = progress.commit(endLSN: 0x9600, now: 300 * ms)
        XCTAssertEqual(progress.confirm(now: 400 * ms, durable: (offset: 4, endLSN: 0x100), allDurable: true, idle: true),
                       .send(written: 0x9000, flushed: 0x9000), "the recorded position, not the new commit that is not durable")
    }

    func testAStatusGoesOutEveryTenSecondsAndWhenTheServerAsks() {
        var progress = ReplicationProgress(lastCommitEnd: 0x100, beyond: nil, now: 0)
        let durable = (offset: UInt64(1), endLSN: UInt64(0x100))
        XCTAssertEqual(progress.confirm(now: 9_000 * ms, durable: durable, allDurable: true, idle: true), .none)
        XCTAssertEqual(progress.confirm(now: 10_000 * ms, durable: durable, allDurable: true, idle: true),
                       .send(written: 0x100, flushed: 0x100))
        progress.sent(flushed: 0x100, now: 10_000 * ms)
        progress.keepalive(walEnd: 0x100, replyRequested: true)
        XCTAssertEqual(progress.confirm(now: 10_001 * ms, durable: durable, allDurable: true, idle: false),
                       .send(written: 0x100, flushed: 0x100))
        progress.sent(flushed: 0x100, now: 10_001 * ms)
        XCTAssertFalse(progress.replyRequested)
    }
}

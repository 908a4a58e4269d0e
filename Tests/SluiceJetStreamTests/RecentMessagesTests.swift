@testable import SluiceJetStream
import XCTest

/// What a reader in the writer's process may take from memory, and when it must ask the stream.
final class RecentMessagesTests: XCTestCase {
    func entry(_ sequence: UInt64, _ kind: MessageBatch.Kind = .batch, size: Int = 10) -> RecentMessages.Entry {
        RecentMessages.Entry(sequence: sequence, kind: kind, body: [UInt8](repeating: UInt8(sequence & 0xFF), count: size))
    }

    func testBatchesFromTheWritersFirstSequenceOn() {
        var recent = RecentMessages(maxCount: 8, maxBytes: 1 << 20)
        recent.reset(next: 5)
        XCTAssertEqual(recent.batch(from: 4), .missing, "written before this writer: the stream has it")
        XCTAssertEqual(recent.batch(from: 5), .notYet)
        recent.append(entry(5))
        recent.append(entry(6))
        XCTAssertEqual(recent.batch(from: 5), .found(entry(5)))
        XCTAssertEqual(recent.batch(from: 6), .found(entry(6)))
        XCTAssertEqual(recent.batch(from: 7), .notYet)
        XCTAssertEqual(recent.message(at: 6), entry(6))
        XCTAssertNil(recent.message(at: 7))
    }

    func testChunksAreSkippedToTheBatchClosingThem() {
        var recent = RecentMessages(maxCount: 8, maxBytes: 1 << 20)
        recent.reset(next: 1)
        recent.append(entry(1, .chunk))
        recent.append(entry(2, .chunk))
        XCTAssertEqual(recent.batch(from: 1), .notYet, "chunks alone are no committed transaction")
        recent.append(entry(3))
        XCTAssertEqual(recent.batch(from: 1), .found(entry(3)))
        XCTAssertEqual(recent.message(at: 2), entry(2, .chunk))
    }

    func testOldestDroppedPastTheBoundsThenMissing() {
        var recent = RecentMessages(maxCount: 3, maxBytes: 25)
        recent.reset(next: 1)
        for sequence: UInt64 in 1...4 { recent.append(entry(sequence)) }
        XCTAssertEqual(recent.count, 2, "25 bytes hold two messages of 10")
        XCTAssertEqual(recent.start, 3)
        XCTAssertEqual(recent.batch(from: 2), .missing)
        XCTAssertEqual(recent.batch(from: 3), .found(entry(3)))
        // One message bigger than the bound is still kept: the reader right behind needs it.
        recent.append(entry(5, size: 100))
        XCTAssertEqual(recent.count, 1)
        XCTAssertEqual(recent.batch(from: 5), .found(entry(5, size: 100)))
        for sequence: UInt64 in 6...200 { recent.append(entry(sequence)) }
        XCTAssertEqual(recent.count, 2)
        XCTAssertEqual(recent.batch(from: 199), .found(entry(199)))
    }

    func testAGapStartsAnewAndUnkeptMessagesAreMissing() {
        var recent = RecentMessages(maxCount: 8, maxBytes: 1 << 20)
        recent.reset(next: 1)
        recent.append(entry(1))
        // Sequence 2 went to another message (the damage note): 1 is no longer known to be followed by 3.
        recent.append(entry(3))
        XCTAssertEqual(recent.batch(from: 2), .missing)
        XCTAssertEqual(recent.batch(from: 3), .found(entry(3)))
        // Acknowledged while no reader kept it: the window starts after it.
        recent.reset(next: 4 + 1)
        XCTAssertEqual(recent.batch(from: 4), .missing)
        recent.reset()
        XCTAssertEqual(recent.batch(from: 9), .missing, "no writer: nothing is known")
    }
}

import Foundation
@testable import PostgresSource
import XCTest

/// The disk store of streamed in-progress transactions, on real files in a scratch directory.
final class StagedTransactionsTests: XCTestCase {
    var directory: String!

    override func setUpWithError() throws {
        directory = NSTemporaryDirectory() + "sluice-staging-\(UUID().uuidString.prefix(8))"
    }

    override func tearDown() {
        try? FileManager.default.removeItem(atPath: directory)
    }

    private func append(_ store: StagedTransactions, _ xid: UInt32, sub: UInt32, _ lsn: UInt64, _ text: String) throws {
        try Array(text.utf8).withUnsafeBytes { try store.append(xid: xid, subtransaction: sub, lsn: lsn, message: $0) }
    }

    private func replay(_ store: StagedTransactions, _ xid: UInt32) throws -> [String] {
        var out: [String] = []
        try store.replay(xid: xid) { lsn, message in out.append("\(lsn):" + String(decoding: message, as: UTF8.self)) }
        return out
    }

    private func stageFiles() throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: directory).sorted()
    }

    func testInterleavedTransactionsReplayEachInItsOwnOrderAndLeaveNoFile() throws {
        let store = try StagedTransactions(directory: directory, bufferBytes: 64)
        try store.begin(xid: 700)
        try store.begin(xid: 701)
        for index in 0..<50 {
            try append(store, 700, sub: 700, UInt64(1000 + index), "a\(index)")
            try append(store, 701, sub: 701, UInt64(2000 + index), "b\(index)")
        }
        XCTAssertEqual(store.transactions, [700, 701])
        XCTAssertEqual(store.messageCount(700), 50)
        XCTAssertEqual(try stageFiles(), ["700.stage", "701.stage"])
        XCTAssertEqual(try replay(store, 701), (0..<50).map { "\(2000 + $0):b\($0)" })
        XCTAssertFalse(store.contains(701))
        XCTAssertEqual(try stageFiles(), ["700.stage"], "a replayed transaction's file is deleted")
        XCTAssertEqual(try replay(store, 700), (0..<50).map { "\(1000 + $0):a\($0)" })
        XCTAssertEqual(try stageFiles(), [])
        XCTAssertEqual(store.stagedBytes, 0)
    }

    func testSubtransactionAbortDropsItsChangesButKeepsSchemaAndTheRest() throws {
        let store = try StagedTransactions(directory: directory, bufferBytes: 4096)
        try store.begin(xid: 10)
        try append(store, 10, sub: 10, 1, "kept before")
        try append(store, 10, sub: 0, 2, "relation")
        try append(store, 10, sub: 11, 3, "rolled back 1")
        try append(store, 10, sub: 12, 4, "nested, rolled back")
        try append(store, 10, sub: 11, 5, "rolled back 2")
        try append(store, 10, sub: 13, 6, "released savepoint")
        store.abort(xid: 10, subtransaction: 12)
        store.abort(xid: 10, subtransaction: 11)
        try append(store, 10, sub: 10, 7, "kept after")
        store.abort(xid: 99, subtransaction: 99) // not staged: nothing happens
        XCTAssertEqual(try replay(store, 10), ["1:kept before", "2:relation", "6:released savepoint", "7:kept after"])
    }

    func testTopLevelAbortDropsTheTransactionAndItsFile() throws {
        let store = try StagedTransactions(directory: directory)
        try store.begin(xid: 5)
        try store.begin(xid: 6)
        try append(store, 5, sub: 5, 1, "gone")
        try append(store, 6, sub: 6, 2, "stays")
        store.abort(xid: 5, subtransaction: 5)
        XCTAssertFalse(store.contains(5))
        XCTAssertEqual(try stageFiles(), ["6.stage"])
        XCTAssertEqual(try replay(store, 6), ["2:stays"])
    }

    /// A first segment for a transaction already staged (the stream started over) begins it afresh.
    func testBeginAgainStartsOver() throws {
        let store = try StagedTransactions(directory: directory)
        try store.begin(xid: 8)
        try append(store, 8, sub: 8, 1, "first try")
        store.abort(xid: 8, subtransaction: 9)
        try store.begin(xid: 8)
        try append(store, 8, sub: 9, 2, "second try")
        XCTAssertEqual(try replay(store, 8), ["2:second try"], "the aborted set went with the old staging")
    }

    /// Messages larger than the write buffer and the read buffer (1 MiB) pass through whole, in order.
    func testMessagesLargerThanTheBuffersRoundTrip() throws {
        let store = try StagedTransactions(directory: directory, bufferBytes: 1024)
        try store.begin(xid: 3)
        let sizes = [10, 3000, 1, 1_500_000, 700, 2_600_000, 5]
        var expected: [String] = []
        for (index, size) in sizes.enumerated() {
            let text = String(repeating: Character(Unicode.Scalar(UInt8(65 + index))), count: size)
            try append(store, 3, sub: 3, UInt64(index) << 40 | 0x1234, text)
            expected.append("\(UInt64(index) << 40 | 0x1234):" + text)
        }
        XCTAssertEqual(store.stagedBytes, UInt64(sizes.reduce(0, +) + 16 * sizes.count))
        let got = try replay(store, 3)
        XCTAssertEqual(got.count, expected.count)
        XCTAssertTrue(got == expected, "every message back, byte for byte")
    }

    /// What a killed process left is deleted when the next one opens the store.
    func testANewStoreDeletesWhatAnEarlierRunLeft() throws {
        do {
            let earlier = try StagedTransactions(directory: directory)
            try earlier.begin(xid: 42)
            try append(earlier, 42, sub: 42, 1, "left behind")
            // Like SIGKILL: the file stays (no discard).
            try FileManager.default.copyItem(atPath: directory + "/42.stage", toPath: directory + "/43.stage")
        }
        XCTAssertEqual(try stageFiles(), ["43.stage"])
        let store = try StagedTransactions(directory: directory)
        XCTAssertEqual(try stageFiles(), [])
        XCTAssertEqual(store.transactions, [])
    }

    /// Bounded memory: the write buffer never holds more than its size; the rest is on disk.
    func testStagedBytesGoToDiskBeyondTheBuffer() throws {
        let store = try StagedTransactions(directory: directory, bufferBytes: 4096)
        try store.begin(xid: 1)
        let row = String(repeating: "x", count: 100)
        for index in 0..<10_000 { try append(store, 1, sub: 1, UInt64(index), row) }
        let onDisk = try XCTUnwrap(FileManager.default.attributesOfItem(atPath: directory + "/1.stage")[.size] as? Int)
        XCTAssertGreaterThanOrEqual(onDisk, 10_000 * 116 - 4096)
        XCTAssertEqual(try replay(store, 1).count, 10_000)
    }
}

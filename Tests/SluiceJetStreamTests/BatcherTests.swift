@testable import SluiceJetStream
import SluiceKit
import XCTest

/// Message batching and the resume rules of the JetStream backend, without a server.
final class BatcherTests: XCTestCase {
    func commit(_ n: UInt64) -> CommitRecord {
        CommitRecord(xid: UInt32(n), commitLSN: LSN(n * 100), endLSN: LSN(n * 100 + 10), commitTime: 0, eventCount: 1, totalEvents: n)
    }

    /// One transaction of `changes` change records of `size` bytes each.
    @discardableResult
    func transaction(_ batcher: inout Batcher, _ n: UInt64, changes: Int, size: Int = 10) throws -> UInt64 {
        let body = [UInt8](repeating: UInt8(n & 0xFF), count: size)
        try body.withUnsafeBytes { _ = try batcher.append(kind: .begin, body: $0) }
        for _ in 0..<changes { try body.withUnsafeBytes { _ = try batcher.append(kind: .change, body: $0) } }
        let offset = try body.withUnsafeBytes { try batcher.append(kind: .commit, body: $0) }
        batcher.committed(commit(n), offset: offset)
        return offset
    }

    /// Every record of the messages as (offset, kind), read the way a reader reads batches.
    func readBatches(_ messages: [Batcher.Outgoing]) throws -> [(UInt64, UInt8)] {
        var out: [(UInt64, UInt8)] = []
        let bySequence = Dictionary(uniqueKeysWithValues: messages.map { ($0.sequence, $0) })
        for message in messages where message.kind == .batch {
            try message.body.withUnsafeBytes { raw in
                let header = try MessageBatch.decodeHeader(raw)
                var index = 0
                let base = header.chunks?.lowerBound ?? message.sequence
                if let chunks = header.chunks {
                    for sequence in chunks {
                        let chunk = try XCTUnwrap(bySequence[sequence])
                        try chunk.body.withUnsafeBytes { raw in
                            let chunkHeader = try MessageBatch.decodeHeader(raw)
                            XCTAssertEqual(chunkHeader.kind, .chunk)
                            for record in MessageBatch.Records(chunk.body, count: chunkHeader.count) {
                                out.append((MessageBatch.offset(base: base, index: index), record.kind))
                                index += 1
                            }
                        }
                    }
                    XCTAssertEqual(index, header.chunkRecords)
                }
                var records = MessageBatch.Records(message.body, count: header.count)
                while let record = records.next() {
                    out.append((MessageBatch.offset(base: base, index: index), record.kind))
                    index += 1
                }
                XCTAssertNil(records.failure)
            }
        }
        return out
    }

    func testSmallTransactionsShareABatchAndCommitOffsetsAreWhereReadersFindThem() throws {
        var batcher = Batcher(nextSequence: 7, maxBytes: 64 * 1024)
        var commits: [UInt64] = []
        for n in 1...5 { commits.append(try transaction(&batcher, UInt64(n), changes: 3)) }
        XCTAssertTrue(batcher.takeOutgoing().isEmpty, "nothing handed off before the writer asks")
        batcher.handOffCommitted()
        let messages = batcher.takeOutgoing()
        XCTAssertEqual(messages.map(\.sequence), [7])
        XCTAssertEqual(messages[0].lastCommit?.offset, commits.last)
        let read = try readBatches(messages)
        XCTAssertEqual(read.count, 25)
        XCTAssertEqual(read.filter { $0.1 == RecordKind.commit.rawValue }.map(\.0), commits)
        XCTAssertEqual(read.map(\.0), read.map(\.0).sorted(), "offsets increase")
        XCTAssertEqual(batcher.nextSequence, 8)
    }

    func testAFullBatchIsHandedOffBeforeTheRecordThatWouldOverflowIt() throws {
        var batcher = Batcher(nextSequence: 1, maxBytes: 4096)
        var commits: [UInt64] = []
        for n in 1...40 { commits.append(try transaction(&batcher, UInt64(n), changes: 4, size: 50)) }
        batcher.handOffCommitted()
        let messages = batcher.takeOutgoing()
        XCTAssertGreaterThan(messages.count, 1)
        XCTAssertTrue(messages.allSatisfy { $0.body.count <= 4096 && $0.kind == .batch })
        XCTAssertEqual(messages.map(\.sequence), Array(1...UInt64(messages.count)))
        let read = try readBatches(messages)
        XCTAssertEqual(read.filter { $0.1 == RecordKind.commit.rawValue }.map(\.0), commits,
                       "every commit offset returned at append is where the reader finds it")
        XCTAssertEqual(messages.compactMap(\.lastCommit).last?.offset, commits.last)
    }

    func testALargeTransactionGoesOutInChunksClosedByABatchThatNamesThem() throws {
        var batcher = Batcher(nextSequence: 10, maxBytes: 4096)
        let first = try transaction(&batcher, 1, changes: 2)
        let big = try transaction(&batcher, 2, changes: 300, size: 40)
        let after = try transaction(&batcher, 3, changes: 1)
        batcher.handOffCommitted()
        let messages = batcher.takeOutgoing()
        XCTAssertEqual(messages.first?.kind, .batch, "the batch of whole transactions goes out before the chunks")
        XCTAssertGreaterThanOrEqual(messages.filter { $0.kind == .chunk }.count, 2)
        XCTAssertTrue(messages.allSatisfy { $0.body.count <= 4096 })
        XCTAssertEqual(messages.map(\.sequence), Array(10..<(10 + UInt64(messages.count))), "sequences in hand-off order")
        let read = try readBatches(messages)
        XCTAssertEqual(read.count, 4 + 302 + 3)
        XCTAssertEqual(read.filter { $0.1 == RecordKind.commit.rawValue }.map(\.0), [first, big, after])
        XCTAssertEqual(read.map(\.0), read.map(\.0).sorted(), "offsets increase through chunks and batches")
        XCTAssertEqual(read.filter { $0.1 == RecordKind.begin.rawValue }.count, 3)
    }

    func testChunksOfAnAbortedTransactionAreNamedByNoBatch() throws {
        var batcher = Batcher(nextSequence: 1, maxBytes: 4096)
        try transaction(&batcher, 1, changes: 1)
        let body = [UInt8](repeating: 9, count: 40)
        try body.withUnsafeBytes { _ = try batcher.append(kind: .begin, body: $0) }
        for _ in 0..<300 { try body.withUnsafeBytes { _ = try batcher.append(kind: .change, body: $0) } }
        batcher.abort()
        let kept = try transaction(&batcher, 3, changes: 2)
        batcher.handOffCommitted()
        let messages = batcher.takeOutgoing()
        XCTAssertTrue(messages.contains { $0.kind == .chunk }, "the aborted transaction had gone out in chunks")
        let read = try readBatches(messages)
        XCTAssertEqual(read.count, 3 + 4, "a reader of batches never sees the aborted transaction")
        XCTAssertEqual(read.last?.0, kept)
    }

    func testTheHeaderAndChecksumRejectDamage() throws {
        var message = MessageBatch(kind: .batch, chunks: 5...7, chunkRecords: 12)
        [UInt8]("abc".utf8).withUnsafeBytes { message.append(kind: 4, body: $0) }
        var bytes = message.encoded()
        try bytes.withUnsafeBytes { raw in
            XCTAssertEqual(try MessageBatch.decodeHeader(raw), .init(kind: .batch, chunks: 5...7, chunkRecords: 12, count: 1))
            let records = Array(MessageBatch.Records(bytes, count: 1))
            XCTAssertEqual(records.map(\.kind), [4])
            XCTAssertEqual(records.first.map { Array(raw[$0.body]) }, Array("abc".utf8))
        }
        bytes[bytes.count - 1] ^= 0x01
        try bytes.withUnsafeBytes { raw in
            XCTAssertThrowsError(try MessageBatch.decodeHeader(raw)) { XCTAssertTrue("\($0)".contains("checksum")) }
        }
        try [UInt8]("nope".utf8).withUnsafeBytes { raw in XCTAssertThrowsError(try MessageBatch.decodeHeader(raw)) }
        XCTAssertEqual(MessageBatch.base(of: MessageBatch.offset(base: 123_456, index: 789)), 123_456)
        XCTAssertEqual(MessageBatch.index(of: MessageBatch.offset(base: 123_456, index: 789)), 789)
    }

    func testARecordLargerThanAMessageIsRefusedWithTheLimit() {
        var batcher = Batcher(nextSequence: 1, maxBytes: 4096)
        let huge = [UInt8](repeating: 0, count: 5000)
        XCTAssertThrowsError(try huge.withUnsafeBytes { try batcher.append(kind: .change, body: $0) }) {
            XCTAssertTrue("\($0)".contains("4096"))
        }
    }

    /// Records are encoded in place; a failed encoding leaves nothing behind, and a commit marker
    /// written in place is decoded where it lies, also when it moved on to the next message.
    func testRecordsEncodedInPlaceAndAFailedEncodingLeavesNothing() throws {
        struct Refused: Error {}
        var batcher = Batcher(nextSequence: 1, maxBytes: 4096)
        try transaction(&batcher, 1, changes: 2)
        _ = try batcher.append(kind: .begin) { $0.raw([1, 2, 3]) }
        XCTAssertThrowsError(try batcher.append(kind: .change) { body in
            body.raw([UInt8](repeating: 7, count: 100))
            throw Refused()
        })
        let offset = try batcher.append(kind: .change) { $0.raw([4, 5]) }
        XCTAssertEqual(batcher.nextOffset, offset + 1, "the refused record took no offset")
        var positions: [CommittedPosition] = []
        for n in 2...40 {
            let marker = try batcher.append(kind: .commit) { commit(UInt64(n)).encode(into: &$0) }
            positions.append(try batcher.commitLast(offset: marker))
            _ = try batcher.append(kind: .begin) { $0.raw([UInt8](repeating: UInt8(n), count: 60)) }
        }
        batcher.abort()
        batcher.handOffCommitted()
        let messages = batcher.takeOutgoing()
        XCTAssertGreaterThan(messages.count, 1, "the commits spread over several messages")
        XCTAssertEqual(positions.map(\.commit.xid), (2...40).map(UInt32.init))
        let read = try readBatches(messages)
        XCTAssertEqual(read.filter { $0.1 == RecordKind.commit.rawValue }.map(\.0).dropFirst(), ArraySlice(positions.map(\.offset)))
        XCTAssertEqual(read.count, 4 + 1 + 1 + 39 + 38, "no record of the refused encoding, none of the aborted one")
    }
}

import Foundation
import SluiceKit
@testable import SluiceLog
import XCTest

final class RetentionTests: LogTestCase {
    /// Four ~12 KB transactions in 10 KB segments: every commit rolls, the active segment is empty.
    private func fourSegments(_ log: EmbeddedLog, model: inout [Expected])
        throws -> (writer: EmbeddedTopicWriter, transactions: TransactionWriter, bases: [UInt64])
    {
        let writer = try log.embeddedWriter(Fixture.topic, segmentBytes: 10_000)
        let transactions = TransactionWriter(writer: writer)
        for xid in UInt32(1)...4 {
            try transactions.writeTransaction(xid: xid, rows: 12, padding: 1_000, expected: &model)
        }
        try writer.flush()
        let bases = SegmentFile.list(log.directory(of: Fixture.topic))
        XCTAssertEqual(bases.count, 5)
        XCTAssertEqual(bases.last, writer.nextOffset, "the active segment is empty")
        return (writer, transactions, bases)
    }

    func testDeleteSegmentsRemovesOnlyWholeSegmentsBelowTheOffset() throws {
        let log = try makeLog()
        var model: [Expected] = []
        let (writer, transactions, bases) = try fourSegments(log, model: &model)
        let directory = log.directory(of: Fixture.topic)
        let topic = writer.topic as! EmbeddedTopic
        let sizeBefore = topic.sizeBytes

        XCTAssertEqual(topic.deleteSegments(before: 0), 0)
        XCTAssertEqual(topic.deleteSegments(before: bases[1] - 1), 0, "segment 0 still holds offset bases[1] - 1")
        XCTAssertEqual(SegmentFile.list(directory), bases)
        XCTAssertEqual(topic.deleteSegments(before: bases[1]), 1)
        XCTAssertEqual(SegmentFile.list(directory), Array(bases[1...]))
        XCTAssertFalse(FileManager.default.fileExists(atPath: Files.segment(directory, 0)))
        XCTAssertFalse(FileManager.default.fileExists(atPath: Files.index(directory, 0)))
        XCTAssertEqual(topic.firstOffset, bases[1])
        XCTAssertLessThan(topic.sizeBytes, sizeBefore)
        XCTAssertEqual(topic.deleteSegments(before: bases[3] - 1), 1, "only the segment wholly below the offset")
        XCTAssertEqual(topic.firstOffset, bases[2])

        // A reader asked for an offset before the first retained one is clamped to it.
        let reader = try topic.makeReader(from: 0)
        XCTAssertEqual(reader.position, bases[2])
        let first = try XCTUnwrap(try reader.next(limit: writer.nextOffset))
        XCTAssertEqual(first.offset, bases[2])
        guard case let .begin(begin) = try first.decode() else { return XCTFail("segments start at a begin record") }
        XCTAssertEqual(begin.xid, 3)
        assertRecords(try readAll(topic, from: bases[2]), match: model, from: bases[2])

        // Never the segment holding the last commit marker (the active one is empty after a roll),
        // even when every record lies before the offset: a restarted writer resumes from that marker.
        XCTAssertEqual(topic.deleteSegments(before: .max), 1)
        XCTAssertEqual(SegmentFile.list(directory), [bases[3], bases[4]])
        XCTAssertEqual(topic.firstOffset, bases[3])
        XCTAssertEqual(topic.deleteSegments(before: .max), 0)
        XCTAssertEqual(topic.durableCommit?.offset, bases[4] - 1, "the writer still knows its last commit")

        // The writer keeps appending to the active segment.
        let t5 = try transactions.writeTransaction(xid: 5, rows: 1, expected: &model)
        XCTAssertEqual(t5.begin, bases[4])
        try writer.flush()
        assertRecords(try readAll(topic, from: 0), match: model, from: bases[3])
        writer.close()
    }

    /// A reader that already has a segment open reads it to its end (the file stays readable while
    /// open), then reports the gap clearly instead of skipping it.
    func testReaderPastADeletedSegmentReportsTheGap() throws {
        let log = try makeLog()
        var model: [Expected] = []
        let (writer, _, bases) = try fourSegments(log, model: &model)
        let topic = writer.topic as! EmbeddedTopic
        let reader = try topic.makeReader(from: 2)
        let limit = writer.nextOffset
        XCTAssertEqual(try reader.next(limit: limit)?.offset, 2)
        XCTAssertEqual(topic.deleteSegments(before: bases[2]), 2)
        var offsets: [UInt64] = []
        do {
            while let record = try reader.next(limit: limit) { offsets.append(record.offset) }
            XCTFail("reading on into deleted offsets must fail")
        } catch {
            XCTAssertTrue("\(error)".contains("offsets \(bases[1])..<\(bases[2]) were deleted by retention"), "\(error)")
        }
        XCTAssertEqual(offsets, Array(3..<bases[1]), "the open segment is read to its end first")
        writer.close()
    }
}

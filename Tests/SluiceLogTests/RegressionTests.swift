import Foundation
import SluiceKit
@testable import SluiceLog
import XCTest

/// Regression tests for defects found while writing this suite, each fixed since. Each comment
/// describes the scenario as it failed then (by function, as the code stood), and what is expected now.
final class RegressionTests: LogTestCase {
    /// Recovery.swift — `scanSegment` treats *any* SegmentReader failure as "a segment created
    /// but never written" and recreates the file with `O_TRUNC`. SegmentReader also fails on a complete
    /// header with another format version, a wrong magic, or a base offset that
    /// disagrees with the file name. Opening a newer-format topic with this binary therefore empties the
    /// newest segment and then (unless it is the only one) deletes it, instead of refusing. No warning is
    /// logged: `scan.fileSize` is reset to the header size, so recover() sees an empty segment. A bit flip
    /// in the magic of the newest segment loses its committed transactions the same silent way.
    /// Expected: `openWriter` throws the version error and leaves the file untouched.
    func testRecoveryWipesASegmentWithAnotherFormatVersion() throws {
        let log = try makeLog()
        var model: [Expected] = []
        let writer = try log.embeddedWriter(Fixture.topic)
        try TransactionWriter(writer: writer).writeTransaction(xid: 1, rows: 3, expected: &model)
        try writer.flush()
        writer.close()
        let path = Files.segment(log.directory(of: Fixture.topic), 0)
        var bytes = try Files.bytes(path)
        bytes[11] = 2   // format version 2
        try Files.write(bytes, to: path)

        // Readers refuse the file, as they should.
        XCTAssertThrowsError(try writer.topic.makeReader(from: 0).next(limit: 10)) { error in
            XCTAssertTrue("\(error)".contains("version 2"), "\(error)")
        }
        var reopened: EmbeddedTopicWriter?
        XCTAssertThrowsError(reopened = try log.embeddedWriter(Fixture.topic), "a newer format must not be recovered")
        reopened?.close()
        XCTAssertEqual(Files.size(path), UInt64(bytes.count), "the segment's records must survive")
        XCTAssertEqual(try Files.bytes(path).prefix(12), bytes.prefix(12), "the header must not be rewritten")
    }

    /// EmbeddedTopicWriter.swift — `append` queues an index entry for
    /// every record, committed or not, and `flush()` writes all queued entries, including those of an
    /// open transaction. If that transaction is then aborted, its entries stay in the `.idx` file, pointing
    /// at positions that the next transaction fills with different frames, or that lie past the end of
    /// the file (the writer's comment said entries "never point past a truncation"). `SegmentIndex.load`
    /// stops at the first later entry that does not increase, so the stale entries win.
    /// EmbeddedTopicReader's fallback handles only a *valid* frame with a wrong offset: a stale
    /// position past the end of the file takes the `.end` branch, which moves the reader *back*
    /// to the entry's offset without a segment, so `next` throws "no segment holds offset" (this test);
    /// a stale position inside a frame throws "cannot find offset", after SegmentReader has allocated and
    /// zero-filled whatever size the bytes there claim (up to 2 GiB; 0x70707070 from text took minutes in
    /// a debug build). Recovery on the next start rewrites the index, so this lasts until a restart.
    /// The callers then flushed only after a commit or an abort, but the TopicWriter contract allows
    /// `flush()` at any time.
    /// Expected: a reader from any committed offset works.
    func testIndexEntriesOfAnAbortedTransactionOutliveTheTruncation() throws {
        let log = try makeLog()
        var model: [Expected] = []
        let writer = try log.embeddedWriter(Fixture.topic)
        let transactions = TransactionWriter(writer: writer)
        try transactions.writeTransaction(xid: 1, rows: 1, expected: &model)
        try writer.flush()
        var ignored: [Expected] = []
        try transactions.writeTransaction(xid: 2, rows: 300, padding: 1_000, commit: false, expected: &ignored)
        try writer.flush()   // allowed mid-transaction: "makes every appended commit durable"
        try transactions.abort()
        // Smaller than the aborted transaction: the stale entries point past the end of the file.
        let t3 = try transactions.writeTransaction(xid: 3, rows: 100, padding: 10, expected: &model)
        try writer.flush()

        let directory = log.directory(of: Fixture.topic)
        let starts = Dictionary(uniqueKeysWithValues: Files.frames(try Files.bytes(Files.segment(directory, 0))).frames
            .map { (UInt64($0.position), $0.offset) })
        for entry in try Files.indexEntries(Files.index(directory, 0)) {
            XCTAssertEqual(starts[entry.position], entry.offset,
                           "index entry (offset \(entry.offset), position \(entry.position)) does not name a frame")
        }
        let from = t3.commit! - 20
        XCTAssertNoThrow(try {
            let reader = try writer.topic.makeReader(from: from)
            XCTAssertEqual(reader.position, from, "the reader starts where it was asked to")
            assertRecords(try readAll(writer.topic, from: from), match: model, from: from)
        }())
        writer.close()
    }

    /// SegmentReader.swift — `fill` reads ahead as much as its 1 MiB buffer holds, past the
    /// committed end, and EmbeddedTopicReader keeps that buffer. When the writer then aborts a transaction
    /// whose records had reached the file (past the 1 MiB pending limit) and writes another one at the
    /// same offsets, a reader returns the aborted transaction's records from its buffer: their checksums
    /// and offsets are valid. (The same holds for a reader in another process across a writer restart
    /// that truncates a torn tail.) If the replacement happens to be byte-identical — a source re-sending
    /// the same transaction — nothing is visible; otherwise readers deliver changes that were rolled back
    /// in the topic, or fail on a frame whose first half is stale ("invalid record … below the committed
    /// end", which SinkRunner treats as fatal). SourceRunner.swift/81 aborts on every source error, so
    /// a connection drop in the middle of a transaction over 1 MiB sets this up.
    /// Expected: the reader returns transaction 3's records.
    func testReaderReturnsStaleReadAheadAfterAbort() throws {
        let log = try makeLog()
        var model: [Expected] = []
        let writer = try log.embeddedWriter(Fixture.topic)
        let transactions = TransactionWriter(writer: writer)
        let t1 = try transactions.writeTransaction(xid: 1, rows: 1, expected: &model)
        try writer.flush()
        var ignored: [Expected] = []
        try transactions.writeTransaction(xid: 2, rows: 1_100, padding: 1_000, commit: false, expected: &ignored)
        XCTAssertGreaterThan(Files.size(Files.segment(log.directory(of: Fixture.topic), 0)), 1_000_000)

        let reader = try writer.topic.makeReader(from: 0)
        while try reader.next(limit: t1.commit! + 1) != nil {}
        try transactions.abort()
        let t3 = try transactions.writeTransaction(xid: 3, rows: 2, padding: 50, expected: &model)
        try writer.flush()
        XCTAssertEqual(t3.begin, t1.commit! + 1)

        var records: [(offset: UInt64, record: TopicRecord)] = []
        XCTAssertNoThrow(try {
            while let raw = try reader.next(limit: t3.commit! + 1) { records.append((raw.offset, try raw.decode())) }
        }())
        assertRecords(records, match: model, from: t3.begin)
        writer.close()
    }

    /// EmbeddedTopic.swift with Recovery.swift — after a roll the active segment is empty
    /// until the next commit. `deleteSegments(before:)` may then delete every older segment, i.e. every
    /// commit marker. On the next start recovery finds no commit marker: `lastCommit` is nil, the topic's
    /// `durableCommit` is nil and `TransactionWriter` restarts `totalEvents` at 0. PostgresSource treats a
    /// nil `lastCommit` as a new topic (its `if let last = writer.lastCommit … else createSlotAndSnapshot`)
    /// and SinkRunner's checkResumable declares the topic "deleted or recreated" (stored offset past a nil
    /// end). Retention (Retention.apply through EmbeddedLog.applyRetention) calls `deleteSegments` every 10 s.
    /// Expected: the last commit survives retention (keep the segment that holds the last commit marker).
    func testRetentionCanDeleteTheLastCommitMarker() throws {
        let log = try makeLog()
        var model: [Expected] = []
        var writer = try log.embeddedWriter(Fixture.topic, segmentBytes: 5_000)
        let transactions = TransactionWriter(writer: writer)
        try transactions.writeTransaction(xid: 1, rows: 6, padding: 1_000, expected: &model)
        let t2 = try transactions.writeTransaction(xid: 2, rows: 6, padding: 1_000, expected: &model)
        try writer.flush()
        let topic = writer.topic as! EmbeddedTopic
        XCTAssertEqual(topic.deleteSegments(before: writer.nextOffset), 1, "the segment with the last commit marker stays")
        writer.close()

        writer = try log.embeddedWriter(Fixture.topic, segmentBytes: 5_000)
        XCTAssertEqual(writer.nextOffset, t2.commit! + 1, "offsets continue")
        XCTAssertEqual(writer.lastCommit?.offset, t2.commit, "the last commit is known after a restart")
        XCTAssertEqual(writer.topic.durableCommit?.offset, t2.commit)
        XCTAssertEqual(TransactionWriter(writer: writer).lastCommit?.commit.totalEvents, 12)
        writer.close()
    }
}

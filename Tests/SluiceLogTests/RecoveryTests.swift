import Foundation
import SluiceKit
@testable import SluiceLog
import XCTest

final class RecoveryTests: LogTestCase {
    private func writeTransactions(_ log: EmbeddedLog, xids: ClosedRange<UInt32>, rows: Int = 3,
                                   model: inout [Expected]) throws -> [WrittenTransaction] {
        let writer = try log.embeddedWriter(Fixture.topic)
        let transactions = TransactionWriter(writer: writer)
        var written: [WrittenTransaction] = []
        for xid in xids { written.append(try transactions.writeTransaction(xid: xid, rows: rows, expected: &model)) }
        try writer.flush()
        writer.close()
        return written
    }

    private func recoveryWarnings() -> [LogCapture.Entry] { capture.entries(containing: "topic recovery") }

    /// The last record cut short, a few bytes at a time: the transaction it belongs to is gone.
    func testTornLastRecordIsTruncated() throws {
        for cut in [1, 5, 30] {
            capture.clear()
            let log = try makeLog()
            var model: [Expected] = []
            let written = try writeTransactions(log, xids: 1...3, model: &model)
            let path = Files.segment(log.directory(of: Fixture.topic), 0)
            let fullSize = Files.size(path)
            try Files.truncate(path, to: fullSize - UInt64(cut))

            let writer = try log.embeddedWriter(Fixture.topic)
            XCTAssertEqual(writer.nextOffset, written[2].begin, "cut \(cut): the third transaction is gone")
            XCTAssertEqual(writer.lastCommit?.offset, written[1].commit)
            XCTAssertEqual(writer.lastCommit?.commit.xid, 2)
            XCTAssertEqual(writer.topic.durableCommit?.offset, written[1].commit)
            let warnings = recoveryWarnings()
            XCTAssertEqual(warnings.count, 1, "cut \(cut): \(capture.entries)")
            XCTAssertEqual(warnings.first?.level, .warning)
            XCTAssertEqual(warnings.first?.metadata["records"], "5", "begin, relation and 3 changes precede the torn commit marker")
            XCTAssertTrue(warnings.first?.metadata["reason"]?.contains("torn") ?? false, "\(warnings)")
            XCTAssertEqual(warnings.first?.metadata["topic"], Fixture.topic)
            // The file now ends at the second commit marker.
            let bytes = try Files.bytes(path)
            let parsed = Files.frames(bytes)
            XCTAssertEqual(parsed.validEnd, bytes.count)
            XCTAssertEqual(parsed.frames.last?.offset, written[1].commit)

            // Appending continues at the right offsets, and totalEvents from the surviving commit.
            model.removeLast(written[2].records.count)
            let transactions = TransactionWriter(writer: writer)
            let again = try transactions.writeTransaction(xid: 30, rows: 2, expected: &model)
            XCTAssertEqual(again.begin, written[2].begin)
            XCTAssertEqual(writer.lastCommit?.commit.totalEvents, 8)
            try writer.flush()
            assertRecords(try readAll(writer.topic), match: model)
            writer.close()
        }
    }

    func testGarbageAfterTheLastCommitIsTruncated() throws {
        let log = try makeLog()
        var model: [Expected] = []
        let written = try writeTransactions(log, xids: 1...2, model: &model)
        let path = Files.segment(log.directory(of: Fixture.topic), 0)
        let cleanSize = Files.size(path)
        try Files.append([0xDE, 0xAD, 0xBE, 0xEF, 0x00, 0x11, 0x22], to: path)

        let writer = try log.embeddedWriter(Fixture.topic)
        XCTAssertEqual(Files.size(path), cleanSize)
        XCTAssertEqual(writer.nextOffset, written[1].commit! + 1, "no committed record is lost")
        XCTAssertEqual(writer.lastCommit?.commit.xid, 2)
        XCTAssertEqual(recoveryWarnings().count, 1)
        XCTAssertEqual(recoveryWarnings().first?.metadata["records"], "0")
        XCTAssertEqual(recoveryWarnings().first?.metadata["bytes"], "7")
        let transactions = TransactionWriter(writer: writer)
        try transactions.writeTransaction(xid: 3, rows: 1, expected: &model)
        try writer.flush()
        assertRecords(try readAll(writer.topic), match: model)
        writer.close()
    }

    /// A crash while a transaction is open: its records reached the file (past the 1 MiB pending
    /// limit) but its commit marker never did. The crash is simulated by copying the files while the
    /// writer is still open and recovering the copy.
    func testTransactionWithoutCommitMarkerIsDroppedAndLogged() throws {
        let log = try makeLog()
        var model: [Expected] = []
        let writer = try log.embeddedWriter(Fixture.topic)
        let transactions = TransactionWriter(writer: writer)
        let t1 = try transactions.writeTransaction(xid: 1, rows: 2, expected: &model)
        try writer.flush()
        let directory = log.directory(of: Fixture.topic)
        let committedSize = Files.size(Files.segment(directory, 0))
        var ignored: [Expected] = []
        try transactions.writeTransaction(xid: 2, rows: 1_200, padding: 1_000, commit: false, expected: &ignored)
        let crashSize = Files.size(Files.segment(directory, 0))
        XCTAssertGreaterThan(crashSize, committedSize + 1_000_000, "the open transaction reached the file")
        let onDisk = Files.frames(try Files.bytes(Files.segment(directory, 0))).frames.count - 5   // minus transaction 1

        let copy = try makeDataDirectory()
        try Files.copyDirectory(directory, to: copy + "/topics/" + Fixture.topic)
        let recoveredCapture = LogCapture()
        let recoveredLog = EmbeddedLog(dataDirectory: copy, logger: recoveredCapture.logger)
        let recovered = try recoveredLog.embeddedWriter(Fixture.topic)
        XCTAssertEqual(recovered.nextOffset, t1.commit! + 1)
        XCTAssertEqual(recovered.lastCommit?.offset, t1.commit)
        XCTAssertEqual(recovered.lastCommit?.commit.totalEvents, 2)
        XCTAssertEqual(Files.size(Files.segment(copy + "/topics/" + Fixture.topic, 0)), committedSize)
        let warnings = recoveredCapture.entries(containing: "truncated records after the last commit marker")
        XCTAssertEqual(warnings.count, 1, "\(recoveredCapture.entries)")
        XCTAssertEqual(warnings.first?.metadata["reason"], "transaction without commit marker")
        XCTAssertEqual(warnings.first?.metadata["records"], "\(onDisk)")
        XCTAssertEqual(warnings.first?.metadata["bytes"], "\(crashSize - committedSize)")
        assertRecords(try readAll(recovered.topic), match: model)
        // The recovered copy takes new transactions at the freed offsets.
        let more = try TransactionWriter(writer: recovered).writeTransaction(xid: 3, rows: 1, expected: &model)
        XCTAssertEqual(more.begin, t1.commit! + 1)
        try recovered.flush()
        assertRecords(try readAll(recovered.topic), match: model)
        recovered.close()

        try transactions.abort()
        writer.close()
    }

    /// A committed record in the middle of the last segment is corrupt (one flipped bit). Recovery
    /// keeps everything up to the last commit marker *before* the bad record and drops the rest,
    /// including transactions after it that were complete: records past a bad one cannot be trusted
    /// to be the records that followed it.
    func testCorruptionInTheMiddleTruncatesAtTheLastCommitBeforeIt() throws {
        let log = try makeLog()
        var model: [Expected] = []
        let written = try writeTransactions(log, xids: 1...5, model: &model)
        let path = Files.segment(log.directory(of: Fixture.topic), 0)
        var bytes = try Files.bytes(path)
        let frames = Files.frames(bytes).frames
        // The second change of transaction 3.
        let victim = try XCTUnwrap(frames.first { $0.offset == written[2].begin + 3 })
        bytes[victim.body.lowerBound + 20] ^= 0x04
        try Files.write(bytes, to: path)

        let writer = try log.embeddedWriter(Fixture.topic)
        XCTAssertEqual(writer.lastCommit?.offset, written[1].commit)
        XCTAssertEqual(writer.nextOffset, written[2].begin)
        XCTAssertEqual(Files.size(path), UInt64(frames.first { $0.offset == written[2].begin }!.position))
        let warning = try XCTUnwrap(recoveryWarnings().first)
        XCTAssertEqual(warning.metadata["reason"], "checksum mismatch at byte \(victim.position)")
        XCTAssertEqual(warning.metadata["records"], "3", "begin, relation, first change of transaction 3")
        assertRecords(try readAll(writer.topic), match: Array(model[0..<Int(written[2].begin)]))
        writer.close()
    }

    func testCorruptCommitMarkerDropsItsTransaction() throws {
        let log = try makeLog()
        var model: [Expected] = []
        let written = try writeTransactions(log, xids: 1...3, model: &model)
        let path = Files.segment(log.directory(of: Fixture.topic), 0)
        var bytes = try Files.bytes(path)
        let commit = try XCTUnwrap(Files.frames(bytes).frames.first { $0.offset == written[1].commit })
        bytes[commit.position + 12] ^= 0xFF   // inside the offset field
        try Files.write(bytes, to: path)
        let writer = try log.embeddedWriter(Fixture.topic)
        XCTAssertEqual(writer.lastCommit?.offset, written[0].commit)
        XCTAssertEqual(writer.nextOffset, written[1].begin)
        writer.close()
    }

    /// A frame whose checksum is fine but whose offset is out of sequence also ends the valid log.
    func testOutOfSequenceOffsetStopsRecovery() throws {
        let log = try makeLog()
        var model: [Expected] = []
        let written = try writeTransactions(log, xids: 1...3, model: &model)
        let path = Files.segment(log.directory(of: Fixture.topic), 0)
        var bytes = try Files.bytes(path)
        let frame = try XCTUnwrap(Files.frames(bytes).frames.first { $0.offset == written[2].begin + 1 })
        var copy = Array(bytes[frame.position..<(frame.position + frame.length)])
        // Rewrite the offset to 999 and reseal.
        Frame.seal(&copy, at: 0, kind: copy[9], offset: 999)
        bytes.replaceSubrange(frame.position..<(frame.position + frame.length), with: copy)
        try Files.write(bytes, to: path)
        let writer = try log.embeddedWriter(Fixture.topic)
        XCTAssertEqual(writer.lastCommit?.offset, written[1].commit)
        XCTAssertEqual(writer.nextOffset, written[2].begin)
        XCTAssertEqual(recoveryWarnings().first?.metadata["reason"], "offset 999 where \(written[2].begin + 1) was expected")
        writer.close()
    }

    /// Corruption at the start of the newest segment: that segment has no valid commit marker, so it
    /// is deleted and the previous segment becomes the active one again.
    func testNewestSegmentWithoutValidCommitIsDeleted() throws {
        let log = try makeLog()
        var model: [Expected] = []
        let directory = log.directory(of: Fixture.topic)
        var writer = try log.embeddedWriter(Fixture.topic, segmentBytes: 10_000)
        var transactions = TransactionWriter(writer: writer)
        var written: [WrittenTransaction] = []
        for xid in UInt32(1)...3 {
            written.append(try transactions.writeTransaction(xid: xid, rows: 12, padding: 1_000, expected: &model))
        }
        try writer.flush()
        writer.close()
        let bases = SegmentFile.list(directory)
        XCTAssertEqual(bases, [0, written[0].commit! + 1, written[1].commit! + 1, written[2].commit! + 1])
        // Corrupt the first record (the begin) of the segment holding transaction 3.
        let victimBase = bases[2]
        var bytes = try Files.bytes(Files.segment(directory, victimBase))
        bytes[20 + 19] ^= 0x01
        try Files.write(bytes, to: Files.segment(directory, victimBase))

        writer = try log.embeddedWriter(Fixture.topic, segmentBytes: 10_000)
        XCTAssertEqual(SegmentFile.list(directory), [0, bases[1]], "the empty newest and the corrupt segment are gone")
        XCTAssertFalse(FileManager.default.fileExists(atPath: Files.index(directory, victimBase)))
        XCTAssertEqual(writer.lastCommit?.offset, written[1].commit)
        XCTAssertEqual(writer.nextOffset, written[1].commit! + 1)
        XCTAssertEqual(capture.entries(containing: "deleted segment without a commit marker").count, 1,
                       "the header-only segment is removed silently, the corrupt one with a warning")
        transactions = TransactionWriter(writer: writer)
        model.removeLast(written[2].records.count)
        try transactions.writeTransaction(xid: 4, rows: 1, expected: &model)
        try writer.flush()
        assertRecords(try readAll(writer.topic), match: model)
        writer.close()
    }

    /// A segment created by a roll whose header never reached the disk.
    func testTornHeaderOfNewestSegment() throws {
        let log = try makeLog()
        var model: [Expected] = []
        let directory = log.directory(of: Fixture.topic)
        let writer = try log.embeddedWriter(Fixture.topic, segmentBytes: 1_000)
        let t1 = try TransactionWriter(writer: writer).writeTransaction(xid: 1, rows: 2, padding: 600, expected: &model)
        try writer.flush()
        writer.close()
        let newest = t1.commit! + 1
        XCTAssertEqual(SegmentFile.list(directory), [0, newest])
        try Files.truncate(Files.segment(directory, newest), to: 7)

        let reopened = try log.embeddedWriter(Fixture.topic, segmentBytes: 1_000)
        XCTAssertEqual(SegmentFile.list(directory), [0])
        XCTAssertEqual(reopened.nextOffset, newest)
        XCTAssertEqual(reopened.lastCommit?.offset, t1.commit)
        reopened.close()
    }

    /// Recovery rewrites the active segment's index from the records it verified.
    func testRecoveryRebuildsTheActiveIndex() throws {
        let log = try makeLog()
        var model: [Expected] = []
        let directory = log.directory(of: Fixture.topic)
        var writer = try log.embeddedWriter(Fixture.topic)
        try TransactionWriter(writer: writer).writeTransaction(xid: 1, rows: 300, padding: 1_000, expected: &model)
        try writer.flush()
        writer.close()
        try Files.write([0xFF, 0xFF, 0xFF], to: Files.index(directory, 0))   // garbage cache

        writer = try log.embeddedWriter(Fixture.topic)
        let entries = try Files.indexEntries(Files.index(directory, 0))
        XCTAssertEqual(entries.first?.offset, 0, "recovery indexes the first record")
        XCTAssertEqual(entries.first?.position, 20)
        XCTAssertGreaterThanOrEqual(entries.count, 4)
        let starts = Dictionary(uniqueKeysWithValues: Files.frames(try Files.bytes(Files.segment(directory, 0))).frames
            .map { (UInt64($0.position), $0.offset) })
        for entry in entries { XCTAssertEqual(starts[entry.position], entry.offset) }
        assertRecords(try readAll(writer.topic, from: 250), match: model, from: 250)
        writer.close()
    }
}

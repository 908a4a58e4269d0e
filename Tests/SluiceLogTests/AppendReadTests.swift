import Foundation
import SluiceKit
@testable import SluiceLog
import XCTest

final class AppendReadTests: LogTestCase {
    func testEmptyTopic() throws {
        let log = try makeLog()
        XCTAssertFalse(log.exists(Fixture.topic))
        let writer = try log.embeddedWriter(Fixture.topic)
        defer { writer.close() }
        XCTAssertTrue(log.exists(Fixture.topic))
        XCTAssertEqual(writer.nextOffset, 0)
        XCTAssertNil(writer.lastCommit)
        XCTAssertNil(writer.topic.durableCommit)
        XCTAssertEqual(writer.topic.firstOffset, 0)
        XCTAssertEqual(Files.size(Files.segment(log.directory(of: Fixture.topic), 0)), 20, "header only")
        XCTAssertEqual(log.directory(of: Fixture.topic), log.dataDirectory + "/topics/" + Fixture.topic)
        // flush without any commit returns at once.
        try writer.flush()
        let reader = try writer.topic.makeReader(from: 0)
        XCTAssertNil(try reader.next(limit: 0))
        XCTAssertEqual(reader.position, 0)
    }

    func testAppendReadAndReopen() throws {
        let log = try makeLog()
        var model: [Expected] = []
        var writer = try log.embeddedWriter(Fixture.topic)
        var transactions = TransactionWriter(writer: writer)
        var written: [WrittenTransaction] = []
        for xid in UInt32(700)..<705 {
            written.append(try transactions.writeTransaction(xid: xid, rows: Int(xid % 4) + 1, expected: &model))
        }
        XCTAssertEqual(writer.nextOffset, UInt64(model.count))
        XCTAssertEqual(writer.lastCommit?.offset, written.last?.commit)
        try writer.flush()
        XCTAssertEqual(writer.topic.durableCommit?.offset, UInt64(model.count - 1), "flush makes the last commit durable")
        XCTAssertEqual(writer.topic.durableCommit, writer.lastCommit)
        XCTAssertEqual(try writer.topic.commitMarker(at: written[2].commit!)?.xid, 702)
        XCTAssertNil(try writer.topic.commitMarker(at: written[2].begin), "a begin is not a commit marker")
        assertRecords(try readAll(writer.topic), match: model)
        writer.close()

        // Reopen: recovery finds the last commit marker; nothing was lost or added.
        capture.clear()
        writer = try log.embeddedWriter(Fixture.topic)
        XCTAssertEqual(writer.nextOffset, UInt64(model.count))
        XCTAssertEqual(writer.lastCommit?.offset, written.last?.commit)
        XCTAssertEqual(writer.lastCommit?.commit.totalEvents, 1 + 2 + 3 + 4 + 1)
        XCTAssertEqual(writer.topic.durableCommit, writer.lastCommit, "the recovered commit is durable at once")
        XCTAssertTrue(capture.entries(containing: "recovery").isEmpty, "a clean log needs no repair: \(capture.entries)")
        assertRecords(try readAll(writer.topic), match: model)

        // Append more after reopening; totalEvents continues from the recovered commit.
        transactions = TransactionWriter(writer: writer)
        try transactions.writeTransaction(xid: 900, rows: 3, expected: &model)
        try writer.flush()
        writer.close()

        // A third incarnation, readers only through a fresh EmbeddedLog (no writer in this process).
        let other = EmbeddedLog(dataDirectory: log.dataDirectory, logger: capture.logger)
        let topic = other.topic(Fixture.topic)
        XCTAssertEqual(topic.durableCommit?.offset, UInt64(model.count - 1))
        XCTAssertEqual(topic.durableCommit?.commit.totalEvents, 14)
        assertRecords(try readAll(topic), match: model)
        // Readers from each offset see the rest.
        for start in [1, 5, model.count / 2, model.count - 1] {
            assertRecords(try readAll(topic, from: UInt64(start)), match: model, from: UInt64(start))
        }
        _ = writer
    }

    /// The on-disk bytes agree with the documented format, read by the tests' own parser.
    func testFilesMatchTheDocumentedFormat() throws {
        let log = try makeLog()
        var model: [Expected] = []
        let writer = try log.embeddedWriter(Fixture.topic)
        let transactions = TransactionWriter(writer: writer)
        try transactions.writeTransaction(xid: 42, rows: 2, expected: &model)
        try writer.flush()
        writer.close()
        let bytes = try Files.bytes(Files.segment(log.directory(of: Fixture.topic), 0))
        XCTAssertEqual(Array(bytes[0..<20]), SegmentFile.header(base: 0))
        let parsed = Files.frames(bytes)
        XCTAssertEqual(parsed.validEnd, bytes.count, "the file is nothing but frames")
        XCTAssertEqual(parsed.frames.map(\.kind), [1, 2, 3, 3, 4])
        XCTAssertEqual(parsed.frames.map(\.offset), [0, 1, 2, 3, 4])
        XCTAssertTrue(parsed.frames.allSatisfy { bytes[$0.position + 8] == 1 }, "record format version 1")

        // begin: xid u32, commit LSN u64, commit time i64.
        let begin = parsed.frames[0].body
        XCTAssertEqual(begin.count, 20)
        XCTAssertEqual(Files.u32(bytes, begin.lowerBound), 42)
        XCTAssertEqual(Files.u64(bytes, begin.lowerBound + 4), Fixture.commitLSN(42).rawValue)
        XCTAssertEqual(Int64(bitPattern: Files.u64(bytes, begin.lowerBound + 12)), Fixture.commitTime(42))

        // relation: id, schema, table, identity, column count, columns.
        var at = parsed.frames[1].body.lowerBound
        XCTAssertEqual(Files.u32(bytes, at), Fixture.users.id); at += 4
        XCTAssertEqual(Int(bytes[at]) << 8 | Int(bytes[at + 1]), 6); at += 2
        XCTAssertEqual(String(decoding: bytes[at..<(at + 6)], as: UTF8.self), "public"); at += 6
        XCTAssertEqual(Int(bytes[at]) << 8 | Int(bytes[at + 1]), 5); at += 2 + 5
        XCTAssertEqual(bytes[at], UInt8(ascii: "d")); at += 1
        XCTAssertEqual(Int(bytes[at]) << 8 | Int(bytes[at + 1]), 3); at += 2
        XCTAssertEqual(bytes[at], 3, "id: replica identity (1) | primary key (2)")

        // change: op, relation, lsn, tuple (count u16, kind, len u32, bytes...).
        let change = parsed.frames[2].body
        XCTAssertEqual(bytes[change.lowerBound], UInt8(ascii: "i"))
        XCTAssertEqual(Files.u32(bytes, change.lowerBound + 1), Fixture.users.id)
        XCTAssertEqual(Files.u64(bytes, change.lowerBound + 5), Fixture.changeLSN(42, 0).rawValue)
        XCTAssertEqual(Array(bytes[(change.lowerBound + 13)...].prefix(2)), [0, 3], "three columns")
        XCTAssertEqual(bytes[change.lowerBound + 15], UInt8(ascii: "t"))
        XCTAssertEqual(Array(bytes[change.lowerBound + 13..<change.upperBound]), Fixture.tuple(Fixture.row(42, 0, padding: 16)))

        // commit: xid, commit LSN, end LSN, commit time, eventCount, totalEvents.
        let commit = parsed.frames[4].body
        XCTAssertEqual(commit.count, 44)
        XCTAssertEqual(Files.u32(bytes, commit.lowerBound), 42)
        XCTAssertEqual(Files.u64(bytes, commit.lowerBound + 4), Fixture.commitLSN(42).rawValue)
        XCTAssertEqual(Files.u64(bytes, commit.lowerBound + 12), Fixture.endLSN(42).rawValue)
        XCTAssertEqual(Files.u64(bytes, commit.lowerBound + 28), 2)
        XCTAssertEqual(Files.u64(bytes, commit.lowerBound + 36), 2)
    }

    /// Writes ~100 KiB transactions into 150 KB segments: several segments, each with index entries.
    private func writeManySegments(_ log: EmbeddedLog, model: inout [Expected]) throws -> [UInt64] {
        let writer = try log.embeddedWriter(Fixture.topic, segmentBytes: 150_000)
        let transactions = TransactionWriter(writer: writer)
        for xid in UInt32(1)...24 {
            // 40 rows of ~1 KiB; some transactions are bigger than the pending limit.
            let rows = xid % 8 == 0 ? 1_200 : 40
            try transactions.writeTransaction(xid: xid, rows: rows, padding: 1_000, expected: &model)
        }
        try writer.flush()
        writer.close()
        return SegmentFile.list(log.directory(of: Fixture.topic))
    }

    func testSegmentsRollAtCommitBoundariesAndIndexPointsAtFrames() throws {
        let log = try makeLog()
        var model: [Expected] = []
        let bases = try writeManySegments(log, model: &model)
        let directory = log.directory(of: Fixture.topic)
        XCTAssertGreaterThanOrEqual(bases.count, 5, "segments: \(bases)")
        XCTAssertEqual(bases.first, 0)
        var expectedBase: UInt64 = 0
        for (i, base) in bases.enumerated() {
            XCTAssertEqual(base, expectedBase, "each segment starts where the previous ended")
            let bytes = try Files.bytes(Files.segment(directory, base))
            let parsed = Files.frames(bytes)
            XCTAssertEqual(parsed.base, base, "header base offset")
            XCTAssertEqual(parsed.validEnd, bytes.count)
            guard !parsed.frames.isEmpty else {
                XCTAssertEqual(i, bases.count - 1, "only the active segment may be empty")
                continue
            }
            XCTAssertEqual(parsed.frames.first?.offset, base)
            if case .begin = model[Int(base)] {} else { XCTFail("segment \(base) does not start at a begin record") }
            if i + 1 < bases.count {
                XCTAssertEqual(parsed.frames.last?.kind, RecordKind.commit.rawValue, "segments end at a commit marker")
                XCTAssertGreaterThanOrEqual(bytes.count, 150_000, "a segment rolls only once it reaches segmentBytes")
            }
            // Every index entry names a frame start and that frame's offset; entries are ≥ 64 KiB apart.
            let entries = try Files.indexEntries(Files.index(directory, base))
            if bytes.count > 70_000 { XCTAssertFalse(entries.isEmpty, "segment \(base) has no index entry") }
            let starts = Dictionary(uniqueKeysWithValues: parsed.frames.map { (UInt64($0.position), $0.offset) })
            for (j, entry) in entries.enumerated() {
                XCTAssertEqual(starts[entry.position], entry.offset, "index entry \(j) of segment \(base)")
                if j > 0 { XCTAssertGreaterThanOrEqual(entry.position - entries[j - 1].position, 65_536) }
            }
            expectedBase = parsed.frames.last!.offset + 1
        }
        XCTAssertEqual(expectedBase, UInt64(model.count))
    }

    func testReaderFromTheMiddleOfEachSegment() throws {
        let log = try makeLog()
        var model: [Expected] = []
        let bases = try writeManySegments(log, model: &model)
        let directory = log.directory(of: Fixture.topic)
        let topic = EmbeddedTopic.openForReading(name: Fixture.topic, directory: directory, logger: capture.logger)
        let end = try XCTUnwrap(topic.durableCommit).offset + 1
        XCTAssertEqual(end, UInt64(model.count))
        var starts: Set<UInt64> = [0, end - 1]
        for (i, base) in bases.enumerated() {
            let next = i + 1 < bases.count ? bases[i + 1] : end
            starts.formUnion([base, base + 1, (base + next) / 2, next - 1])
            for entry in try Files.indexEntries(Files.index(directory, base)) {
                starts.formUnion([entry.offset - 1, entry.offset, entry.offset + 1])
            }
        }
        for start in starts.sorted() where start < end {
            let reader = try topic.makeReader(from: start)
            XCTAssertEqual(reader.position, start)
            // Read a window rather than to the end, to keep the test quick.
            var records: [(offset: UInt64, record: TopicRecord)] = []
            while records.count < 60, let raw = try reader.next(limit: end) {
                records.append((raw.offset, try raw.decode()))
            }
            XCTAssertEqual(records.first?.offset, start, "reader from \(start)")
            let window = Array(model[0..<(Int(start) + records.count)])
            assertRecords(records, match: window, from: start)
        }
        // One reader across every segment boundary.
        assertRecords(try readAll(topic, from: 3), match: model, from: 3)
    }

    /// A reader created exactly at the end of the log (a caught-up sink restarting at its checkpoint + 1)
    /// sees what is appended later, in the same segment and across a roll.
    func testReaderCreatedAtTheEndSeesLaterRecords() throws {
        let log = try makeLog()
        var model: [Expected] = []
        let writer = try log.embeddedWriter(Fixture.topic, segmentBytes: 4_000)
        let transactions = TransactionWriter(writer: writer)
        let t1 = try transactions.writeTransaction(xid: 1, rows: 2, expected: &model)
        try writer.flush()
        let reader = try writer.topic.makeReader(from: t1.commit! + 1)
        XCTAssertEqual(reader.position, t1.commit! + 1)
        XCTAssertNil(try reader.next(limit: t1.commit! + 1))
        let t2 = try transactions.writeTransaction(xid: 2, rows: 5, padding: 1_000, expected: &model)  // rolls
        let t3 = try transactions.writeTransaction(xid: 3, rows: 1, expected: &model)
        try writer.flush()
        XCTAssertEqual(SegmentFile.list(log.directory(of: Fixture.topic)), [0, t2.commit! + 1])
        var records: [(offset: UInt64, record: TopicRecord)] = []
        while let raw = try reader.next(limit: t3.commit! + 1) { records.append((raw.offset, try raw.decode())) }
        assertRecords(records, match: model, from: t2.begin)
        // Readers created at the end of a segment holding records, and at the base of an empty one.
        for (xid, padding) in [(UInt32(4), 16), (5, 1_000), (6, 16)] {
            let start = writer.nextOffset
            let late = try writer.topic.makeReader(from: start)
            XCTAssertEqual(late.position, start)
            try transactions.writeTransaction(xid: xid, rows: 4, padding: padding, expected: &model)
            try writer.flush()
            var offsets: [UInt64] = []
            while let raw = try late.next(limit: writer.nextOffset) { offsets.append(raw.offset) }
            XCTAssertEqual(offsets, Array(start..<writer.nextOffset), "reader created at \(start)")
        }
        XCTAssertEqual(SegmentFile.list(log.directory(of: Fixture.topic)).last, writer.nextOffset - 7,
                       "transaction 6 went into the segment rolled after transaction 5")
        writer.close()
    }

    func testReadersNeverSeeUncommittedRecords() throws {
        let log = try makeLog()
        var model: [Expected] = []
        let writer = try log.embeddedWriter(Fixture.topic)
        let transactions = TransactionWriter(writer: writer)
        let topic = writer.topic
        let reader = try topic.makeReader(from: 0)
        XCTAssertNil(topic.durableCommit)

        let first = try transactions.writeTransaction(xid: 1, rows: 2, expected: &model)
        try writer.flush()
        var durable = try XCTUnwrap(topic.durableCommit)
        XCTAssertEqual(durable.offset, first.commit)
        while let raw = try reader.next(limit: durable.offset + 1) { _ = try raw.decode() }
        XCTAssertEqual(reader.position, durable.offset + 1)

        // An open transaction, small (still buffered in memory)...
        var ignored: [Expected] = []
        let open = try transactions.writeTransaction(xid: 2, rows: 3, commit: false, expected: &ignored)
        XCTAssertEqual(topic.durableCommit, durable)
        XCTAssertNil(try reader.next(limit: topic.durableCommit!.offset + 1))
        // ...then big enough that its records reach the file before the commit marker.
        let directory = log.directory(of: Fixture.topic)
        let sizeBefore = Files.size(Files.segment(directory, 0))
        for row in 3..<1_300 {
            try Fixture.tuple(Fixture.row(2, row, padding: 1_000)).withUnsafeBytes {
                try transactions.change(.insert, relation: Fixture.users.id, lsn: Fixture.changeLSN(2, row), new: $0)
            }
        }
        XCTAssertGreaterThan(Files.size(Files.segment(directory, 0)), sizeBefore + 1_000_000,
                             "a transaction past the pending limit is written ahead of its commit")
        Thread.sleep(forTimeInterval: 0.05)
        XCTAssertEqual(topic.durableCommit, durable, "records of an open transaction are not durable")
        XCTAssertNil(try reader.next(limit: topic.durableCommit!.offset + 1))
        XCTAssertEqual(reader.position, open.begin)
        // A scanner in another "process" does not count them either.
        let scanner = EmbeddedTopic.openForReading(name: Fixture.topic, directory: directory, logger: capture.logger)
        XCTAssertEqual(scanner.durableCommit, durable)

        try transactions.commit(commitLSN: Fixture.commitLSN(2), endLSN: Fixture.endLSN(2), commitTime: Fixture.commitTime(2))
        XCTAssertEqual(writer.lastCommit?.offset, open.begin + 2 + 1_300)
        try writer.flush()
        durable = try XCTUnwrap(topic.durableCommit)
        XCTAssertEqual(durable.offset, open.begin + 2 + 1_300)
        XCTAssertEqual(durable.commit.eventCount, 1_300)
        XCTAssertEqual(durable.commit.totalEvents, 1_302)
        var seen: [UInt64] = []
        while let raw = try reader.next(limit: durable.offset + 1) {
            seen.append(raw.offset)
            if raw.offset == open.begin {
                guard case let .begin(begin) = try raw.decode() else { return XCTFail("not a begin") }
                XCTAssertEqual(begin.xid, 2)
            }
        }
        XCTAssertEqual(seen, Array(open.begin...durable.offset))
        XCTAssertEqual(scanner.durableCommit, durable)
        writer.close()
    }

    /// The flusher thread makes commits durable on its own; `flush` only waits for it.
    func testCommitsBecomeDurableWithoutFlush() throws {
        let log = try makeLog()
        var model: [Expected] = []
        let writer = try log.embeddedWriter(Fixture.topic)
        let transactions = TransactionWriter(writer: writer)
        var last: WrittenTransaction?
        for xid in UInt32(1)...50 { last = try transactions.writeTransaction(xid: xid, rows: 2, expected: &model) }
        XCTAssertEqual(writer.lastCommit?.offset, last?.commit, "lastCommit moves at append, durable or not")
        XCTAssertTrue(writer.topic.waitForCommit(after: last!.commit! - 1, timeoutMillis: 10_000))
        XCTAssertEqual(writer.topic.durableCommit?.offset, last?.commit)
        XCTAssertEqual(writer.topic.durableCommit?.commit.totalEvents, 100)
        assertRecords(try readAll(writer.topic), match: model)
        writer.close()
    }

    func testWaitForCommitWithAWriterInProcess() throws {
        let log = try makeLog()
        var model: [Expected] = []
        let writer = try log.embeddedWriter(Fixture.topic)
        let transactions = TransactionWriter(writer: writer)
        let topic = writer.topic

        var started = Date()
        XCTAssertFalse(topic.waitForCommit(after: nil, timeoutMillis: 100), "no commit at all yet")
        XCTAssertGreaterThanOrEqual(Date().timeIntervalSince(started), 0.09)

        let first = try transactions.writeTransaction(xid: 1, rows: 1, expected: &model)
        try writer.flush()
        XCTAssertTrue(topic.waitForCommit(after: nil, timeoutMillis: 0), "any commit satisfies after: nil")
        XCTAssertTrue(topic.waitForCommit(after: first.commit! - 1, timeoutMillis: 0))
        started = Date()
        XCTAssertFalse(topic.waitForCommit(after: first.commit!, timeoutMillis: 150))
        let waited = Date().timeIntervalSince(started)
        XCTAssertGreaterThanOrEqual(waited, 0.14)
        XCTAssertLessThan(waited, 5)

        // Another thread commits while this one waits.
        let box = UncheckedBox((writer, transactions))
        let done = DispatchSemaphore(value: 0)
        Thread {
            Thread.sleep(forTimeInterval: 0.2)
            var ignored: [Expected] = []
            _ = try? box.value.1.writeTransaction(xid: 2, rows: 2, expected: &ignored)
            try? box.value.0.flush()
            done.signal()
        }.start()
        started = Date()
        XCTAssertTrue(topic.waitForCommit(after: first.commit!, timeoutMillis: 10_000))
        XCTAssertLessThan(Date().timeIntervalSince(started), 9)
        XCTAssertEqual(topic.durableCommit?.offset, first.commit! + 5)
        done.wait()
        writer.close()
    }

    func testOpenForReadingScansForTheLastCommitIncrementally() throws {
        let log = try makeLog()
        var model: [Expected] = []
        let directory = log.directory(of: Fixture.topic)
        let scanner = EmbeddedTopic.openForReading(name: Fixture.topic, directory: directory, logger: capture.logger)
        XCTAssertNil(scanner.durableCommit, "no directory yet")
        XCTAssertFalse(FileManager.default.fileExists(atPath: directory), "reading creates nothing")
        XCTAssertFalse(scanner.waitForCommit(after: nil, timeoutMillis: 60))

        let writer = try log.embeddedWriter(Fixture.topic, segmentBytes: 20_000)
        let transactions = TransactionWriter(writer: writer)
        XCTAssertNil(scanner.durableCommit, "an empty segment has no commit")
        let t1 = try transactions.writeTransaction(xid: 1, rows: 3, expected: &model)
        try writer.flush()
        XCTAssertEqual(scanner.durableCommit?.offset, t1.commit)
        XCTAssertEqual(scanner.durableCommit?.commit.xid, 1)
        let t2 = try transactions.writeTransaction(xid: 2, rows: 2, expected: &model)
        try writer.flush()
        XCTAssertEqual(scanner.durableCommit?.offset, t2.commit, "a later commit in the same segment")
        XCTAssertEqual(scanner.durableCommit?.commit.totalEvents, 5)

        // Cross segment boundaries: each transaction of ~24 KB rolls the 20 KB segments.
        var last = t2
        for xid in UInt32(3)...6 {
            last = try transactions.writeTransaction(xid: xid, rows: 20, padding: 1_200, expected: &model)
        }
        try writer.flush()
        XCTAssertGreaterThan(SegmentFile.list(directory).count, 3)
        XCTAssertEqual(scanner.durableCommit?.offset, last.commit, "a commit in a newer segment")
        XCTAssertEqual(scanner.durableCommit?.commit.xid, 6)

        // The poll-based wait sees a commit made by the writer meanwhile.
        XCTAssertFalse(scanner.waitForCommit(after: last.commit!, timeoutMillis: 120))
        let box = UncheckedBox((writer, transactions))
        Thread {
            Thread.sleep(forTimeInterval: 0.15)
            var ignored: [Expected] = []
            _ = try? box.value.1.writeTransaction(xid: 7, rows: 1, expected: &ignored)
            try? box.value.0.flush()
        }.start()
        XCTAssertTrue(scanner.waitForCommit(after: last.commit!, timeoutMillis: 10_000))
        XCTAssertEqual(scanner.durableCommit?.commit.xid, 7)
        model.append(contentsOf: [.begin(xid: 7), .relation(id: Fixture.users.id),
                                  .change(xid: 7, row: 0, values: Fixture.row(7, 0, padding: 16)),
                                  .commit(xid: 7, eventCount: 1, totalEvents: 86)])
        assertRecords(try readAll(scanner), match: model)
        writer.close()
        XCTAssertEqual(scanner.durableCommit?.commit.xid, 7)
        XCTAssertEqual(writer.topic.durableCommit?.commit.xid, 7, "the writer's topic scans once the writer is closed")
    }

    func testAbortRemovesTheOpenTransactionAndOffsetsAreReused() throws {
        let log = try makeLog()
        var model: [Expected] = []
        let directory = log.directory(of: Fixture.topic)
        var writer = try log.embeddedWriter(Fixture.topic)
        let transactions = TransactionWriter(writer: writer)
        let t1 = try transactions.writeTransaction(xid: 1, rows: 4, expected: &model)
        try writer.flush()
        let committedSize = Files.size(Files.segment(directory, 0))

        // A small open transaction: only in memory.
        var ignored: [Expected] = []
        try transactions.writeTransaction(xid: 2, rows: 5, commit: false, expected: &ignored)
        XCTAssertEqual(writer.nextOffset, t1.commit! + 8)
        try transactions.abort()
        XCTAssertFalse(transactions.isOpen)
        XCTAssertEqual(writer.nextOffset, t1.commit! + 1)
        XCTAssertEqual(Files.size(Files.segment(directory, 0)), committedSize)

        // A big one: its records are in the file before it is aborted.
        try transactions.writeTransaction(xid: 3, rows: 1_500, padding: 1_000, commit: false, expected: &ignored)
        XCTAssertGreaterThan(Files.size(Files.segment(directory, 0)), committedSize + 1_000_000)
        try transactions.abort()
        XCTAssertEqual(writer.nextOffset, t1.commit! + 1)
        XCTAssertEqual(Files.size(Files.segment(directory, 0)), committedSize, "the file is cut back to the last commit")
        XCTAssertEqual(writer.lastCommit?.offset, t1.commit)

        // The next transaction reuses the offsets; its relation record is written again.
        let t4 = try transactions.writeTransaction(xid: 4, rows: 2, expected: &model)
        XCTAssertEqual(t4.begin, t1.commit! + 1)
        XCTAssertEqual(writer.lastCommit?.commit.totalEvents, 6, "aborted changes are not counted")
        try writer.flush()
        assertRecords(try readAll(writer.topic), match: model)
        writer.close()

        writer = try log.embeddedWriter(Fixture.topic)
        XCTAssertEqual(writer.nextOffset, t4.commit! + 1)
        assertRecords(try readAll(writer.topic), match: model)
        XCTAssertEqual(Files.frames(try Files.bytes(Files.segment(directory, 0))).validEnd,
                       Int(Files.size(Files.segment(directory, 0))))
        writer.close()
    }

    func testAbortWithoutACommitCutsBackToTheSegmentStart() throws {
        let log = try makeLog()
        var model: [Expected] = []
        let directory = log.directory(of: Fixture.topic)
        let writer = try log.embeddedWriter(Fixture.topic)
        let transactions = TransactionWriter(writer: writer)
        var ignored: [Expected] = []
        try transactions.writeTransaction(xid: 1, rows: 1_500, padding: 1_000, commit: false, expected: &ignored)
        XCTAssertGreaterThan(Files.size(Files.segment(directory, 0)), 1_000_000)
        try transactions.abort()
        XCTAssertEqual(writer.nextOffset, 0)
        XCTAssertEqual(Files.size(Files.segment(directory, 0)), 20)
        try transactions.writeTransaction(xid: 2, rows: 1, expected: &model)
        try writer.flush()
        assertRecords(try readAll(writer.topic), match: model)
        writer.close()
    }

    func testFailedEncoderAppendsNothing() throws {
        let log = try makeLog()
        var model: [Expected] = []
        let writer = try log.embeddedWriter(Fixture.topic)
        let transactions = TransactionWriter(writer: writer)
        try transactions.writeTransaction(xid: 1, rows: 1, expected: &model)
        struct Boom: Error {}
        XCTAssertThrowsError(try writer.append(.change) { body in
            body.u8(1)
            throw Boom()
        })
        XCTAssertEqual(writer.nextOffset, UInt64(model.count), "a failed encoder appends nothing")
        try transactions.writeTransaction(xid: 2, rows: 1, expected: &model)
        try writer.flush()
        assertRecords(try readAll(writer.topic), match: model)
        writer.close()
    }
}

import PGOutput
import XCTest

/// Protocol version 2 streaming, captured with `logical_decoding_work_mem = 64kB`.
/// The fixtures keep every stream control message but only some of the DML inside each block.
final class StreamingFixtureTests: XCTestCase {
    /// Splits a streamed dump into blocks: the messages from each Stream Start to its Stream Stop, inclusive.
    private func blocks(_ decoded: [Decoded]) -> [[Decoded]] {
        var result: [[Decoded]] = []
        var current: [Decoded]?
        for item in decoded {
            switch item.message {
            case .streamStart: current = [item]
            case .streamStop:
                if var block = current { block.append(item); result.append(block) }
                current = nil
            default: current?.append(item)
            }
        }
        return result
    }

    func testStreamedTransactionThatCommits() throws {
        let decoded = try FixtureFile.named("stream_commit").decodeAll()
        XCTAssertFalse(decoded.contains { $0.message.tag == "B" || $0.message.tag == "C" },
                       "a streamed transaction has no Begin/Commit")
        let blocks = blocks(decoded)
        XCTAssertGreaterThanOrEqual(blocks.count, 2, "64kB of work memory splits 3000 rows into several blocks")

        let starts = blocks.compactMap { $0.first?.message.streamStart }
        XCTAssertEqual(starts.count, blocks.count)
        let xid = starts[0].xid
        XCTAssertNotEqual(xid, 0)
        XCTAssertEqual(starts.map(\.isFirstSegment), [true] + Array(repeating: false, count: starts.count - 1))
        XCTAssertTrue(starts.allSatisfy { $0.xid == xid })

        // Inside the blocks, every change carries the transaction's xid, and the decoder is in stream state.
        var ids: [Int] = []
        for block in blocks {
            for item in block.dropFirst().dropLast() {
                XCTAssertTrue(item.inStream, "line \(item.line)")
                XCTAssertEqual(item.message.changeXid, xid, "line \(item.line)")
                if let insert = item.message.insert {
                    XCTAssertEqual(insert.xid, xid)
                    let cells = insert.new.cells
                    guard case let .text(idText) = cells[0], let id = Int(idText) else { return XCTFail("\(cells)") }
                    XCTAssertEqual(cells[1], .text("row \(id) " + String(repeating: "x", count: 40)))
                    ids.append(id)
                }
            }
            XCTAssertTrue(block.first!.inStream)
            XCTAssertFalse(block.last!.inStream, "Stream Stop leaves the block")
        }
        XCTAssertEqual(ids.first, 1)
        XCTAssertEqual(ids.last, 3000)
        XCTAssertEqual(ids, ids.sorted(), "rows arrive in insert order")

        // The first block opens with the Relation, itself carrying the xid.
        let relation = try XCTUnwrap(blocks[0][1].message.relation)
        XCTAssertEqual(relation.xid, xid)
        XCTAssertEqual(relation.name, "stream_demo")
        XCTAssertEqual(relation.columns.map(\.name), ["id", "payload"])
        XCTAssertEqual(relation.columns.map(\.typeOID), [23, 25])

        // The transactional message written mid-transaction is streamed too, with the xid.
        let messages = decoded.compactMap(\.message.logicalMessage)
        XCTAssertEqual(messages.count, 1)
        XCTAssertEqual(messages.first?.xid, xid)
        XCTAssertEqual(messages.first?.isTransactional, true)
        XCTAssertEqual(messages.first?.prefix, "fixture.stream")
        XCTAssertEqual(messages.first.map { String(decoding: $0.content, as: UTF8.self) }, "inside a stream")

        // Stream Commit comes last, outside any block.
        let commit = try XCTUnwrap(decoded.last?.message.streamCommit)
        XCTAssertFalse(decoded.last!.inStream)
        XCTAssertEqual(commit.xid, xid)
        XCTAssertEqual(commit.flags, 0)
        XCTAssertGreaterThan(commit.endLSN, commit.commitLSN)
        XCTAssertGreaterThan(commit.commitLSN, messages[0].lsn)
        XCTAssertGreaterThan(commit.commitTime, pgMicros(unixSeconds: 1_700_000_000))
        XCTAssertEqual(decoded.filter { $0.message.tag == "c" }.count, 1)
    }

    func testStreamedSubtransactionAbortAndStreamedRollback() throws {
        let decoded = try FixtureFile.named("stream_abort").decodeAll()
        let aborts = decoded.enumerated().compactMap { index, item in item.message.streamAbort.map { (index, $0) } }
        XCTAssertEqual(aborts.count, 2)
        let commits = decoded.enumerated().compactMap { index, item in item.message.streamCommit.map { (index, $0) } }
        XCTAssertEqual(commits.count, 1)
        XCTAssertTrue(aborts[0].0 < commits[0].0 && commits[0].0 < aborts[1].0)

        // (1) A savepoint's streamed rows rolled back, then the top-level transaction commits.
        let first = Array(decoded[..<commits[0].0])
        let top = try XCTUnwrap(first.first?.message.streamStart)
        XCTAssertTrue(top.isFirstSegment)
        let subAbort = aborts[0].1
        XCTAssertEqual(subAbort.xid, top.xid)
        XCTAssertNotEqual(subAbort.subtransactionXid, top.xid, "a subtransaction aborted, not the transaction")
        XCTAssertEqual(commits[0].1.xid, top.xid)

        var byXid: [UInt32: [String]] = [:]
        for item in first {
            guard let insert = item.message.insert else { continue }
            let xid = try XCTUnwrap(insert.xid, "line \(item.line): no xid inside a stream")
            byXid[xid, default: []].append(insert.new.cells[1].description)
        }
        // Rows of the top-level transaction carry its xid; rows of a subtransaction carry the subxid.
        XCTAssertEqual(byXid[top.xid], ["'kept before savepoint'"])
        let rolledBack = try XCTUnwrap(byXid[subAbort.subtransactionXid])
        XCTAssertGreaterThan(rolledBack.count, 5)
        XCTAssertTrue(rolledBack.allSatisfy { $0.hasPrefix("'rolled back ") })
        let after = byXid.filter { $0.key != top.xid && $0.key != subAbort.subtransactionXid }
        XCTAssertEqual(after.count, 1, "the row after ROLLBACK TO is in a new subtransaction")
        XCTAssertEqual(after.first?.value, ["'kept after savepoint'"])
        XCTAssertTrue(first.dropFirst().compactMap(\.message.streamStart).allSatisfy { !$0.isFirstSegment && $0.xid == top.xid })

        // (2) A streamed transaction rolled back as a whole: Stream Abort with xid == subxid.
        let second = Array(decoded[(commits[0].0 + 1)...])
        let start = try XCTUnwrap(second.first?.message.streamStart)
        XCTAssertTrue(start.isFirstSegment)
        XCTAssertNotEqual(start.xid, top.xid)
        let abort = try XCTUnwrap(second.last?.message.streamAbort)
        XCTAssertEqual(abort.xid, start.xid)
        XCTAssertEqual(abort.subtransactionXid, start.xid)
        XCTAssertEqual(second.filter { $0.message.tag == "S" }.count, second.filter { $0.message.tag == "E" }.count)
        let inserts = second.compactMap(\.message.insert)
        XCTAssertTrue(inserts.allSatisfy { $0.xid == start.xid })
        XCTAssertEqual(inserts.first?.new.cells.first, "30001")
        // Rows still in memory when the ROLLBACK is decoded are dropped, never streamed.
        let lastID = try XCTUnwrap(inserts.last?.new.cells.first.flatMap { cell -> Int? in
            if case let .text(text) = cell { Int(text) } else { nil }
        })
        XCTAssertGreaterThan(lastID, 30001)
        XCTAssertLessThan(lastID, 33000)
    }

    /// The decoder's only state: the same bytes decode differently inside and outside a stream block.
    func testStreamStateChangesHowChangesDecode() throws {
        let fixture = try FixtureFile.named("stream_commit")
        let decoded = try fixture.decodeAll()
        let start = decoded[0]
        let relation = decoded[1]
        let insert = decoded[2]
        XCTAssertEqual(start.message.tag, "S")
        XCTAssertEqual(insert.message.tag, "I")
        let xid = try XCTUnwrap(start.message.streamStart?.xid)

        var decoder = PGOutputDecoder()
        XCTAssertFalse(decoder.inStream)
        // Outside a block, the xid is read as the relation OID and the next byte is not 'N'.
        XCTAssertThrowsError(try decoder.decode(insert.bytes)) { error in
            guard let error = error as? PGOutputError, case .unexpectedByte = error.kind else {
                return XCTFail("\(error)")
            }
            XCTAssertEqual(error.offset, 5)
        }
        _ = try decoder.decode(start.bytes)
        XCTAssertTrue(decoder.inStream)
        XCTAssertEqual(try decoder.decode(relation.bytes).relation?.xid, xid)
        let streamed = try XCTUnwrap(try decoder.decode(insert.bytes).insert)
        XCTAssertEqual(streamed.xid, xid)
        XCTAssertEqual(streamed.relationOID, relation.message.relation?.oid)
        let stop: [UInt8] = [UInt8(ascii: "E")]
        XCTAssertEqual(try stop.withUnsafeBytes { bytes throws(PGOutputError) in try decoder.decode(bytes).tag }, "E")
        XCTAssertFalse(decoder.inStream)

        // Stream Commit and Stream Abort are outside blocks and do not change the state.
        let commit = try XCTUnwrap(decoded.last)
        _ = try decoder.decode(commit.bytes)
        XCTAssertFalse(decoder.inStream)
    }
}

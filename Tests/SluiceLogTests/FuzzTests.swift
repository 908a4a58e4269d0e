import Foundation
import FuzzSupport
import SluiceKit
@testable import SluiceLog
import XCTest

/// Segment files of mutated bytes (seeded, bounded), half of them with every frame's checksum made
/// valid again so the mutation reaches the frame and record decoders: opening the topic (recovery)
/// and reading it back either works or throws `LogError`/`RecordError` — never a trap, never a
/// record past the durable commit.
final class FuzzTests: LogTestCase {
    /// Recomputes the CRC of each frame whose size fits, as a writer would have.
    private func reseal(_ bytes: inout [UInt8]) {
        var at = 20
        while at + 8 <= bytes.count {
            let size = Int(Files.u32(bytes, at))
            guard size >= Frame.overhead, at + 4 + size <= bytes.count else { return }
            let crc = ReferenceCRC32C.checksum(bytes[(at + 8)..<(at + 4 + size)])
            for i in 0..<4 { bytes[at + 4 + i] = UInt8(truncatingIfNeeded: crc >> (24 - 8 * UInt32(i))) }
            at += 4 + size
        }
    }

    func testMutatedSegmentsRecoverOrThrowTypedErrors() throws {
        let log = try makeLog()
        let writer = try log.embeddedWriter(Fixture.topic)
        let transactions = TransactionWriter(writer: writer)
        var model: [Expected] = []
        for xid in UInt32(1)...4 { try transactions.writeTransaction(xid: xid, rows: 3, expected: &model) }
        try writer.flush()
        writer.close()
        let directory = log.directory(of: Fixture.topic)
        let segment = try Files.bytes(Files.segment(directory, 0))
        let index = try Files.bytes(Files.index(directory, 0))

        var mutator = Mutator(seed: 0x5EED_0301)
        var opened = 0, records = 0
        for iteration in 0..<(250 * fuzzScale) {
            var bytes = mutator.mutate(segment)
            if iteration % 2 == 0 { reseal(&bytes) }
            let target = try makeLog()
            let topicDirectory = target.directory(of: Fixture.topic)
            try FileManager.default.createDirectory(atPath: topicDirectory, withIntermediateDirectories: true)
            try Files.write(bytes, to: Files.segment(topicDirectory, 0))
            switch iteration % 3 {
            case 0: try Files.write(index, to: Files.index(topicDirectory, 0))
            case 1: try Files.write(mutator.mutate(index), to: Files.index(topicDirectory, 0))
            default: break
            }
            do {
                let recovered = try target.embeddedWriter(Fixture.topic)
                defer { recovered.close() }
                opened += 1
                guard let end = recovered.topic.durableCommit.map({ $0.offset + 1 }) else { continue }
                let reader = try recovered.topic.makeReader(from: recovered.topic.firstOffset)
                while let raw = try reader.next(limit: end) {
                    XCTAssertLessThan(raw.offset, end, "iteration \(iteration)")
                    if case let .change(change) = try raw.decode() { for value in (change.new ?? change.old)?.values ?? [] { _ = value.string } }
                    records += 1
                }
            } catch is LogError {
            } catch is RecordError {
            } catch {
                XCTFail("iteration \(iteration): \(type(of: error)): \(error)")
            }
        }
        XCTAssertGreaterThan(opened, 100, "most damaged segments are recovered, not refused")
        XCTAssertGreaterThan(records, 500, "recovery keeps the transactions before the damage")
    }
}

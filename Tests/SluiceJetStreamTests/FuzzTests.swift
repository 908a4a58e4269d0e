import CSluiceSupport
import FuzzSupport
@testable import SluiceJetStream
import SluiceKit
import XCTest

/// JetStream message bodies of mutated bytes (seeded, bounded), half with the checksum made valid
/// again so the mutation reaches the record walk: `decodeHeader` and `Records` accept or refuse
/// with `DecodeError`, and every record they hand out lies inside the body and decodes or throws
/// `RecordError` — never a trap.
final class FuzzTests: XCTestCase {
    private func seedBatches() -> [[UInt8]] {
        var records: [(RecordKind, [UInt8])] = []
        var body = RecordBody()
        BeginRecord(xid: 3, commitLSN: LSN(0x100), commitTime: 5).encode(into: &body)
        records.append((.begin, body.bytes))
        body = RecordBody()
        var tuple = RecordBody()
        Tuple.encode(["42", nil, "text"], into: &tuple)
        tuple.bytes.withUnsafeBytes { ChangeRecord.encode(operation: .insert, relationID: 9, lsn: LSN(0x80), new: $0, into: &body) }
        records.append((.change, body.bytes))
        body = RecordBody()
        CommitRecord(xid: 3, commitLSN: LSN(0x100), endLSN: LSN(0x138), commitTime: 5, eventCount: 1, totalEvents: 1).encode(into: &body)
        records.append((.commit, body.bytes))

        var batch = MessageBatch(kind: .batch)
        var chunk = MessageBatch(kind: .chunk)
        var closing = MessageBatch(kind: .batch, chunks: 10...12, chunkRecords: 300)
        for (kind, bytes) in records {
            bytes.withUnsafeBytes { batch.append(kind: kind.rawValue, body: $0) }
            bytes.withUnsafeBytes { chunk.append(kind: kind.rawValue, body: $0) }
            if kind == .commit { bytes.withUnsafeBytes { closing.append(kind: kind.rawValue, body: $0) } }
        }
        return [batch.encoded(), chunk.encoded(), closing.encoded()]
    }

    func testMutatedMessagesDecodeOrThrowTypedErrors() {
        let seeds = seedBatches()
        for seed in seeds { XCTAssertNoThrow(try seed.withUnsafeBytes { try MessageBatch.decodeHeader($0) }) }
        var mutator = Mutator(seed: 0x5EED_0401)
        var headers = 0, records = 0
        for iteration in 0..<(30_000 * fuzzScale) {
            var bytes = mutator.mutate(seeds[iteration % seeds.count], others: seeds)
            if iteration % 2 == 0, bytes.count >= MessageBatch.headerSize {
                let crc = bytes.withUnsafeBytes {
                    sluice_crc32c(0, $0.baseAddress! + MessageBatch.headerSize, $0.count - MessageBatch.headerSize)
                }
                for i in 0..<4 { bytes[32 + i] = UInt8(truncatingIfNeeded: crc >> (24 - 8 * UInt32(i))) }
            }
            guard let header = try? bytes.withUnsafeBytes({ try MessageBatch.decodeHeader($0) }) else { continue }
            headers += 1
            var walk = MessageBatch.Records(bytes, count: header.count)
            var seen = 0
            while seen < 10_000, let (kind, body) = walk.next() {
                seen += 1
                XCTAssertTrue(body.lowerBound >= MessageBatch.headerSize && body.upperBound <= bytes.count, "iteration \(iteration)")
                if case let .change(change)? = try? TopicRecord.decode(kind: kind, storage: bytes, body: body) {
                    for value in (change.new ?? change.old)?.values ?? [] { _ = value.string }
                    records += 1
                }
            }
        }
        XCTAssertGreaterThan(headers, 3_000, "resealed mutants pass the header")
        XCTAssertGreaterThan(records, 100, "and some reach the record decoder")
    }
}

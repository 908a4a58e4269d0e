import FuzzSupport
import PGOutput
import XCTest

/// The pgoutput decoder on mutated fixture messages (seeded, bounded): every input decodes or
/// throws a `PGOutputError` — no trap — and every tuple of what decodes can be walked to its end.
final class FuzzTests: XCTestCase {
    static let iterations = 40_000 * fuzzScale

    func testMutatedMessagesDecodeOrThrowTypedErrors() throws {
        let seeds = try FixtureFile.allNames().flatMap { try FixtureFile.named($0).messages.map { [UInt8]($0.bytes) } }
        XCTAssertGreaterThan(seeds.count, 50)
        var mutator = Mutator(seed: 0x5EED_0001)
        var decoded = 0, refused = 0
        for iteration in 0..<Self.iterations {
            let input = mutator.mutate(seeds[iteration % seeds.count], others: seeds)
            // Half the inputs inside a stream block, where messages carry an xid first.
            var decoder = PGOutputDecoder()
            if iteration % 2 == 1 { _ = try [UInt8(ascii: "S"), 0, 0, 0, 7, 1].withUnsafeBytes { try decoder.decode($0) } }
            input.withUnsafeBytes { bytes in
                do throws(PGOutputError) {
                    walk(try decoder.decode(bytes))
                    decoded += 1
                } catch {
                    XCTAssertLessThanOrEqual(error.offset, bytes.count, "iteration \(iteration): \(error)")
                    refused += 1
                }
            }
            // The same bytes as the payload of an XLogData frame.
            let frame = [UInt8(ascii: "w")] + [UInt8](repeating: 0, count: 24) + input
            frame.withUnsafeBytes { bytes in
                if case let .xLogData(_, _, _, payload)? = try? ReplicationMessage.decode(bytes) {
                    XCTAssertEqual(payload.count, input.count, "iteration \(iteration)")
                }
            }
        }
        XCTAssertGreaterThan(decoded, Self.iterations / 50, "some mutants still decode: the fuzzer reaches past the first check")
        XCTAssertGreaterThan(refused, Self.iterations / 2)
    }

    func testArbitraryBytesAreRefusedWithAnOffset() {
        var random = SeededGenerator(seed: 0x5EED_0002)
        for length in 0..<(2_000 * fuzzScale) {
            let bytes = (0..<(length % 64)).map { _ in UInt8.random(in: 0...255, using: &random) }
            var decoder = PGOutputDecoder()
            bytes.withUnsafeBytes { raw in
                do throws(PGOutputError) { walk(try decoder.decode(raw)) } catch { XCTAssertLessThanOrEqual(error.offset, raw.count) }
                _ = try? ReplicationMessage.decode(raw)
            }
        }
    }

    /// Touches every column of every tuple, the way the source's stream loop does.
    private func walk(_ message: Message) {
        var tuples: [TupleData] = []
        switch message {
        case let .insert(insert): tuples = [insert.new]
        case let .update(update): tuples = [update.new] + (update.old.map { [$0.tuple] } ?? [])
        case let .delete(delete): tuples = [delete.old.tuple]
        default: return
        }
        for tuple in tuples {
            var seen = 0
            for value in tuple.values {
                _ = value.string
                seen += 1
            }
            XCTAssertEqual(seen, tuple.columnCount)
        }
    }
}

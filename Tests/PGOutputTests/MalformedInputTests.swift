import PGOutput
import XCTest

/// Malformed input must throw ``PGOutputError`` with an offset inside the input: never crash,
/// never read out of bounds, never allocate according to an untrusted count.
final class MalformedInputTests: XCTestCase {
    // MARK: - Helpers

    /// A decoder, inside a stream block if asked (after a Stream Start for xid 7).
    private func makeDecoder(inStream: Bool) -> PGOutputDecoder {
        var decoder = PGOutputDecoder()
        if inStream {
            let start: [UInt8] = [UInt8(ascii: "S")] + be(UInt32(7)) + [1]
            _ = start.withUnsafeBytes { bytes in try? decoder.decode(bytes) }
            XCTAssertTrue(decoder.inStream)
        }
        return decoder
    }

    /// Decodes `bytes`; the error, or nil on success (after walking every tuple value).
    private func decodeError(_ bytes: [UInt8], inStream: Bool = false) -> PGOutputError? {
        var decoder = makeDecoder(inStream: inStream)
        return bytes.withUnsafeBytes { buffer -> PGOutputError? in
            do throws(PGOutputError) {
                let message = try decoder.decode(buffer)
                walkTuples(message)
                return nil
            } catch {
                return error
            }
        }
    }

    /// Reads every value of every tuple in `message`, and checks each lies inside its tuple.
    private func walkTuples(_ message: Message) {
        var tuples: [TupleData] = []
        switch message {
        case let .insert(insert): tuples = [insert.new]
        case let .update(update): tuples = [update.old?.tuple, update.new].compactMap { $0 }
        case let .delete(delete): tuples = [delete.old.tuple]
        default: break
        }
        for tuple in tuples {
            var count = 0
            var total = 2
            for value in tuple.values {
                count += 1
                switch value {
                case .null, .unchangedToast: total += 1
                case let .text(bytes), let .binary(bytes):
                    total += 5 + bytes.count
                    _ = value.string
                }
            }
            XCTAssertEqual(count, tuple.columnCount)
            XCTAssertEqual(total, tuple.bytes.count)
        }
    }

    private func assertError(_ bytes: [UInt8], inStream: Bool = false, _ expected: PGOutputError.Kind, at offset: Int,
                             file: StaticString = #filePath, line: UInt = #line) {
        guard let error = decodeError(bytes, inStream: inStream) else {
            return XCTFail("decoded without error; expected \(expected)", file: file, line: line)
        }
        XCTAssertEqual(error.kind, expected, file: file, line: line)
        XCTAssertEqual(error.offset, offset, "\(error)", file: file, line: line)
        XCTAssertFalse(error.description.isEmpty)
    }

    /// Every message of every fixture with the stream state it is decoded in.
    private func fixtureSamples() throws -> [(name: String, line: Int, bytes: [UInt8], inStream: Bool)] {
        var samples: [(name: String, line: Int, bytes: [UInt8], inStream: Bool)] = []
        for name in try FixtureFile.allNames() {
            var inStream = false
            for decoded in try FixtureFile.named(name).decodeAll() {
                samples.append((name, decoded.line, Array(decoded.bytes), inStream))
                inStream = decoded.inStream
            }
        }
        return samples
    }

    private func tuple(_ columns: [Cell]) -> [UInt8] {
        var out = be(UInt16(columns.count))
        for column in columns {
            switch column {
            case .null: out.append(UInt8(ascii: "n"))
            case .unchanged: out.append(UInt8(ascii: "u"))
            case let .text(text): out += [UInt8(ascii: "t")] + be(Int32(text.utf8.count)) + Array(text.utf8)
            case let .binary(bytes): out += [UInt8(ascii: "b")] + be(Int32(bytes.count)) + bytes
            }
        }
        return out
    }

    private let insertHead: [UInt8] = [UInt8(ascii: "I")] + be(UInt32(16384)) + [UInt8(ascii: "N")]

    // MARK: - Truncation

    /// Cutting any fixture message at any byte throws: `.empty` for nothing, otherwise a
    /// truncation (or unterminated string) whose offset and byte counts are consistent with the cut.
    func testEveryTruncationOfEveryFixtureMessageThrows() throws {
        let samples = try fixtureSamples()
        XCTAssertGreaterThan(samples.count, 200)
        var failures = 0
        var prefixes = 0
        for sample in samples {
            for length in 0..<sample.bytes.count {
                prefixes += 1
                let prefix = Array(sample.bytes[..<length])
                let context = "\(sample.name).hex:\(sample.line) cut at \(length)/\(sample.bytes.count)"
                guard let error = decodeError(prefix, inStream: sample.inStream) else {
                    failures += 1
                    if failures < 10 { XCTFail("\(context): decoded") }
                    continue
                }
                XCTAssertTrue((0...length).contains(error.offset), "\(context): offset \(error.offset)")
                switch error.kind {
                case .empty:
                    XCTAssertEqual(length, 0, context)
                case let .truncated(_, needed, available):
                    XCTAssertEqual(available, length - error.offset, context)
                    XCTAssertGreaterThan(needed, available, context)
                case .unterminatedString:
                    XCTAssertLessThanOrEqual(error.offset, length, context)
                default:
                    failures += 1
                    if failures < 10 { XCTFail("\(context): unexpected \(error)") }
                }
            }
        }
        XCTAssertEqual(failures, 0)
        XCTAssertGreaterThan(prefixes, 10_000)
    }

    /// Hand-built messages of every type, cut at every byte, inside and outside a stream.
    func testEveryTruncationOfHandBuiltMessagesThrows() {
        let oid = be(UInt32(16385))
        let messages: [[UInt8]] = [
            [UInt8(ascii: "B")] + be(UInt64(0x16_B374_D848)) + be(Int64(1)) + be(UInt32(9)),
            [UInt8(ascii: "C"), 0] + be(UInt64(1)) + be(UInt64(2)) + be(Int64(3)),
            [UInt8(ascii: "O")] + be(UInt64(5)) + cstring("origin"),
            [UInt8(ascii: "R")] + oid + cstring("public") + cstring("t") + [UInt8(ascii: "f")] + be(UInt16(2))
                + [1] + cstring("id") + be(UInt32(23)) + be(Int32(-1))
                + [0] + cstring("v") + be(UInt32(1043)) + be(Int32(24)),
            [UInt8(ascii: "Y")] + oid + cstring("public") + cstring("mood"),
            insertHead + tuple(["1", .null, .unchanged, .binary([0, 1])]),
            [UInt8(ascii: "U")] + oid + [UInt8(ascii: "K")] + tuple(["1", .null]) + [UInt8(ascii: "N")] + tuple(["2", "x"]),
            [UInt8(ascii: "U")] + oid + [UInt8(ascii: "O")] + tuple(["1", "a"]) + [UInt8(ascii: "N")] + tuple(["1", "b"]),
            [UInt8(ascii: "U")] + oid + [UInt8(ascii: "N")] + tuple(["1", .unchanged]),
            [UInt8(ascii: "D")] + oid + [UInt8(ascii: "K")] + tuple(["1", .null]),
            [UInt8(ascii: "D")] + oid + [UInt8(ascii: "O")] + tuple(["1", "a"]),
            [UInt8(ascii: "T")] + be(UInt32(2)) + [3] + oid + be(UInt32(16390)),
            [UInt8(ascii: "M"), 1] + be(UInt64(7)) + cstring("prefix") + be(Int32(3)) + [1, 2, 3],
            [UInt8(ascii: "c")] + be(UInt32(7)) + [0] + be(UInt64(1)) + be(UInt64(2)) + be(Int64(3)),
            [UInt8(ascii: "A")] + be(UInt32(7)) + be(UInt32(8)),
        ]
        for message in messages {
            for inStream in [false, true] {
                // The whole message decodes, inside a stream only with an xid for the types that carry one.
                let carriesXid = "RYIUDTM".utf8.contains(message[0])
                let whole = inStream && carriesXid ? [message[0]] + be(UInt32(7)) + message.dropFirst() : message
                XCTAssertNil(decodeError(whole, inStream: inStream), "\(Character(Unicode.Scalar(message[0]))) stream=\(inStream)")
                for length in 0..<whole.count {
                    let context = "\(Character(Unicode.Scalar(message[0]))) stream=\(inStream) cut at \(length)"
                    guard let error = decodeError(Array(whole[..<length]), inStream: inStream) else {
                        XCTFail("\(context): decoded")
                        continue
                    }
                    XCTAssertTrue((0...length).contains(error.offset), context)
                    if case let .truncated(_, needed, available) = error.kind {
                        XCTAssertEqual(available, length - error.offset, context)
                        XCTAssertGreaterThan(needed, available, context)
                    }
                }
            }
        }
    }

    func testEmptyInput() {
        assertError([], .empty, at: 0)
        assertError([], inStream: true, .empty, at: 0)
    }

    // MARK: - Unknown types and kinds

    func testUnknownMessageTypes() {
        let known = Set("BCORYIUDTMSEcA".utf8)
        for byte in UInt8.min...UInt8.max where !known.contains(byte) {
            assertError([byte], .unknownMessageType(byte), at: 0)
            assertError([byte] + be(UInt64(0)) + [0, 0, 0], inStream: true, .unknownMessageType(byte), at: 0)
        }
        // Protocol 3 two-phase messages are not part of versions 1 and 2.
        assertError([UInt8(ascii: "P")] + be(UInt64(1)), .unknownMessageType(UInt8(ascii: "P")), at: 0)
        XCTAssertTrue(PGOutputError(.unknownMessageType(0x50), at: 0).description.contains("'P'"))
        XCTAssertTrue(PGOutputError(.unknownMessageType(0x01), at: 0).description.contains("0x1"))
    }

    func testUnknownTupleKind() {
        let kinds = Set("ntub".utf8)
        for byte in UInt8.min...UInt8.max where !kinds.contains(byte) {
            // First column: the kind byte follows tag(1), oid(4), 'N'(1), count(2).
            assertError(insertHead + be(UInt16(1)) + [byte], .unknownTupleKind(byte), at: 8)
        }
        // Third column, after a text value and a null.
        let message = insertHead + be(UInt16(3)) + [UInt8(ascii: "t")] + be(Int32(2)) + Array("ab".utf8)
            + [UInt8(ascii: "n"), UInt8(ascii: "x")] + be(Int32(0))
        assertError(message, .unknownTupleKind(UInt8(ascii: "x")), at: 8 + 7 + 1)
        // In an old key tuple of an update.
        let update = [UInt8(ascii: "U")] + be(UInt32(1)) + [UInt8(ascii: "K")] + be(UInt16(1)) + [UInt8(ascii: "T")]
        assertError(update, .unknownTupleKind(UInt8(ascii: "T")), at: 8)
    }

    func testUnexpectedTupleMarkers() {
        let oid = be(UInt32(16384))
        let rest = tuple(["1"])
        // Insert must have 'N'.
        assertError([UInt8(ascii: "I")] + oid + [UInt8(ascii: "K")] + rest,
                    .unexpectedByte(expected: "'N' (new tuple)", got: UInt8(ascii: "K")), at: 5)
        // Update: 'K', 'O' or 'N' first ...
        assertError([UInt8(ascii: "U")] + oid + [UInt8(ascii: "X")] + rest,
                    .unexpectedByte(expected: "'K', 'O' or 'N'", got: UInt8(ascii: "X")), at: 5)
        // ... and 'N' after an old tuple (which may not be repeated).
        let afterOld = 5 + 1 + rest.count
        assertError([UInt8(ascii: "U")] + oid + [UInt8(ascii: "K")] + rest + [UInt8(ascii: "O")] + rest,
                    .unexpectedByte(expected: "'K', 'O' or 'N'", got: UInt8(ascii: "O")), at: afterOld)
        assertError([UInt8(ascii: "U")] + oid + [UInt8(ascii: "O")] + rest + [UInt8(ascii: "K")] + rest,
                    .unexpectedByte(expected: "'K', 'O' or 'N'", got: UInt8(ascii: "K")), at: afterOld)
        // Delete: 'K' or 'O' only.
        assertError([UInt8(ascii: "D")] + oid + [UInt8(ascii: "N")] + rest,
                    .unexpectedByte(expected: "'K' or 'O'", got: UInt8(ascii: "N")), at: 5)
        // Inside a stream the xid shifts every offset by 4.
        assertError([UInt8(ascii: "D")] + be(UInt32(7)) + oid + [UInt8(ascii: "N")] + rest, inStream: true,
                    .unexpectedByte(expected: "'K' or 'O'", got: UInt8(ascii: "N")), at: 9)
    }

    // MARK: - Lengths

    func testNegativeColumnLength() {
        for kind in ["t", "b"].map({ UInt8(ascii: Unicode.Scalar($0)!) }) {
            for length in [Int32(-1), -2, Int32.min] {
                assertError(insertHead + be(UInt16(1)) + [kind] + be(length) + [1, 2, 3],
                            .negativeLength(length), at: 9)
            }
        }
        // In the new tuple of an update with an old key.
        let update = [UInt8(ascii: "U")] + be(UInt32(1)) + [UInt8(ascii: "K")] + tuple(["1"])
            + [UInt8(ascii: "N")] + be(UInt16(1)) + [UInt8(ascii: "t")] + be(Int32(-7))
        assertError(update, .negativeLength(-7), at: update.count - 4)
    }

    func testNegativeLogicalMessageLength() {
        let head = [UInt8(ascii: "M"), 1] + be(UInt64(1)) + cstring("p")
        assertError(head + be(Int32(-5)) + [1, 2], .negativeLength(-5), at: 12)
        assertError([UInt8(ascii: "M")] + be(UInt32(9)) + head.dropFirst() + be(Int32.min), inStream: true,
                    .negativeLength(Int32.min), at: 16)
    }

    func testLengthBeyondTheInput() {
        assertError(insertHead + be(UInt16(1)) + [UInt8(ascii: "t")] + be(Int32.max) + Array("abc".utf8),
                    .truncated(what: "column value", needed: Int(Int32.max), available: 3), at: 13)
        let message = [UInt8(ascii: "M"), 0] + be(UInt64(1)) + cstring("p") + be(Int32(4)) + [1, 2, 3]
        assertError(message, .truncated(what: "message content", needed: 4, available: 3), at: 16)
    }

    // MARK: - Trailing bytes

    func testTrailingBytes() throws {
        let begin = [UInt8(ascii: "B")] + be(UInt64(1)) + be(Int64(2)) + be(UInt32(3))
        assertError(begin + [0], .trailingBytes(count: 1), at: 21)
        assertError([UInt8(ascii: "E"), 1, 2, 3], inStream: true, .trailingBytes(count: 3), at: 1)
        // A tuple with fewer columns than its bytes hold.
        assertError(insertHead + be(UInt16(1)) + [UInt8(ascii: "n"), UInt8(ascii: "n")], .trailingBytes(count: 1), at: 9)
        // Every fixture message with extra bytes.
        for sample in try fixtureSamples() {
            for extra in [[0], [0xFF, 0x00, 0x01]] as [[UInt8]] {
                guard let error = decodeError(sample.bytes + extra, inStream: sample.inStream) else {
                    XCTFail("\(sample.name).hex:\(sample.line) + \(extra.count) bytes decoded")
                    continue
                }
                XCTAssertEqual(error.kind, .trailingBytes(count: extra.count), "\(sample.name).hex:\(sample.line)")
                XCTAssertEqual(error.offset, sample.bytes.count)
            }
        }
    }

    // MARK: - Strings

    func testUnterminatedStrings() {
        let oid = be(UInt32(16384))
        assertError([UInt8(ascii: "R")] + oid + Array("public".utf8), .unterminatedString(what: "namespace"), at: 5)
        assertError([UInt8(ascii: "R")] + oid + cstring("public") + Array("t".utf8),
                    .unterminatedString(what: "relation name"), at: 12)
        assertError([UInt8(ascii: "R")] + oid + cstring("public") + cstring("t") + [UInt8(ascii: "d")] + be(UInt16(1))
                    + [1] + Array("id".utf8), .unterminatedString(what: "column name"), at: 18)
        assertError([UInt8(ascii: "O")] + be(UInt64(1)) + Array("origin".utf8), .unterminatedString(what: "origin name"), at: 9)
        assertError([UInt8(ascii: "Y")] + oid + cstring("public") + Array("mood".utf8),
                    .unterminatedString(what: "type name"), at: 12)
        assertError([UInt8(ascii: "M"), 0] + be(UInt64(1)) + Array("prefix".utf8),
                    .unterminatedString(what: "message prefix"), at: 10)
    }

    func testInvalidUTF8InNamesIsReplacedNotFatal() throws {
        let bytes = [UInt8(ascii: "O")] + be(UInt64(1)) + [0x66, 0xFF, 0xC3, 0x00]
        var decoder = PGOutputDecoder()
        let name = try bytes.withUnsafeBytes { buffer throws(PGOutputError) in try decoder.decode(buffer).origin?.name }
        XCTAssertEqual(name, "f\u{FFFD}\u{FFFD}")
    }

    // MARK: - Absurd counts

    func testAbsurdRelationColumnCount() {
        let head = [UInt8(ascii: "R")] + be(UInt32(16384)) + cstring("public") + cstring("t") + [UInt8(ascii: "d")]
        assertError(head + be(UInt16.max), .truncated(what: "column flags", needed: 1, available: 0), at: head.count + 2)
        // One real column, then nothing.
        let column = [1] + cstring("id") + be(UInt32(23)) + be(Int32(-1))
        assertError(head + be(UInt16.max) + column, .truncated(what: "column flags", needed: 1, available: 0),
                    at: head.count + 2 + column.count)
    }

    func testAbsurdTupleColumnCount() {
        assertError(insertHead + be(UInt16.max), .truncated(what: "tuple column kind", needed: 1, available: 0), at: 8)
        assertError(insertHead + be(UInt16.max) + Array(repeating: UInt8(ascii: "n"), count: 1000),
                    .truncated(what: "tuple column kind", needed: 1, available: 0), at: 1008)
    }

    func testAbsurdTruncateRelationCount() {
        let count = UInt32.max
        let needed = Int(count) * 4
        assertError([UInt8(ascii: "T")] + be(count) + [0], .truncated(what: "relation OIDs", needed: needed, available: 0), at: 6)
        assertError([UInt8(ascii: "T")] + be(count) + [1] + be(UInt32(16384)),
                    .truncated(what: "relation OIDs", needed: needed, available: 4), at: 6)
        assertError([UInt8(ascii: "T")] + be(UInt32(7)) + be(UInt32(0x4000_0000)) + [3], inStream: true,
                    .truncated(what: "relation OIDs", needed: 0x1_0000_0000, available: 0), at: 10)
    }

    func testZeroCounts() throws {
        var decoder = PGOutputDecoder()
        let truncate = [UInt8(ascii: "T")] + be(UInt32(0)) + [0]
        let decoded = try truncate.withUnsafeBytes { buffer throws(PGOutputError) in try decoder.decode(buffer).truncate }
        XCTAssertEqual(decoded?.relationOIDs, [])
        XCTAssertNil(decodeError(insertHead + be(UInt16(0))))
        XCTAssertNil(decodeError([UInt8(ascii: "R")] + be(UInt32(1)) + cstring("") + cstring("t") + [UInt8(ascii: "n")] + be(UInt16(0))))
    }

    // MARK: - Fuzzing

    /// Random corruptions of fixture messages: decoding either succeeds with walkable tuples or
    /// throws an error whose offset lies within the input.
    func testRandomCorruptionNeverCrashes() throws {
        var rng = SplitMix64(seed: 0x5EED_2026)
        var outcomes = (decoded: 0, failed: 0)
        for sample in try fixtureSamples() where sample.bytes.count <= 2048 {
            for _ in 0..<40 {
                var bytes = sample.bytes
                switch rng.next() % 4 {
                case 0:  // flip 1-3 bytes
                    for _ in 0...(rng.next() % 3) {
                        bytes[Int(rng.next() % UInt64(bytes.count))] = UInt8(truncatingIfNeeded: rng.next())
                    }
                case 1:  // insert a byte
                    bytes.insert(UInt8(truncatingIfNeeded: rng.next()), at: Int(rng.next() % UInt64(bytes.count + 1)))
                case 2:  // delete a byte
                    bytes.remove(at: Int(rng.next() % UInt64(bytes.count)))
                default:  // overwrite a 4-byte window with a big or negative number
                    let at = Int(rng.next() % UInt64(bytes.count))
                    let junk: [UInt8] = rng.next() % 2 == 0 ? [0xFF, 0xFF, 0xFF, 0xF0] : [0x7F, 0xFF, 0xFF, 0xFF]
                    for (i, byte) in junk.enumerated() where at + i < bytes.count { bytes[at + i] = byte }
                }
                if let error = decodeError(bytes, inStream: sample.inStream) {
                    outcomes.failed += 1
                    XCTAssertTrue((0...bytes.count).contains(error.offset), "\(error) for \(bytes.count) bytes")
                } else {
                    outcomes.decoded += 1
                }
            }
        }
        XCTAssertGreaterThan(outcomes.failed, 1000)
        XCTAssertGreaterThan(outcomes.decoded, 100, "many corruptions hit values and stay decodable")
    }
}

/// A small deterministic generator, so fuzz failures reproduce.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

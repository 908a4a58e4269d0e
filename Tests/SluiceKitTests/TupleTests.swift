import SluiceKit
import XCTest

/// The tuple layout shared by pgoutput, the topic format and every sink: encoding, iteration and the
/// allocation-free raw walk must agree byte for byte.
final class TupleTests: XCTestCase {
    func testEncodeWritesTheTupleLayout() {
        var body = RecordBody()
        Tuple.encode(["42", nil, "", "é"], into: &body)
        XCTAssertEqual(body.bytes, [
            0, 4,                                    // 4 columns
            UInt8(ascii: "t"), 0, 0, 0, 2, UInt8(ascii: "4"), UInt8(ascii: "2"),
            UInt8(ascii: "n"),
            UInt8(ascii: "t"), 0, 0, 0, 0,           // an empty string is not NULL
            UInt8(ascii: "t"), 0, 0, 0, 2, 0xC3, 0xA9,
        ])
    }

    func testIterationYieldsEveryKind() {
        let tuple = Tuple(bytes: tupleBytes([.text("1"), .null, .unchanged, .binary([0, 255]), .text("")]))
        XCTAssertEqual(tuple.count, 5)
        XCTAssertEqual(describe(tuple.values), ["1", "<null>", "<unchanged>", "<binary 00ff>", ""])
        XCTAssertEqual(tuple.values.map(\.string), ["1", nil, nil, "\0\u{FFFD}", ""])
        XCTAssertEqual(tuple.values.map(\.isNull), [false, true, false, false, false])
        XCTAssertEqual(tuple.values.map(\.isUnchanged), [false, false, true, false, false])
        XCTAssertEqual(Array(tuple.bytes), tupleBytes([.text("1"), .null, .unchanged, .binary([0, 255]), .text("")]))
    }

    func testForEachRawAgreesWithIteration() {
        let tuple = Tuple(bytes: tupleBytes([.text("abc"), .null, .unchanged, .binary([7]), .text("x y")]))
        var seen: [String] = []
        var columns: [Int] = []
        tuple.forEachRaw { column, value in
            columns.append(column)
            switch value {
            case .null: seen.append("<null>")
            case .unchanged: seen.append("<unchanged>")
            case let .text(raw): seen.append(String(decoding: raw, as: UTF8.self))
            case let .binary(raw): seen.append("<binary \(raw.map { String(format: "%02x", $0) }.joined())>")
            }
        }
        XCTAssertEqual(columns, [0, 1, 2, 3, 4])
        XCTAssertEqual(seen, describe(tuple.values))
    }

    func testEmptyTuple() {
        let tuple = Tuple(bytes: tupleBytes([]))
        XCTAssertEqual(tuple.count, 0)
        XCTAssertTrue(tuple.values.isEmpty)
        var calls = 0
        tuple.forEachRaw { _, _ in calls += 1 }
        XCTAssertEqual(calls, 0)
    }

    /// A tuple read from inside a record is a view of the record's bytes at an offset; iteration and
    /// the raw walk must start at the view, not at byte 0.
    func testTupleViewInsideRecordBody() throws {
        var body = RecordBody()
        body.u32(0xDEAD_BEEF)
        body.string("prefix")
        Tuple.encode(["7", nil, "seven"], into: &body)
        body.u8(99)
        var cursor = RecordCursor(body.bytes, range: 0..<body.bytes.count)
        XCTAssertEqual(try cursor.u32(), 0xDEAD_BEEF)
        XCTAssertEqual(try cursor.string(), "prefix")
        let tuple = try cursor.tuple()
        XCTAssertEqual(try cursor.u8(), 99)
        XCTAssertTrue(cursor.isAtEnd)
        XCTAssertEqual(describe(tuple.values), ["7", "<null>", "seven"])
        var raw: [String?] = []
        tuple.forEachRaw { _, value in
            if case let .text(bytes) = value { raw.append(String(decoding: bytes, as: UTF8.self)) } else { raw.append(nil) }
        }
        XCTAssertEqual(raw, ["7", nil, "seven"])
        // A copy keeps only the tuple's own bytes.
        let copy = Tuple(bytes: Array(tuple.bytes))
        XCTAssertEqual(describe(copy.values), describe(tuple.values))
    }

    func testCursorRejectsMalformedTuples() {
        func error(_ bytes: [UInt8]) -> RecordError? {
            var cursor = RecordCursor(bytes, range: 0..<bytes.count)
            do {
                _ = try cursor.tuple()
                return nil
            } catch {
                return error
            }
        }
        XCTAssertEqual(error([0, 1, UInt8(ascii: "x")]), .malformed("unknown tuple column kind", at: 2))
        XCTAssertEqual(error([0, 2, UInt8(ascii: "n")]), .truncated(at: 3), "a column is missing")
        XCTAssertEqual(error([0, 1, UInt8(ascii: "t"), 0, 0, 0, 5, 65]), .truncated(at: 7), "the value is shorter than its length")
        XCTAssertEqual(error([0]), .truncated(at: 0))
        XCTAssertNil(error([0, 1, UInt8(ascii: "u")]))
    }
}

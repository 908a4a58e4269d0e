@testable import SluiceVerify
import XCTest

final class RowDigestTests: XCTestCase {
    private func hex(_ bytes: [UInt8]) -> String { bytes.map { String(format: "%02x", $0) }.joined() }

    func testMD5MatchesRFC1321Vectors() {
        XCTAssertEqual(hex(MD5.digest([])), "d41d8cd98f00b204e9800998ecf8427e")
        XCTAssertEqual(hex(MD5.digest(Array("abc".utf8))), "900150983cd24fb0d6963f7d28e17f72")
        XCTAssertEqual(hex(MD5.digest(Array("12345678901234567890123456789012345678901234567890123456789012345678901234567890".utf8))),
                       "57edf4a22be3c955ac49da2e2107b67a")
    }

    func testRowEncodingSeparatesNullEmptyAndColumnBoundaries() {
        // What PostgreSQL's md5() of the same encoding gives (RowDigest.sql builds that encoding).
        XCTAssertEqual(hex(RowDigest(["1", nil, ""]).bytes), hex(MD5.digest(Array("1:1N0:".utf8))))
        XCTAssertNotEqual(RowDigest(["ab", "c"]), RowDigest(["a", "bc"]))
        XCTAssertNotEqual(RowDigest([nil]), RowDigest(["N"]))
        XCTAssertNotEqual(RowDigest([""]), RowDigest([nil]))
    }

    func testSummaryIsOrderIndependentAndCountsDuplicates() {
        var forward = ChunkSummary(), backward = ChunkSummary(), once = ChunkSummary()
        let rows: [CanonicalRow] = [["1", "a"], ["2", nil], ["3", "c"]]
        for row in rows { forward.add(RowDigest(row)) }
        for row in rows.reversed() { backward.add(RowDigest(row)) }
        XCTAssertEqual(forward, backward)
        once.add(RowDigest(["x"]))
        var twice = once
        twice.add(RowDigest(["x"]))
        XCTAssertNotEqual(once, twice)
        XCTAssertEqual(twice.rows, 2)
    }

    func testSumsFromPostgresAreReducedModulo64Bits() {
        XCTAssertEqual(ChunkSummary.modulo64("18446744073709551617"), 1)
        XCTAssertEqual(ChunkSummary.modulo64("-1"), UInt64.max)
        XCTAssertEqual(ChunkSummary.modulo64("0"), 0)
        let summary = ChunkSummary(rows: "2", first: "-9223372036854775808", second: "5")
        XCTAssertEqual(summary.first, 1 << 63)
        XCTAssertEqual(summary.second, 5)
    }

    func testFloatsInPostgresTextForm() {
        // float8out / float4out (extra_float_digits > 0), checked against PostgreSQL 15.
        let doubles: [(Double, String)] = [(1e15, "1e+15"), (1e16, "1e+16"), (1e14, "100000000000000"),
                                            (123456789012345.6, "123456789012345.6"), (1e-5, "1e-05"), (0.0001, "0.0001"),
                                            (0.00012345, "0.00012345"), (1.5, "1.5"), (100, "100"), (0, "0"), (-0.0, "-0"),
                                            (.infinity, "Infinity"), (-.infinity, "-Infinity"), (.nan, "NaN"),
                                            (1e100, "1e+100"), (2.5e-300, "2.5e-300"), (-42.25, "-42.25"), (0.1, "0.1")]
        for (value, text) in doubles { XCTAssertEqual(CanonicalText.float(value, isFloat4: false), text, "\(value)") }
        let floats: [(Float, String)] = [(1e6, "1e+06"), (1e5, "100000"), (123456, "123456"), (1234567, "1.234567e+06"),
                                         (0.1, "0.1"), (1e-5, "1e-05"), (3.4e38, "3.4e+38"), (16777216, "1.6777216e+07")]
        for (value, text) in floats { XCTAssertEqual(CanonicalText.float(Double(value), isFloat4: true), text, "\(value)") }
    }
}

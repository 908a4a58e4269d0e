@testable import SluiceVerify
import XCTest

final class RowDigestTests: XCTestCase {
    private func lookup3(_ text: String) -> Int64 { Int64(bitPattern: Array(text.utf8).withUnsafeBytes { Lookup3.hash($0) }) }

    func testLookup3MatchesPostgresHashTextExtended() {
        // SELECT hashtextextended(…, 0) on PostgreSQL 15 (x86-64): every tail length path and a full block.
        XCTAssertEqual(lookup3(""), -6_939_563_903_564_495_251)
        XCTAssertEqual(lookup3("a"), 3_591_986_179_850_072_241)
        XCTAssertEqual(lookup3("abcdefghijkl"), -7_556_637_188_122_330_412)
        XCTAssertEqual(lookup3("abcdefghijklmnopqrstuvw"), -1_198_571_854_151_947_912)
    }

    func testRecordTextIsWhatPostgresPrintsForARow() {
        // SELECT ROW(1, NULL, '', 'a b', 'x"y', 'p\q', '(', true, '\x01'::bytea, 'ä')::text and its hashtextextended.
        let row: CanonicalRow = ["1", nil, "", "a b", "x\"y", "p\\q", "(", "t", "\\x01", "ä"]
        var text = RecordText()
        for value in row {
            if let value { Array(value.utf8).withUnsafeBytes { text.append($0) } } else { text.appendNull() }
        }
        let digest = text.digest()
        XCTAssertEqual(String(decoding: text.bytes, as: UTF8.self), #"(1,,"","a b","x""y","p\\q","(",t,"\\x01",ä)"#)
        XCTAssertEqual(Int64(bitPattern: digest), 8_769_665_680_464_251_583)
        XCTAssertEqual(RowDigest(row).value, digest)
        XCTAssertNotEqual(RowDigest(["ab", "c"]), RowDigest(["a", "bc"]))
        XCTAssertNotEqual(RowDigest([nil]), RowDigest([""]))
        XCTAssertNotEqual(RowDigest(["a,b"]), RowDigest(["a", "b"]))
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
        XCTAssertEqual(ChunkSummary(rows: "2", sum: "-9223372036854775808").sum, 1 << 63)
        // A keyless row's bucket: the signed digest modulo the count, non-negative, as bucketSQL computes it.
        XCTAssertEqual(RowDigest(value: UInt64(bitPattern: -7)).bucket(of: 5), 3)
        XCTAssertEqual(RowDigest(value: 7).bucket(of: 5), 2)
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

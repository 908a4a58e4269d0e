import SluiceKit
import XCTest

/// Exact decimal arithmetic for `numeric`: parsing PostgreSQL's text forms, ordering, + - * /.
final class ExactDecimalTests: XCTestCase {
    func d(_ text: String) -> ExactDecimal { ExactDecimal(text)! }

    func testParsesAndPrintsTextForms() {
        let cases: [(String, String)] = [
            ("0", "0"), ("-0", "0"), ("12.50", "12.50"), ("-0.001", "-0.001"), (".5", "0.5"), ("007", "7"),
            ("1e3", "1000"), ("1.5e-3", "0.0015"), ("+4", "4"), ("NaN", "NaN"), ("Infinity", "Infinity"),
            ("-Infinity", "-Infinity"), ("123456789012345678901234567890.123456789", "123456789012345678901234567890.123456789"),
        ]
        for (text, printed) in cases { XCTAssertEqual(ExactDecimal(text)?.description, printed, text) }
        for text in ["", "-", ".", "1.2.3", "abc", "1e", "1x", "--1"] { XCTAssertNil(ExactDecimal(text), text) }
    }

    func testOrdering() {
        XCTAssertEqual(d("1.50"), d("1.5"))
        XCTAssertLessThan(d("-2"), d("-1.99"))
        XCTAssertLessThan(d("0.1"), d("0.10000000000000000001"))
        XCTAssertLessThan(d("99999999999999999999"), d("100000000000000000000"))
        XCTAssertLessThan(d("-Infinity"), d("-1e100"))
        XCTAssertLessThan(d("1e100"), d("Infinity"))
        XCTAssertLessThan(d("Infinity"), d("NaN"))
        XCTAssertEqual(d("NaN"), d("NaN"))
        XCTAssertEqual(d("0"), d("-0.000"))
    }

    func testArithmetic() {
        XCTAssertEqual((d("0.1") + d("0.2")).description, "0.3")
        XCTAssertEqual((d("1.05") - d("2.1")).description, "-1.05")
        XCTAssertEqual((d("-1.5") * d("2.25")).description, "-3.375")
        XCTAssertEqual((d("99999999999999999999") + d("1")).description, "100000000000000000000")
        XCTAssertEqual((d("10") / d("4"))?.description, "2.5000000000000000")
        XCTAssertEqual((d("1") / d("3"))?.description, "0.33333333333333333333")
        XCTAssertEqual((d("2") / d("3"))?.description, "0.66666666666666666667", "rounds half away from zero")
        XCTAssertEqual((d("-2") / d("3"))?.description, "-0.66666666666666666667")
        XCTAssertEqual((d("123456789") / d("0.001"))?.description, "123456789000.00000000")
        XCTAssertNil(d("1") / d("0.00"))
        XCTAssertEqual((d("Infinity") + d("1")).description, "Infinity")
        XCTAssertEqual((d("Infinity") + d("-Infinity")).description, "NaN")
        XCTAssertEqual((-d("Infinity")).description, "-Infinity")
    }
}

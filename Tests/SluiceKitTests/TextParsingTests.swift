import SluiceKit
import XCTest

/// The small parsers of the SDK: durations and sizes from configuration files, timestamps in JSON
/// lines, LSNs, and PostgreSQL text forms for sinks that store native values.
final class TextParsingTests: XCTestCase {
    func testDurations() {
        let good: [(String, Int)] = [
            ("500ms", 500), ("10s", 10_000), ("5m", 300_000), ("1h", 3_600_000), ("7d", 604_800_000),
            ("1.5s", 1500), ("0.25m", 15_000), ("10", 10_000), ("0", 0), (" 2s ", 2000), ("3 s", 3000), ("0ms", 0),
        ]
        for (text, millis) in good { XCTAssertEqual(parseDurationMillis(text), millis, "'\(text)'") }
        for text in ["", "s", "ms", "-1s", "-5", "ten seconds", "10x", "1w", "5 min", "nan", "infs", "1e400s"] {
            XCTAssertNil(parseDurationMillis(text), "'\(text)' is not a duration")
        }
    }

    func testByteSizes() {
        let good: [(String, UInt64)] = [
            ("4096", 4096), ("10B", 10), ("1KB", 1024), ("64KiB", 65_536), ("512MB", 512 << 20), ("1.5KB", 1536),
            ("10GB", 10 << 30), ("2GiB", 2 << 30), ("1TB", 1 << 40), ("10 GB", 10 << 30), (" 1MB ", 1 << 20), ("0", 0),
        ]
        for (text, bytes) in good { XCTAssertEqual(parseByteSize(text), bytes, "'\(text)'") }
        for text in ["", "lots", "-1MB", "-1", "MB", "1.5", "1XB", "1e3"] {
            XCTAssertNil(parseByteSize(text), "'\(text)' is not a size")
        }
    }

    func testTimestampsRoundTrip() {
        let cases: [(Micros, String)] = [
            (1_764_064_693_595_085, "2025-11-25T09:58:13.595085Z"),
            (0, "1970-01-01T00:00:00.000000Z"),
            (-1, "1969-12-31T23:59:59.999999Z"),
            (951_782_400_000_000, "2000-02-29T00:00:00.000000Z"),
            (253_402_300_799_999_999, "9999-12-31T23:59:59.999999Z"),
        ]
        for (micros, text) in cases {
            XCTAssertEqual(formatMicros(micros), text)
            XCTAssertEqual(parseMicros(text), micros, text)
        }
    }

    func testTimestampParsingVariants() {
        XCTAssertEqual(parseMicros("2025-11-25T09:58:13Z"), 1_764_064_693_000_000, "no fraction")
        XCTAssertEqual(parseMicros("2025-11-25 09:58:13.5"), 1_764_064_693_500_000, "space separator, short fraction")
        XCTAssertEqual(parseMicros("2025-11-25T09:58:13.1234567Z"), 1_764_064_693_123_456, "digits past microseconds are dropped")
        for text in ["", "2025-11-25", "2025/11/25T09:58:13Z", "2025-11-25T09:58:xxZ", "yesterday"] {
            XCTAssertNil(parseMicros(text), "'\(text)'")
        }
    }

    func testLSN() {
        XCTAssertEqual(LSN(0x16_B374_D848).description, "16/B374D848")
        XCTAssertEqual(LSN("16/B374D848"), LSN(0x16_B374_D848))
        XCTAssertEqual(LSN("0/0"), .zero)
        XCTAssertEqual(LSN("ffffffff/ffffffff"), LSN(UInt64.max))
        for text in ["", "16", "16/", "/1", "g/1", "123456789/1", "1/2/3"] { XCTAssertNil(LSN(text), "'\(text)'") }
        XCTAssertLessThan(LSN("0/FFFFFFFF")!, LSN("1/0")!)
    }

    func testTextValuesIntegers() {
        let good: [(String, Int64)] = [("42", 42), ("-42", -42), ("+7", 7), ("0", 0),
                                       ("9223372036854775807", .max), ("-9223372036854775808", .min)]
        for (text, value) in good { XCTAssertEqual(TextValues.int64(slice(text)), value, "'\(text)'") }
        for text in ["", "-", "+", "9223372036854775808", "-9223372036854775809", "12a", " 1", "1.0", "0x10"] {
            XCTAssertNil(TextValues.int64(slice(text)), "'\(text)'")
        }
    }

    func testTextValuesIntegersInsideLargerBuffer() {
        // Values are slices of a record: parsing must respect the slice's own indices.
        let buffer = Array("xx123yy".utf8)
        XCTAssertEqual(TextValues.int64(buffer[2..<5]), 123)
    }

    func testTextValuesFloatsAndBooleans() {
        XCTAssertEqual(TextValues.double(slice("1.5")), 1.5)
        XCTAssertEqual(TextValues.double(slice("-0.000001")), -0.000001)
        XCTAssertEqual(TextValues.double(slice("Infinity")), .infinity)
        XCTAssertEqual(TextValues.double(slice("-Infinity")), -.infinity)
        XCTAssertTrue(TextValues.double(slice("NaN"))?.isNaN == true)
        XCTAssertNil(TextValues.double(slice("one")))
        XCTAssertEqual(TextValues.bool(slice("t")), true)
        XCTAssertEqual(TextValues.bool(slice("f")), false)
        for text in ["", "true", "T", "1", "tt"] { XCTAssertNil(TextValues.bool(slice(text)), "'\(text)'") }
    }

    func testTextValuesBytea() {
        XCTAssertEqual(TextValues.bytea(slice(#"\x"#)), [])
        XCTAssertEqual(TextValues.bytea(slice(#"\x00ff7F"#)), [0x00, 0xFF, 0x7F])
        for text in [#"\x0"#, #"\xzz"#, "00ff", #"\000"#, ""] { XCTAssertNil(TextValues.bytea(slice(text)), "'\(text)'") }
        let buffer = Array(#"..\x0a0b.."#.utf8)
        XCTAssertEqual(TextValues.bytea(buffer[2..<8]), [0x0A, 0x0B])
    }

    private func slice(_ text: String) -> ArraySlice<UInt8> { ArraySlice(Array(text.utf8)) }
}

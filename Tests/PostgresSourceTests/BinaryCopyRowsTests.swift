@testable import PostgresSource
import XCTest

/// The rows of `COPY (SELECT lsn, data …) TO STDOUT (FORMAT binary)` as the server sends them: the
/// header with the first row, one row per CopyData message, the trailer alone.
final class BinaryCopyRowsTests: XCTestCase {
    private func be(_ value: Int64, _ width: Int) -> [UInt8] { (0..<width).reversed().map { UInt8(truncatingIfNeeded: value >> (8 * $0)) } }
    private func row(_ lsn: UInt64, _ data: [UInt8]) -> [UInt8] {
        be(2, 2) + be(8, 4) + be(Int64(bitPattern: lsn), 8) + be(Int64(data.count), 4) + data
    }
    private let header = BinaryCopyRows.signature + [0, 0, 0, 0] + [0, 0, 0, 0]

    private func parse(_ messages: [[UInt8]], into rows: inout BinaryCopyRows) throws -> [(UInt64, [UInt8])] {
        var out: [(UInt64, [UInt8])] = []
        for message in messages {
            try message.withUnsafeBytes { try rows.parse($0) { out.append(($0, Array($1))) } }
        }
        return out
    }

    func testRowsBetweenHeaderAndTrailerAreHandedOnInOrder() throws {
        var rows = BinaryCopyRows()
        let high: UInt64 = 0x8000_0001_0000_00FF  // the top bit set: read unsigned
        let got = try parse([header + row(0x1_0000_0028, [66, 1, 2]), row(high, []), be(-1, 2)], into: &rows)
        XCTAssertEqual(got.map(\.0), [0x1_0000_0028, high])
        XCTAssertEqual(got.map(\.1), [[66, 1, 2], []])
        XCTAssertTrue(rows.ended)
    }

    func testAHeaderExtensionIsSkipped() throws {
        var rows = BinaryCopyRows()
        let extended = BinaryCopyRows.signature + [0, 0, 0, 0] + [0, 0, 0, 3, 9, 9, 9]
        XCTAssertEqual(try parse([extended + row(7, [1]), be(-1, 2)], into: &rows).map(\.0), [7])
    }

    func testDamagedOutputIsAnErrorNotARow() {
        var missingTrailer = BinaryCopyRows()
        XCTAssertNoThrow(try parse([header + row(1, [1])], into: &missingTrailer))
        XCTAssertFalse(missingTrailer.ended, "a caller that sees no trailer knows the batch is incomplete")

        for damaged in [
            [[UInt8]("PGCOPY\n".utf8) + [0, 0, 0, 0] + row(1, [1])],       // bad signature
            [header + Array(row(1, [1, 2, 3]).dropLast())],                 // cut short
            [header + be(3, 2) + be(8, 4) + be(1, 8)],                      // three columns
            [header + be(2, 2) + be(4, 4) + be(1, 4)],                      // an lsn of 4 bytes
            [header + be(2, 2) + be(8, 4) + be(1, 8) + be(-1, 4)],          // NULL data
            [header + be(-1, 2) + row(1, [1])],                             // a row after the trailer
        ] {
            var rows = BinaryCopyRows()
            XCTAssertThrowsError(try parse(damaged, into: &rows), "\(damaged)")
        }
    }
}

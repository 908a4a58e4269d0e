import SluiceKit
import XCTest

/// Window assignment: epoch-aligned UTC windows, half-open, hopping windows on multiples of `every`,
/// times before 1970, and PostgreSQL's time text forms.
final class AggregateWindowTests: XCTestCase {
    let minute: Int64 = 60_000_000

    func testTumblingWindowsAreAlignedToTheEpochAndHalfOpen() {
        let window = AggregateWindow(size: minute, every: minute, time: .column("t"))
        XCTAssertEqual(window.starts(containing: 0), [0])
        XCTAssertEqual(window.starts(containing: minute - 1), [0], "the last µs of a window is in it")
        XCTAssertEqual(window.starts(containing: minute), [minute], "a window's end is the next window's start")
        XCTAssertEqual(window.starts(containing: 90 * minute + 7), [90 * minute])
    }

    func testNegativeTimesFloor() {
        let window = AggregateWindow(size: minute, every: minute, time: .column("t"))
        XCTAssertEqual(window.starts(containing: -1), [-minute])
        XCTAssertEqual(window.starts(containing: -minute), [-minute])
        XCTAssertEqual(window.starts(containing: -minute - 1), [-2 * minute])
        let hopping = AggregateWindow(size: 5 * minute, every: minute, time: .column("t"))
        XCTAssertEqual(hopping.starts(containing: -1), [-5 * minute, -4 * minute, -3 * minute, -2 * minute, -minute])
    }

    func testHoppingWindowsStartOnMultiplesOfEvery() {
        let window = AggregateWindow(size: 5 * minute, every: minute, time: .column("t"))
        let time = 12 * minute + 30_000_000
        XCTAssertEqual(window.starts(containing: time), [8, 9, 10, 11, 12].map { $0 * minute })
        XCTAssertEqual(window.starts(containing: 12 * minute), [8, 9, 10, 11, 12].map { $0 * minute },
                       "a time on a boundary is in the window starting there, not the one ending there")
        // A size that is not a multiple of the step: windows [0, 150s), [60s, 210s), [120s, 270s)...
        let uneven = AggregateWindow(size: 150_000_000, every: minute, time: .column("t"))
        XCTAssertEqual(uneven.starts(containing: 149_999_999), [0, minute, 2 * minute])
        XCTAssertEqual(uneven.starts(containing: 150_000_000), [minute, 2 * minute])
        for start in uneven.starts(containing: 200_000_000) {
            XCTAssertTrue(start <= 200_000_000 && 200_000_000 < start + 150_000_000)
            XCTAssertEqual(start % minute, 0)
        }
    }

    func testComputedStartsEqualEveryWindowHoldingTheTime() {
        // The fold computes the first start instead of searching: it must match a brute-force scan.
        let shapes: [(Int64, Int64)] = [(minute, minute), (5 * minute, minute), (150_000_000, minute), (7, 3), (10, 10), (9, 1)]
        var random = SystemRandomNumberGenerator()
        for (size, every) in shapes {
            let window = AggregateWindow(size: size, every: every, time: .column("t"))
            for _ in 0..<300 {
                let time = Int64.random(in: -20 * size...20 * size, using: &random)
                let scan = stride(from: (time / every - size / every - 2) * every, through: time + every, by: Int(every))
                    .filter { $0 <= time && time < $0 + size }
                XCTAssertEqual(window.starts(containing: time), scan, "size \(size), every \(every), time \(time)")
                XCTAssertEqual(window.firstStart(containing: time), scan.first)
            }
        }
    }

    func testTimesAreReadInUTC() {
        func micros(_ text: String) -> Int64? { EventTime.micros(ArraySlice(text.utf8)) }
        XCTAssertEqual(micros("1970-01-01 00:00:00+00"), 0)
        XCTAssertEqual(micros("1970-01-01 01:00:00+01"), 0, "an offset is taken away")
        XCTAssertEqual(micros("1969-12-31 19:00:00-05"), 0)
        XCTAssertEqual(micros("1969-12-31 23:59:59.999999+00"), -1)
        XCTAssertEqual(micros("2026-12-01 14:05:30.25+00"), 1_796_133_930_250_000)
        XCTAssertEqual(micros("2026-12-01 14:05:30.25"), 1_796_133_930_250_000, "a timestamp without zone is UTC")
        XCTAssertEqual(micros("2026-12-01"), 1_796_083_200_000_000, "a date is its midnight UTC")
        XCTAssertEqual(micros("2024-02-29 00:00:00+05:30"), 1_709_145_000_000_000)
        XCTAssertNil(micros("infinity"))
        XCTAssertNil(micros("2026-13-01"))
        XCTAssertNil(micros("2026-12-01 10:00"))
    }

    func testWindowBoundsAreWrittenInUTC() {
        XCTAssertEqual(EventTime.text(0), "1970-01-01 00:00:00+00")
        XCTAssertEqual(EventTime.text(-minute), "1969-12-31 23:59:00+00")
        XCTAssertEqual(EventTime.text(1_796_133_930_250_000), "2026-12-01 14:05:30.25+00")
        for value: Int64 in [0, -1, 1, 951_782_400_000_000, -2_208_988_800_000_000, 1_796_133_930_250_001] {
            XCTAssertEqual(EventTime.micros(ArraySlice(EventTime.text(value).utf8)), value, "round trip of \(value)")
        }
    }
}

@testable import PostgresSource
import XCTest

final class WALForecastTests: XCTestCase {
    private func sample(_ time: Double, _ retained: UInt64) -> WALSamples.Sample { WALSamples.Sample(time: time, retained: retained) }

    func testGrowthFromTheOldestSampleOfTheLastHourToNow() {
        // 1 MB retained an hour ago, 37 MB now: 10 kB/s; 864 MB left at the nearer limit → 86,400 s.
        let samples = [sample(10_000 - 4000, 0), sample(10_000 - 3600, 1_000_000), sample(10_000 - 60, 36_000_000)]
        let forecast = WALForecast(samples: samples, now: 10_000, retained: 37_000_000,
                                   headroom: [("the disk", 10_000_000_000), ("max_slot_wal_keep_size", 360_000_000)])
        XCTAssertEqual(forecast.growth ?? 0, 10_000, accuracy: 0.001)
        XCTAssertEqual(forecast.secondsToLimit ?? 0, 36_000, accuracy: 0.001)
        XCTAssertEqual(forecast.limit, "max_slot_wal_keep_size")
        XCTAssertTrue(forecast.isNear)
        XCTAssertEqual(forecast.summary, "+9.8 KB/s, max_slot_wal_keep_size in 10.0 h")
    }

    func testADaemonStoppedLongAgoMeasuresFromItsLastSample() {
        // The newest sample is 5 h old: the growth since then (the slot was left behind) counts.
        let samples = [sample(0, 100), sample(1000, 200)]
        let forecast = WALForecast(samples: samples, now: 1000 + 5 * 3600, retained: 200 + 18_000, headroom: [("the disk", 1 << 40)])
        XCTAssertEqual(forecast.growth ?? 0, 1, accuracy: 0.0001)
        XCTAssertFalse(forecast.isNear)
        XCTAssertEqual(forecast.limit, "the disk")
    }

    func testNoForecastWithoutGrowthOrEarlierSamples() {
        XCTAssertNil(WALForecast(samples: [], now: 100, retained: 5, headroom: [("the disk", 10)]).growth)
        // A sample from a moment ago measures noise: ignored.
        XCTAssertNil(WALForecast(samples: [sample(95, 1)], now: 100, retained: 5, headroom: [("the disk", 10)]).growth)
        let flat = WALForecast(samples: [sample(0, 500)], now: 100, retained: 400, headroom: [("the disk", 10)])
        XCTAssertEqual(flat.summary, "not growing")
        XCTAssertNil(flat.secondsToLimit)
        XCTAssertFalse(flat.isNear)
        let unlimited = WALForecast(samples: [sample(0, 0)], now: 100, retained: 100, headroom: [])
        XCTAssertEqual(unlimited.summary, "+1 B/s, no limit set")
        XCTAssertNil(unlimited.secondsToLimit)
    }

    func testSamplesKeepTheLastHour() throws {
        let directory = NSTemporaryDirectory() + "wal-samples-\(getpid())-\(UUID().uuidString.prefix(6))"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        WALSamples.record(sample(0, 1), directory)
        WALSamples.record(sample(1800, 2), directory)
        WALSamples.record(sample(4000, 3), directory)
        XCTAssertEqual(WALSamples.read(directory), [sample(1800, 2), sample(4000, 3)])
    }
}

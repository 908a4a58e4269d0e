import Foundation
import Logging
import SluiceKit
@testable import SluiceRuntime
import XCTest

/// The console's bounded histories, its rates, its state-change log, token check and backfill ETA,
/// without a daemon.
final class ConsoleHistoryTests: XCTestCase {
    func testRingKeepsTheNewestInOrderAndNeverGrowsPastItsCapacity() {
        var ring = HistoryRing<Int>(capacity: 4)
        XCTAssertEqual(ring.elements, [])
        XCTAssertNil(ring.last)
        for value in 1...3 { ring.append(value) }
        XCTAssertEqual(ring.elements, [1, 2, 3])
        XCTAssertEqual(ring.last, 3)
        for value in 4...11 { ring.append(value) }
        XCTAssertEqual(ring.elements, [8, 9, 10, 11])
        XCTAssertEqual(ring.count, 4)
        XCTAssertEqual(ring.last, 11)
        // A day of one sample a second stays at the console's 15 minutes.
        var day = HistoryRing<Double>(capacity: Console.historyLength)
        for second in 0..<86_400 { day.append(Double(second)) }
        XCTAssertEqual(day.count, 900)
        XCTAssertEqual(day.elements.first, 86_400 - 900)
        XCTAssertEqual(day.elements.last, 86_399)
    }

    func testRateIsTheSlopeOverTheWindow() {
        var meter = RateMeter(window: 5)
        XCTAssertNil(meter.perSecond)
        meter.record(100, at: 10)
        XCTAssertNil(meter.perSecond, "one sample spans no time")
        meter.record(300, at: 12)
        XCTAssertEqual(meter.perSecond!, 100, accuracy: 1e-9)
        // Samples older than the window fall out: a burst long ago no longer counts.
        for second in 13...30 { meter.record(300 + UInt64(second - 12) * 10, at: Double(second)) }
        XCTAssertEqual(meter.perSecond!, 10, accuracy: 1e-9)
        meter.record(480, at: 31)
        XCTAssertEqual(meter.perSecond!, 8, accuracy: 1e-9, "a second without events: (480 - 440) / 5")
        // Idle: the rate falls to zero within the window.
        for second in 32...40 { meter.record(480, at: Double(second)) }
        XCTAssertEqual(meter.perSecond!, 0, accuracy: 1e-9)
    }

    func testRateStartsOverWhenTheCounterGoesBack() {
        var meter = RateMeter(window: 5)
        meter.record(1000, at: 1)
        meter.record(2000, at: 2)
        meter.record(50, at: 3)
        XCTAssertNil(meter.perSecond, "a counter that went back is not a negative rate")
        meter.record(150, at: 4)
        XCTAssertEqual(meter.perSecond!, 100, accuracy: 1e-9)
    }

    func testHealthLogsTheLast50ChangesOfKindAndKeepsTheLastError() {
        let health = ConnectorHealth()
        let logger = Logger(label: "test")
        health.set("sink", "replica", .starting, logger: logger)
        health.set("sink", "replica", .running, logger: logger)
        health.set("sink", "replica", .retrying("connection refused"), logger: logger)
        health.set("sink", "replica", .retrying("still refused"), logger: logger)
        health.set("sink", "replica", .running, logger: logger)
        let changes = health.changes
        XCTAssertEqual(changes.map(\.to), ["starting", "running", "retrying", "running"], "a new reason is not a change")
        XCTAssertEqual(changes.map(\.from), [nil, "starting", "running", "retrying"])
        XCTAssertEqual(changes[2].reason, "connection refused")
        XCTAssertEqual(health.lastError("sink", "replica")?.reason, "still refused", "kept after recovering")
        XCTAssertNil(health.lastError("sink", "local"))
        for index in 0..<60 {
            health.set("source", "app", index % 2 == 0 ? .retrying("down \(index)") : .running, logger: logger)
        }
        XCTAssertEqual(health.changes.count, 50)
        XCTAssertEqual(health.changes.last?.to, "running")
        XCTAssertEqual(health.changes.last?.name, "app")
    }

    func testTokenComparison() {
        XCTAssertTrue(ConsoleAccess.tokenMatches("s3cret-token", "s3cret-token"))
        XCTAssertFalse(ConsoleAccess.tokenMatches("s3cret-tokem", "s3cret-token"))
        XCTAssertFalse(ConsoleAccess.tokenMatches("s3cret-token-and-more", "s3cret-token"))
        XCTAssertFalse(ConsoleAccess.tokenMatches("s3cret", "s3cret-token"))
        XCTAssertFalse(ConsoleAccess.tokenMatches("", "s3cret-token"))
        XCTAssertFalse(ConsoleAccess.tokenMatches("", ""), "an empty token never matches")
    }

    func testSourceDetailsThatCountAreJSONNumbers() {
        XCTAssertEqual(StatusJSON.detailLiteral(key: "wal_limit_in_seconds", value: "3600"), "3600")
        XCTAssertEqual(StatusJSON.detailLiteral(key: "wal_growth_bytes_per_second", value: "-12"), "-12")
        XCTAssertEqual(StatusJSON.detailLiteral(key: "slot_active", value: "true"), "true")
        XCTAssertNil(StatusJSON.detailLiteral(key: "slot", value: "123"), "a name stays a string")
        XCTAssertNil(StatusJSON.detailLiteral(key: "wal_limit", value: "the disk"))
    }

    func testBackfillETAFollowsTheAverageRate() {
        var progress = BackfillProgress(id: "b1", tables: ["public.a"], startedAt: Date(timeIntervalSince1970: 1000))
        progress.tables[0].totalRows = 1000
        XCTAssertNil(StatusJSON.backfillETA(progress, now: Date(timeIntervalSince1970: 1010)), "nothing copied yet")
        progress.tables[0].copiedRows = 250
        XCTAssertEqual(StatusJSON.backfillETA(progress, now: Date(timeIntervalSince1970: 1010))!, 30, accuracy: 1e-9)
    }
}

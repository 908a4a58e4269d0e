import Foundation
import SluiceWire
import XCTest

/// SIGKILL `sluice run` while transactions flow into aggregated tables: afterwards each aggregate table
/// equals the source's GROUP BY exactly (an update applied twice or lost would show in the counts).
final class AggregateCrashLoopTests: AggregateTestCase {
    override var fixtureName: String { "aggcrash" }

    func testKillsWhileTransactionsFlowLeaveTheAggregatesExact() throws {
        try createOrders(preload: 2000)
        try writeAggregateConfig()
        let stop = SinkTestFlag()
        let stats = SinkTestStats()
        let url = source.url
        let writer = SinkTestWorker("orders-writer", stop: stop) {
            guard let db = try? PGConnection(url: url) else { return stats.note("cannot connect") }
            while !stop.isSet {
                Self.workload(db, transactions: 20, firstID: 100_000 + stats["committed"] * 10 + Int.random(in: 0..<9), stop: stop, stats: stats)
                usleep(20_000)
            }
        }
        defer { writer.stop() }

        var kills = 0
        var killsWhileApplying = 0
        var lastPositions = [try? postgresTargetLSN(), try? sqliteTargetLSN()]
        let started = Date()
        while kills < 6 && Date().timeIntervalSince(started) < 90 {
            let daemon = try startDaemon()
            // Each incarnation is seen applying transactions before its kill, so the kill lands mid-stream.
            try eventually(timeout: 60, "incarnation \(kills + 1) to apply transactions" + logTail) {
                [try? postgresTargetLSN(), try? sqliteTargetLSN()] != lastPositions
            }
            usleep(UInt32.random(in: 0...400_000))
            daemon.kill()
            kills += 1
            let positions = [try? postgresTargetLSN(), try? sqliteTargetLSN()]
            if positions != lastPositions { killsWhileApplying += 1 }
            lastPositions = positions
        }
        writer.stop()
        print("aggregate crash loop: \(kills) kills; workload \(stats.summary)")
        XCTAssertGreaterThanOrEqual(kills, 5)
        XCTAssertGreaterThan(stats["committed"], 50, "the workload ran: \(stats.summary) \(stats.notes)")

        let daemon = try startDaemon()
        try waitForSlotActive()
        try waitForTargets(lsn: try commitMarked("INSERT INTO markers DEFAULT VALUES"), timeout: 150)
        try assertAggregatesEqualSource()
        XCTAssertEqual(daemon.terminate(), 0, "clean exit on SIGTERM" + logTail)
    }
}

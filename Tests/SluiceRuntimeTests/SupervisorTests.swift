import Foundation
import SluiceKit
@testable import SluiceRuntime
import XCTest

/// The retry ladder and health policy both runners follow, driven without threads or sockets.
final class SupervisorTests: XCTestCase {
    let t0 = Date(timeIntervalSince1970: 1_000_000)
    func at(_ seconds: Double) -> Date { t0.addingTimeInterval(seconds) }

    /// Jitter fixed at its top, so each wait is the full step.
    func machine(_ role: Supervisor.Role) -> Supervisor { Supervisor(role: role, random: { 1 }) }

    func waits(_ supervisor: inout Supervisor, _ count: Int, from start: Double = 0) -> [Int] {
        (0..<count).map { i in
            guard case let .retry(after, report) = supervisor.failed(.transient("down"), at: at(start + Double(i))) else {
                XCTFail("a transient failure is retried")
                return -1
            }
            XCTAssertEqual(report, .retrying("down"))
            return after
        }
    }

    func testTransientFailuresBackOffExponentiallyToTheCap() {
        var supervisor = machine(.sink)
        XCTAssertEqual(waits(&supervisor, 9), [200, 400, 800, 1600, 3200, 6400, 10_000, 10_000, 10_000])
    }

    func testJitterKeepsEachWaitWithinHalfToAllOfItsStep() {
        var low = Supervisor(role: .source, random: { 0 })
        XCTAssertEqual(waits(&low, 4), [100, 200, 400, 800])
        var drawn = Supervisor(role: .source)
        for (step, wait) in zip([200, 400, 800, 1600, 3200], waits(&drawn, 5)) {
            XCTAssertTrue((step / 2...step).contains(wait), "\(wait) within [\(step / 2), \(step)]")
        }
    }

    func testTheLadderStartsAgainOnlyAfterAStableHealthyStretch() {
        for role in [Supervisor.Role.source, .sink] {
            var supervisor = machine(role)
            _ = waits(&supervisor, 4)
            // Healthy for a moment, failing again: keeps climbing (no tight reconnect loop).
            XCTAssertEqual(supervisor.healthy(at: at(10)), .running)
            XCTAssertEqual(waits(&supervisor, 1, from: 11), [3200], "\(role)")
            // Healthy for 30 s: the next failure starts from the bottom again.
            _ = supervisor.healthy(at: at(20))
            XCTAssertEqual(waits(&supervisor, 1, from: 50), [200], "\(role)")
            // A healthy stretch counts from its own start, not an earlier one.
            _ = supervisor.healthy(at: at(60))
            XCTAssertEqual(waits(&supervisor, 1, from: 61), [400], "\(role)")
        }
    }

    func testMisconfigurationStopsTheProcessWithExitTwoForEitherRole() {
        for role in [Supervisor.Role.source, .sink] {
            var supervisor = machine(role)
            XCTAssertEqual(supervisor.failed(.misconfigured("bad url"), at: t0), .stop(report: .stopped, exitCode: 2))
        }
    }

    func testATargetThatRefusesASinkAfterWorkingIsRetriedSlowlyAsFailed() {
        var sink = machine(.sink)
        _ = sink.healthy(at: t0)
        XCTAssertEqual(sink.failed(.misconfigured("password authentication failed"), at: at(5)),
                       .retry(after: 30_000, report: .failed("password authentication failed")))
        var source = machine(.source)
        _ = source.healthy(at: t0)
        XCTAssertEqual(source.failed(.misconfigured("bad"), at: at(5)), .stop(report: .stopped, exitCode: 2),
                       "a source's misconfiguration always stops the process")
        var draining = machine(.sink)
        _ = draining.healthy(at: t0)
        draining.draining(at: at(1))
        XCTAssertEqual(draining.failed(.misconfigured("refused"), at: at(2)), .stop(report: .stopped, exitCode: 2))
    }

    func testFatalStopsTheProcessForASourceButOnlyTheSinkForASink() {
        var source = machine(.source)
        XCTAssertEqual(source.failed(.fatal("slot gone"), at: t0), .stop(report: .stopped, exitCode: 1))
        var sink = machine(.sink)
        XCTAssertEqual(sink.failed(.fatal("behind retention"), at: t0), .stop(report: .failed("behind retention"), exitCode: nil))
    }

    func testADamagedTopicFailsASinkThatReadsAgainSlowlyButStopsASourcesProcess() {
        var sink = machine(.sink)
        for second in [0.0, 10, 20] {
            XCTAssertEqual(sink.failed(.damaged("checksum mismatch"), at: at(second)),
                           .retry(after: 10_000, report: .failed("checksum mismatch")), "no backoff ladder: the same pace")
        }
        sink.draining(at: at(30))
        XCTAssertEqual(sink.failed(.damaged("checksum mismatch"), at: at(31)), .stop(report: .failed("checksum mismatch"), exitCode: nil),
                       "a stop does not wait for a repair")
        var source = machine(.source)
        XCTAssertEqual(source.failed(.damaged("lost"), at: t0), .stop(report: .stopped, exitCode: 1))
    }

    func testADrainingSinkGivesUpAtItsDeadlineAndNeverSleepsPastIt() {
        var supervisor = machine(.sink)
        supervisor.drainMillis = 10_000
        _ = waits(&supervisor, 6)  // the next step would be 10 s
        supervisor.draining(at: at(100))
        supervisor.draining(at: at(105))  // the first call sets the deadline
        XCTAssertEqual(supervisor.failed(.transient("down"), at: at(103)), .retry(after: 7000, report: .retrying("down")))
        XCTAssertEqual(supervisor.failed(.transient("down"), at: at(109.5)), .retry(after: 500, report: .retrying("down")))
        XCTAssertEqual(supervisor.failed(.transient("down"), at: at(110)), .stop(report: .stopped, exitCode: nil))
    }

    func testFailuresCarryTheConnectorErrorsReason() {
        XCTAssertEqual(Supervisor.Failure(.transient("a")), .transient("a"))
        XCTAssertEqual(Supervisor.Failure(.misconfigured("b")).reason, "b")
        XCTAssertEqual(Supervisor.Failure(.fatal("c")), .fatal("c"))
    }
}

import SluiceKit
@testable import SluiceRuntime
import XCTest

/// Retention keeps what a sink would apply again after a crash of its target: for a sink whose
/// commits become durable later, that is from its durable position, not from what it applied.
final class SinkProgressTests: XCTestCase {
    private func position(_ offset: UInt64) -> SinkPosition {
        SinkPosition(topic: "app", offset: offset, lsn: LSN(offset), commitTime: 0)
    }

    func testRetentionFollowsTheDurablePositionOnceTheSinkReportsOne() {
        let progress = SinkProgress(sink: "replica")
        XCTAssertNil(progress.nextOffset(topic: "app"), "unknown until the stored position is read")
        progress.update(topic: "app", position: position(9), totalEvents: 0)
        XCTAssertEqual(progress.nextOffset(topic: "app"), 10, "a sink durable at commit: as applied")
        progress.durable([:])
        XCTAssertEqual(progress.nextOffset(topic: "app"), 0, "nothing known durable yet: keep everything")
        progress.applied(topic: "app", position: position(20), totalEvents: 5, events: 5, transactions: 1)
        progress.durable(["app": position(9)])
        XCTAssertEqual(progress.nextOffset(topic: "app"), 10, "applied through 20, durable through 9")
        XCTAssertEqual(progress.allPositions.map(\.offset), [20], "status still shows what was applied")
    }
}

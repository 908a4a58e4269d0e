import SluiceKit
import XCTest

/// Positions a target acknowledged before they were durable count only once its WAL flush passes them.
final class UnflushedCommitsTests: XCTestCase {
    private func position(_ topic: String, _ offset: UInt64) -> SinkPosition {
        SinkPosition(topic: topic, offset: offset, lsn: LSN(offset * 100), commitTime: 0)
    }

    func testPositionsBecomeDurableOnlyOnceTheFlushPassesTheirCommit() {
        var commits = UnflushedCommits()
        commits.committed([position("a", 3)], walEnd: LSN(1000))
        commits.committed([position("a", 7), position("b", 2)], walEnd: LSN(2000))
        commits.flushed(through: LSN(999))
        XCTAssertEqual(commits.durable, [:])
        XCTAssertFalse(commits.isEmpty)
        commits.flushed(through: LSN(1000))
        XCTAssertEqual(commits.durable, ["a": position("a", 3)])
        commits.flushed(through: LSN(1999))
        XCTAssertEqual(commits.durable, ["a": position("a", 3)])
        commits.flushed(through: LSN(5000))
        XCTAssertEqual(commits.durable, ["a": position("a", 7), "b": position("b", 2)])
        XCTAssertTrue(commits.isEmpty)
    }

    func testResetForgetsUnflushedCommitsButKeepsDurableOnes() {
        var commits = UnflushedCommits()
        commits.committed([position("a", 3)], walEnd: LSN(1000))
        commits.flushed(through: LSN(1000))
        commits.committed([position("a", 9)], walEnd: LSN(3000))
        commits.reset()
        commits.flushed(through: LSN(9000))
        XCTAssertEqual(commits.durable, ["a": position("a", 3)], "a commit lost with the connection is not taken as flushed")
    }

    func testPastTheLimitTheNewestEntryWaitsForTheLaterCommit() {
        var commits = UnflushedCommits()
        for i in 0..<UInt64(UnflushedCommits.limit + 10) {
            commits.committed([position("a", i)], walEnd: LSN(1000 + i))
        }
        let last = UInt64(UnflushedCommits.limit + 9)
        // The entry that absorbed the overflow ends at the last commit's WAL position, never earlier.
        commits.flushed(through: LSN(1000 + last - 1))
        XCTAssertEqual(commits.durable["a"]?.offset, UInt64(UnflushedCommits.limit - 2))
        commits.flushed(through: LSN(1000 + last))
        XCTAssertEqual(commits.durable["a"]?.offset, last)
    }

    func testAWALPositionBehindAnEarlierCommitIsNotTrusted() {
        var commits = UnflushedCommits()
        commits.committed([position("a", 1)], walEnd: LSN(5000))
        commits.committed([position("a", 2)], walEnd: LSN(4000))
        commits.flushed(through: LSN(4500))
        XCTAssertEqual(commits.durable, [:])
        commits.flushed(through: LSN(5000))
        XCTAssertEqual(commits.durable, ["a": position("a", 2)])
    }
}

import Foundation
@testable import SluiceRuntime
import XCTest

/// The data directory's lock: one process at a time, and a killed holder waited for, not reported.
final class DataDirectoryLockTests: XCTestCase {
    private func directory() throws -> String {
        let path = NSTemporaryDirectory() + "sluice-lock-\(UUID().uuidString)"
        addTeardownBlock { try? FileManager.default.removeItem(atPath: path) }
        return path
    }

    func testASecondHolderIsRefusedWithTheFirstOnesPid() throws {
        let path = try directory()
        guard case let .success(held) = try DataDirectoryLock.acquire(dataDirectory: path) else {
            return XCTFail("the first acquire must succeed")
        }
        // flock is per open file: a second open in this process contends like another process would.
        guard case let .failure(holder) = try DataDirectoryLock.acquire(dataDirectory: path, busyWait: 0.2) else {
            return XCTFail("the lock is held")
        }
        XCTAssertEqual(holder.pid, getpid())
        XCTAssertEqual(DataDirectoryLock.isHeld(dataDirectory: path), getpid())
        withExtendedLifetime(held) {}
    }

    func testAZombieOrAKilledProcessCountsAsExiting() throws {
        XCTAssertFalse(DataDirectoryLock.isExiting(getpid()), "this process runs")
        var pid: pid_t = 0
        let arguments: [UnsafeMutablePointer<CChar>?] = [strdup("/bin/true"), nil]
        defer { arguments.forEach { free($0) } }
        XCTAssertEqual(posix_spawn(&pid, "/bin/true", nil, nil, arguments, environ), 0)
        // Not reaped yet: once it has exited it is a zombie.
        let deadline = Date().addingTimeInterval(10)
        while !DataDirectoryLock.isExiting(pid) && Date() < deadline { usleep(10_000) }
        XCTAssertTrue(DataDirectoryLock.isExiting(pid), "an exited, unreaped child is a zombie")
        var status: Int32 = 0
        waitpid(pid, &status, 0)
        XCTAssertFalse(DataDirectoryLock.isExiting(pid), "a reaped pid has no status to read")
    }
}

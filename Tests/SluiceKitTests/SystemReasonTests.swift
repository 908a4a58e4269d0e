import Foundation
import SluiceKit
import XCTest

/// Foundation's file errors become the system's words, on the real file system.
final class SystemReasonTests: XCTestCase {
    func reason(creating path: String) -> String? {
        do {
            try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
            return nil
        } catch {
            return SystemReason.of(error)
        }
    }

    func testFileErrorsReadAsTheSystemSaysThem() throws {
        XCTAssertEqual(reason(creating: "/proc/sluice-reason-test/sub"), "No such file or directory")
        let file = NSTemporaryDirectory() + "/sluice-reason-\(getpid())"
        XCTAssertTrue(FileManager.default.createFile(atPath: file, contents: Data()))
        defer { try? FileManager.default.removeItem(atPath: file) }
        let notDirectory = try XCTUnwrap(reason(creating: file + "/sub"))
        XCTAssertFalse(notDirectory.contains("Domain="), notDirectory)
        XCTAssertEqual(SystemReason.of(ConnectorError.transient("plain")), "\(ConnectorError.transient("plain"))")
    }
}

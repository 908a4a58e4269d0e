import Foundation
@testable import SluiceRuntime
import XCTest

/// `status --json` reads the daemon's times back from its status file and `/api/status` prints them
/// from memory: both must print the same millisecond.
final class StatusTimestampTests: XCTestCase {
    func testTimesPrintToTheMillisecondAndReadBackTheSame() throws {
        let cases: [(TimeInterval, String)] = [
            (1_796_299_343.1215, "2026-12-03T12:02:23.122Z"),
            (1_796_299_343.9996, "2026-12-03T12:02:24.000Z"),
            (1_796_299_343, "2026-12-03T12:02:23.000Z"),
            (-0.25, "1969-12-31T23:59:59.750Z"),
        ]
        for (seconds, expected) in cases {
            let text = StatusJSON.timestamp(Date(timeIntervalSince1970: seconds))
            XCTAssertEqual(text, expected)
            let back = try XCTUnwrap(StatusJSON.parseTimestamp(text), text)
            XCTAssertEqual(StatusJSON.timestamp(back), text, "read back and printed again")
        }
        XCTAssertEqual(StatusJSON.parseTimestamp("2026-12-03T12:02:23Z")?.timeIntervalSince1970, 1_796_299_343,
                       "a status file written in whole seconds still reads")
        XCTAssertNil(StatusJSON.parseTimestamp("yesterday"))
    }

    func testTheStatusFileKeepsMilliseconds() throws {
        let directory = NSTemporaryDirectory() + "sluice-status-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let since = Date(timeIntervalSince1970: 1_796_299_343.121)
        let file = StatusFile(pid: 7, updatedAt: since, connectors: [
            .init(kind: "sink", name: "down", state: "retrying", error: "refused", since: since, lastError: "refused", lastErrorAt: since),
        ])
        XCTAssertTrue(file.write(dataDirectory: directory))
        let read = try XCTUnwrap(StatusFile.read(dataDirectory: directory))
        XCTAssertEqual(read.connectors.first.map { StatusJSON.timestamp($0.since) }, "2026-12-03T12:02:23.121Z")
        XCTAssertEqual(read.connectors.first?.lastErrorAt.map(StatusJSON.timestamp), "2026-12-03T12:02:23.121Z")
    }
}

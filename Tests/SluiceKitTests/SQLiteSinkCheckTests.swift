import Foundation
import Logging
import SluiceConnectors
import SluiceKit
import SluiceRuntime
import XCTest

/// `sluice check` on an SQLite sink whose file exists: a file that is not a readable SQLite database
/// (damaged, or something else) is an error naming it and the fix, not "exists and is writable".
final class SQLiteSinkCheckTests: XCTestCase {
    func testADamagedDatabaseFileIsAnError() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-sqlite-check-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let config = directory + "/sluice.yml"
        try """
            sources:
              - {name: app, type: postgres, url: "postgresql://sluice@127.0.0.1:5432/app"}
            sinks:
              - {name: lite, type: sqlite, path: replica.db}
            """.write(toFile: config, atomically: true, encoding: .utf8)
        func findings() throws -> [CheckFinding] {
            let section = try SluiceConfig.load(path: config, registry: .builtin).sinks[0].config
            return try ConnectorRegistry.builtin.sinks["sqlite"]!.init(config: section).check(logger: Logger(label: "test"))
        }
        let database = directory + "/replica.db"
        XCTAssertEqual(try findings().map(\.severity), [.ok], "a database still to be created")

        try Data("SQLite format 2? no: damaged bytes where the header was".utf8).write(to: URL(fileURLWithPath: database))
        let damaged = try findings()
        XCTAssertEqual(damaged.map(\.severity), [.error], "\(damaged)")
        XCTAssertTrue(damaged.first?.message.contains("\(database) is not a readable SQLite database") ?? false, "\(damaged)")
        XCTAssertNotNil(damaged.first?.fix, "\(damaged)")
    }
}

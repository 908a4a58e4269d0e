import Foundation
import XCTest

/// A data_dir the file's checks let through but the system refuses to create (here under /proc; for
/// another user, a directory it may not write) is a configuration to fix: `sluice run` exits 2 naming
/// the key, the path and the system's reason, not a Foundation error object.
final class DataDirectoryTests: DaemonTestCase {
    override var fixtureName: String { "datadir" }
    override var startsSourceCluster: Bool { false }

    func testADataDirectoryThatCannotBeCreatedExits2NamingIt() throws {
        let dataDir = "/proc/sluice-test-data-dir"
        try """
            data_dir: \(dataDir)
            sources:
              - {name: items, type: exec, command: [/bin/true]}
            """.write(toFile: configPath, atomically: true, encoding: .utf8)
        let result = try sluice(["run", "--config", configPath], timeout: 30)
        XCTAssertEqual(result.status, 2, result.describe)
        XCTAssertTrue(result.err.contains("cannot use data_dir \(dataDir) (data_dir in \(configPath)): \(dataDir) cannot be created (No such file or directory)"),
                      result.describe)
        XCTAssertTrue(result.err.contains("set data_dir to a directory this user can create and write"), result.describe)
        XCTAssertFalse(result.err.contains("NSCocoaErrorDomain"), result.describe)
    }

    func testAFileSinkDirectoryThatCannotBeCreatedIsNamedWithTheSystemsReason() throws {
        try """
            data_dir: \(dataDirectory)
            sources:
              - {name: items, type: exec, command: [/bin/true]}
            sinks:
              - {name: files, type: file, path: /proc/sluice-test-file-sink, topics: [items]}
            """.write(toFile: configPath, atomically: true, encoding: .utf8)
        let result = try sluice(["run", "--config", configPath], timeout: 30)
        XCTAssertEqual(result.status, 2, result.describe)
        XCTAssertTrue(result.err.contains("sink files: cannot use /proc/sluice-test-file-sink: No such file or directory"), result.describe)
        XCTAssertFalse(result.err.contains("NSCocoaErrorDomain"), result.describe)
    }
}

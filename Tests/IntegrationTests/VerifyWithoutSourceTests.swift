import Foundation
import XCTest

/// `sluice verify` with a file whose SQL sinks read no topic of a PostgreSQL source (an exec source, or
/// a sink-only file of a split deployment) can compare nothing: that is not "equal" (exit 0) but a file
/// that gives verify nothing to do — exit 2, naming the file, each topic and what to add.
final class VerifyWithoutSourceTests: DaemonTestCase {
    override var fixtureName: String { "verifynosource" }
    override var startsSourceCluster: Bool { false }

    func testAFileWithoutAPostgreSQLSourceIsAUsageErrorNamingTheFileAndTheFix() throws {
        try """
            data_dir: \(dataDirectory)
            sources:
              - {name: items, type: exec, command: [/bin/true]}
            sinks:
              - {name: local, type: sqlite, path: \(directory!)/local.db, topics: [items]}
            """.write(toFile: configPath, atomically: true, encoding: .utf8)
        for json in [false, true] {
            let result = try sluice(["verify", "--config", configPath] + (json ? ["--json"] : []))
            XCTAssertEqual(result.status, 2, "nothing compared is not a success: \(result.describe)")
            for words in [configPath, "nothing to verify", "topic items", "exec", "type: postgres"] {
                XCTAssertTrue(result.err.contains(words), "the message names \(words): \(result.describe)")
            }
            XCTAssertFalse(result.out.contains("\"exit\":0") || result.out.contains("0 differ"), "no summary of nothing: \(result.describe)")
        }
    }
}

@testable import PostgresSource
import SluiceKit
import XCTest

/// `sluice status` on a source whose database is down: the reason names the URL once (redacted), not
/// "cannot connect to URL: cannot connect to URL: …".
final class SourceStatusTests: XCTestCase {
    func testADownDatabaseIsNamedOnce() throws {
        let config = ConnectorConfig(file: "sluice.yml", path: "sources[0] (app)", name: "app", type: "postgres",
                                     entries: [("url", .scalar("postgresql://sluice:s3cret@127.0.0.1:1/app", line: 4))],
                                     line: 3, dataDirectory: "/tmp", baseDirectory: "/tmp")
        let error = try XCTUnwrap(try PostgresSource(config: config).status().error)
        XCTAssertEqual(error.components(separatedBy: "cannot connect to").count - 1, 1, error)
        XCTAssertTrue(error.contains("127.0.0.1:1"), error)
        XCTAssertFalse(error.contains("s3cret"), error)
    }
}

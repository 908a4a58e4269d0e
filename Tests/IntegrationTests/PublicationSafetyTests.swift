import Foundation
import XCTest

/// Sluice never creates a FOR ALL TABLES publication unasked: with one, any table created later
/// without a key or REPLICA IDENTITY FULL makes the application's UPDATE and DELETE fail. `tables: all`
/// opts in (with a warning from check); a FOR ALL TABLES publication the user made keeps working.
final class PublicationSafetyTests: SinkTestCase {
    override var fixtureName: String { "pubsafety" }

    func publications() throws -> [String] {
        try source.query("SELECT pubname || ':' || puballtables::text FROM pg_publication ORDER BY 1").compactMap { $0[0] }
    }

    func testWithoutTablesNoPublicationIsCreatedForAllTables() throws {
        try source.query("CREATE TABLE items (id int PRIMARY KEY, v text); INSERT INTO items VALUES (1, 'a');")
        try writeConfig(tables: nil)
        let check = try sluice(["check", "--config", configPath])
        XCTAssertEqual(check.status, 2, check.out + check.err)
        XCTAssertTrue((check.out + check.err).contains("tables: all"), "check names the opt-in: \(check.out + check.err)")
        XCTAssertTrue((check.out + check.err).contains("UPDATE and DELETE"), "check says what is at risk: \(check.out + check.err)")
        let run = try sluice(["run", "--config", configPath], timeout: 60)
        XCTAssertEqual(run.status, 2, run.out + run.err)
        XCTAssertTrue((run.out + run.err).contains("tables: all"), run.out + run.err)
        XCTAssertEqual(try publications(), [], "nothing was created at the source")
        XCTAssertEqual(try source.scalar("SELECT count(*) FROM pg_replication_slots"), "0")
    }

    func testTablesAllOptsInAndCapturesTablesCreatedLater() throws {
        try source.query("CREATE TABLE items (id int PRIMARY KEY, v text); INSERT INTO items VALUES (1, 'a');")
        try writeConfig(tables: nil, sourceExtra: ["tables: all"])
        let check = try sluice(["check", "--config", configPath])
        XCTAssertEqual(check.status, 0, check.out + check.err)
        XCTAssertTrue(check.out.contains("FOR ALL TABLES"), "check warns about the opt-in: \(check.out)")
        _ = try startDaemon()
        try waitForSlotActive()
        XCTAssertEqual(try publications(), ["sluice_app:true"])
        let db = try source.connect()
        try db.execute("CREATE TABLE later (id int PRIMARY KEY, n int)")
        let end = try commitMarked("INSERT INTO later VALUES (1, 10), (2, 20); UPDATE items SET v = 'b';", on: db)
        try waitForTargets(lsn: end)
        try assertTargetsEqualSource("public.items")
        try assertTargetsEqualSource("public.later")
    }

    func testAnExistingForAllTablesPublicationKeepsWorking() throws {
        try source.query("""
            CREATE TABLE items (id int PRIMARY KEY, v text); INSERT INTO items VALUES (1, 'a');
            CREATE PUBLICATION mine FOR ALL TABLES;
            """)
        try writeConfig(tables: nil, sourceExtra: ["publication: mine"])
        let check = try sluice(["check", "--config", configPath])
        XCTAssertEqual(check.status, 0, check.out + check.err)
        _ = try startDaemon()
        try waitForSlotActive()
        let db = try source.connect()
        try db.execute("CREATE TABLE later (id int PRIMARY KEY, n int)")
        let end = try commitMarked("INSERT INTO later VALUES (1, 10); UPDATE items SET v = 'c';", on: db)
        try waitForTargets(lsn: end)
        try assertTargetsEqualSource("public.items")
        try assertTargetsEqualSource("public.later")
        XCTAssertEqual(try publications(), ["mine:true"], "Sluice created no publication of its own")
    }
}

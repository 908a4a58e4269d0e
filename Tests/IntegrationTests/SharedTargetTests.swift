import Foundation
import XCTest

/// Several sinks into one PostgreSQL database start together: their `CREATE … IF NOT EXISTS` of
/// `sluice_offsets`, the schemas and the tables race (PostgreSQL fails the loser on a catalog index).
/// Every sink must come up and apply everything, none fail.
final class SharedTargetTests: SinkTestCase {
    override var fixtureName: String { "sharedtarget" }

    func testSinksIntoOneDatabaseStartingTogetherAllApply() throws {
        try source.query("""
            CREATE SCHEMA shop;
            CREATE TABLE shop.orders (id int PRIMARY KEY, note text);
            CREATE TABLE shop.items (id int PRIMARY KEY, note text);
            CREATE TABLE public.events (id int PRIMARY KEY, note text);
            INSERT INTO shop.orders SELECT i, 'o' FROM generate_series(1, 200) i;
            INSERT INTO shop.items SELECT i, 'i' FROM generate_series(1, 200) i;
            INSERT INTO public.events SELECT i, 'e' FROM generate_series(1, 200) i;
            """)
        let names = ["one", "two", "three", "four"]
        try writeSourceConfig(tables: ["shop.orders", "shop.items", "public.events"], sinks: names.flatMap { name in
            ["  - name: \(name)", "    type: postgres", "    url: \(target.url)", "    topics: [app]"]
        })
        let daemon = try startDaemon()
        let last = try commitMarked("INSERT INTO shop.orders VALUES (201, 'last'); INSERT INTO public.events VALUES (201, 'last')")
        try eventually(timeout: 120, "every sink to apply everything" + logTail) {
            let rows = try target.query("SELECT sink, lsn::text FROM public.sluice_offsets WHERE topic = 'app'")
            return rows.count == names.count && rows.allSatisfy { lsnValue($0[1] ?? "0/0") >= last }
        }
        XCTAssertEqual(try target.count("shop.orders"), 201)
        XCTAssertEqual(try target.count("shop.items"), 200)
        XCTAssertEqual(try target.count("public.events"), 201)
        let status = try sluiceStatus(configPath)
        for name in names { XCTAssertEqual(status.state(sink: name), "running", "sink \(name): \(status.text)") }
        XCTAssertFalse(daemon.log.contains("failed and stopped"), logTail)
        XCTAssertEqual(daemon.terminate(timeout: 20), 0, logTail)
    }
}

import Foundation
import SluiceWire
import XCTest

/// Row filters and column lists pushed into the publication (PostgreSQL 15): the snapshot, the stream
/// and backfill carry only the rows and columns they let through; an UPDATE moving a row out of the
/// filter arrives as a delete, into it as an insert, so both targets hold exactly the filtered source.
/// An existing publication that differs from the file is left alone: check prints the fix, run exits 2.
final class PublicationFilterTests: SinkTestCase {
    override var fixtureName: String { "pubfilter" }

    /// `orders` filtered on a non-key column (so REPLICA IDENTITY FULL); `customers` filtered on its key,
    /// with a column list that leaves `ssn` out.
    let tablesKey = """
        tables:
          - {name: public.orders, where: "status <> 'draft'"}
          - {name: public.customers, where: "id <= 100", columns: [id, name]}
        """

    func createTables() throws {
        try source.query("""
            CREATE TABLE orders (id int PRIMARY KEY, status text NOT NULL, amount int, note text);
            ALTER TABLE orders REPLICA IDENTITY FULL;
            CREATE TABLE customers (id int PRIMARY KEY, name text, ssn text);
            INSERT INTO orders SELECT i, CASE WHEN i % 3 = 0 THEN 'draft' ELSE 'open' END, i * 10, 'n' || i
              FROM generate_series(1, 30) i;
            INSERT INTO customers SELECT i, 'c' || i, 'secret' || i FROM generate_series(95, 105) i;
            CREATE VIEW orders_expected AS SELECT * FROM orders WHERE status <> 'draft';
            CREATE VIEW customers_expected AS SELECT id, name FROM customers WHERE id <= 100;
            """)
    }

    /// Both targets hold exactly the rows of `view` (the filtered source), with only `columns`.
    func assertTargets(_ table: String, equal view: String, columns: [String], file: StaticString = #filePath,
                       line: UInt = #line) throws {
        let expected = try postgresRows(source, view, columns: columns)
        XCTAssertEqual(try postgresTargetColumns("public." + table), columns, "\(table): the PostgreSQL target's columns",
                       file: file, line: line)
        XCTAssertEqual(try sqliteColumns("public." + table), columns, "\(table): the SQLite target's columns", file: file, line: line)
        if let diff = rowsDifference(expected: expected, actual: try postgresRows(target, "public." + table, columns: columns)) {
            XCTFail("\(table): the PostgreSQL target differs from the filtered source: \(diff)" + logTail, file: file, line: line)
        }
        if let diff = rowsDifference(expected: expected, actual: try IntegrationTests.sqliteRows(path: sqlitePath, table: table, columns: columns)) {
            XCTFail("\(table): the SQLite target differs from the filtered source: \(diff)" + logTail, file: file, line: line)
        }
    }

    func testFilteredSnapshotStreamAndBackfillKeepTargetsExact() throws {
        try createTables()
        try writeConfig(tables: nil, sourceExtra: tablesKey.split(separator: "\n").map(String.init))
        let check = try sluice(["check", "--config", configPath])
        XCTAssertEqual(check.status, 0, check.describe)
        XCTAssertTrue(check.out.contains("WHERE (status <> 'draft')"), "check shows the publication it will create: \(check.out)")
        _ = try startDaemon()
        try waitForSlotActive()
        let publication = try source.query("""
            SELECT tablename, rowfilter, array_to_string(attnames, ',') FROM pg_publication_tables WHERE pubname = 'sluice_app'
            ORDER BY 1
            """).map { $0.map { $0 ?? "NULL" } }
        XCTAssertEqual(publication, [["customers", "(id <= 100)", "id,name"], ["orders", "(status <> 'draft'::text)", "id,status,amount,note"]])

        // Rows entering and leaving the filters by UPDATE, besides plain changes on both sides of them.
        let end = try commitMarked("""
            INSERT INTO orders VALUES (100, 'draft', 1, 'x'), (101, 'open', 2, 'y');
            UPDATE orders SET status = 'open' WHERE id IN (3, 6, 100);
            UPDATE orders SET status = 'draft' WHERE id IN (1, 2, 101);
            UPDATE orders SET amount = amount + 1 WHERE id IN (4, 9);
            DELETE FROM orders WHERE id IN (5, 12);
            UPDATE customers SET ssn = 'changed' WHERE id = 96;
            UPDATE customers SET id = 250 WHERE id = 97;
            UPDATE customers SET id = 60, name = 'moved in' WHERE id = 104;
            INSERT INTO customers VALUES (50, 'in', 's'), (150, 'out', 's');
            DELETE FROM customers WHERE id IN (98, 105);
            """)
        try waitForTargets(lsn: end)
        try assertTargets("orders", equal: "orders_expected", columns: ["id", "status", "amount", "note"])
        try assertTargets("customers", equal: "customers_expected", columns: ["id", "name"])

        // Backfill copies through the same filter and columns: no draft order, no ssn, no customer past 100.
        try source.query("UPDATE orders SET note = 'unchanged since' WHERE id = 7")
        let backfill = try sluice(["backfill", "--config", configPath], timeout: 120)
        XCTAssertEqual(backfill.status, 0, backfill.describe)
        let last = try commitMarked("UPDATE orders SET status = 'open' WHERE id = 9")
        try waitForTargets(lsn: last)
        try assertTargets("orders", equal: "orders_expected", columns: ["id", "status", "amount", "note"])
        try assertTargets("customers", equal: "customers_expected", columns: ["id", "name"])

        // The publication Sluice created matches the file, as PostgreSQL normalized it.
        let again = try sluice(["check", "--config", configPath])
        XCTAssertEqual(again.status, 0, again.describe)
    }

    func testDifferingPublicationIsLeftAloneCheckPrintsTheFix() throws {
        try createTables()
        try source.query("CREATE PUBLICATION mine FOR TABLE orders WHERE (status <> 'void'), customers (id, name, ssn)")
        try writeConfig(tables: nil, sourceExtra: ["publication: mine"] + tablesKey.split(separator: "\n").map(String.init))
        let check = try sluice(["check", "--config", configPath])
        XCTAssertEqual(check.status, 2, check.describe)
        XCTAssertTrue(check.out.contains("WHERE (status <> 'void'::text)"), "check shows what the publication carries: \(check.out)")
        XCTAssertTrue(check.out.contains("WHERE (status <> 'draft'::text)"), "check shows what the file says: \(check.out)")
        let run = try sluice(["run", "--config", configPath], timeout: 60)
        XCTAssertEqual(run.status, 2, run.describe)
        XCTAssertTrue(run.err.contains("publication mine carries"), run.describe)
        XCTAssertEqual(try source.scalar("SELECT count(*) FROM pg_replication_slots"), "0", "run created no slot")
        XCTAssertEqual(try source.scalar("SELECT rowfilter FROM pg_publication_tables WHERE tablename = 'orders'"),
                       "(status <> 'void'::text)", "the publication is unchanged")

        // The printed statements make the publication match the file.
        let fixes = check.out.split(separator: "\n").filter { $0.contains("fix: BEGIN; ALTER PUBLICATION") }
        XCTAssertEqual(fixes.count, 2, check.out)
        for fix in fixes { try source.query(String(fix.split(separator: "fix: ", maxSplits: 1)[1])) }
        let fixed = try sluice(["check", "--config", configPath])
        XCTAssertEqual(fixed.status, 0, fixed.describe)
    }
}

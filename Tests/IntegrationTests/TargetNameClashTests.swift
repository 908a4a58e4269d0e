import Foundation
import SluiceWire
import XCTest

/// Source tables whose target names clash: `public.sluice_offsets` is the name of the sinks' own
/// position table (mirrored, its rows and columns would overwrite the positions), and the SQLite sink
/// names both `public.a_b` and `a.b` `a_b`. Each sink refuses the table, naming both names and the
/// `rename:` that fixes it, instead of merging them; the positions stay intact; with the rename, every
/// table arrives whole.
final class TargetNameClashTests: SinkTestCase {
    override var fixtureName: String { "nameclash" }

    func testClashingTargetNamesStopTheSinkWithTheFixAndRenameResolvesThem() throws {
        try source.query("""
            CREATE SCHEMA a;
            CREATE TABLE public.sluice_offsets (id int PRIMARY KEY, v text);
            INSERT INTO public.sluice_offsets SELECT i, 'v' || i FROM generate_series(1, 5) i;
            CREATE TABLE public.a_b (id int PRIMARY KEY, x text);
            INSERT INTO public.a_b SELECT i, 'x' || i FROM generate_series(1, 5) i;
            CREATE TABLE a.b (id int PRIMARY KEY, y int);
            INSERT INTO a.b SELECT i, i FROM generate_series(101, 105) i;
            """)
        let tables = ["public.sluice_offsets", "public.a_b", "a.b"]
        // The SQLite sink leaves public.sluice_offsets out, so it meets the clash of a_b.
        try writeSourceConfig(tables: tables, sinks: [
            "  - name: replica", "    type: postgres", "    url: \(target.url)", "    topics: [app]",
            "  - name: local", "    type: sqlite", "    path: \(sqlitePath)", "    topics: [app]",
            "    tables: [\"*.*\", \"!public.sluice_offsets\"]",
        ])
        let daemon = try startDaemon()
        try eventually(timeout: 60, "both sinks to fail on the clashing names" + logTail) {
            let status = try sluice(["status", "--config", configPath])
            return status.out.contains("failed") && status.out.components(separatedBy: "rename:").count >= 3
        }
        let status = try sluice(["status", "--config", configPath])
        XCTAssertTrue(status.out.contains("public.sluice_offsets has the name of a table the sink keeps"), status.out)
        XCTAssertTrue(status.out.contains("both be written to the SQLite table"), status.out)
        // The PostgreSQL target's positions table is still the sink's own.
        XCTAssertEqual(try target.query("""
            SELECT attname FROM pg_attribute WHERE attrelid = 'public.sluice_offsets'::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum
            """).map { $0[0] ?? "" }.prefix(3), ["sink", "topic", "offset"])
        XCTAssertEqual(daemon.terminate(), 0, logTail)

        // Renamed at both sinks, every table arrives whole.
        try writeSourceConfig(tables: tables, sinks: [
            "  - name: replica", "    type: postgres", "    url: \(target.url)", "    topics: [app]",
            "    rename: {public.sluice_offsets: public.app_offsets}",
            "  - name: local", "    type: sqlite", "    path: \(sqlitePath)", "    topics: [app]",
            "    rename: {public.sluice_offsets: public.app_offsets, a.b: a.b_of_a}",
        ])
        _ = try startDaemon()
        try waitForTargets(lsn: try commitMarked("INSERT INTO a.b VALUES (106, 6); INSERT INTO public.a_b VALUES (6, 'x6')"))
        XCTAssertEqual(try target.count("public.app_offsets"), 5)
        XCTAssertEqual(try target.count("public.a_b"), 6)
        XCTAssertEqual(try target.count("a.b"), 6)
        XCTAssertEqual(try IntegrationTests.sqliteRows(path: sqlitePath, table: "a_b", columns: ["id", "x"]).count, 6)
        XCTAssertEqual(try IntegrationTests.sqliteRows(path: sqlitePath, table: "a_b_of_a", columns: ["id", "y"]).count, 6)
        XCTAssertEqual(try IntegrationTests.sqliteRows(path: sqlitePath, table: "app_offsets", columns: ["id", "v"]).count, 5)
    }

    /// Target tables created by hand without a unique key, with 63-byte names: the key index the sink adds
    /// has a name of its own (cut to 63 bytes, it was the table's own name, and the sink failed).
    func testKeyIndexesOfLongTargetTablesGetNamesOfTheirOwn() throws {
        let long = String(repeating: "l", count: 60) + "_ab"
        let other = String(repeating: "l", count: 60) + "_cd"
        try source.query("""
            CREATE TABLE \(long) (id int PRIMARY KEY, v text); CREATE TABLE \(other) (id int PRIMARY KEY, v text);
            INSERT INTO \(long) VALUES (1, 'one'); INSERT INTO \(other) VALUES (1, 'one');
            """)
        try target.query("CREATE TABLE \(long) (id int, v text); CREATE TABLE \(other) (id int, v text)")
        _ = try writeConfig(tables: ["public.\(long)", "public.\(other)"])
        let daemon = try startDaemon()
        try waitForTargets(lsn: try commitMarked("INSERT INTO \(long) VALUES (2, 'two'); UPDATE \(other) SET v = 'uno' WHERE id = 1"))
        XCTAssertEqual(try target.count("public.\(long)"), 2, logTail)
        XCTAssertEqual(try target.query("SELECT v FROM \(other)").map { $0[0] }, ["uno"], logTail)
        XCTAssertEqual(try target.scalar("SELECT count(*) FROM pg_index WHERE indisunique AND indrelid IN ('\(long)'::regclass, '\(other)'::regclass)"),
                       "2", "each table got its key index")
        XCTAssertEqual(daemon.terminate(), 0, logTail)
    }
}

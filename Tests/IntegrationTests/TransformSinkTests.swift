import Foundation
import SluiceKit
import SluiceWire
import XCTest

/// Per-sink transforms end to end: a real source, a PostgreSQL target and SQLite files, each target
/// compared with what the transforms applied to the source should give.
final class TransformSinkTests: SinkTestCase {
    override var fixtureName: String { "transforms" }
    static let maskKey = "s3cret-mask"
    let hash = HMACSHA256(key: Array(TransformSinkTests.maskKey.utf8))
    var historyPath: String { directory + "/history.db" }
    var ignorePath: String { directory + "/ignore.db" }

    /// The mirror keys every test's `replica`/`local` sinks share.
    func mirrorKeys(deletes: String, metadata: Bool) -> [String] {
        [
            "    tables: [\"public.*\", \"!public.audit_*\", \"!public.tags\"]",
            "    rename: {public.orders: analytics.orders}",
            "    where: {public.orders: \"amount > 100 AND status <> 'draft'\"}",
            "    columns: {public.customers: {exclude: [ssn], mask: {email: hash, phone: redact}}, public.orders: {mask: {note: keep 3}}}",
            "    mask_key: \(Self.maskKey)",
            "    deletes: \(deletes)",
        ] + (metadata ? ["    metadata: [op, xid]"] : [])
    }

    func writeTransformConfig(deletes: String = "soft", metadata: Bool = true, ignoreSink: Bool = true) throws {
        let keys = mirrorKeys(deletes: deletes, metadata: metadata)
        var sinks = ["  - name: replica", "    type: postgres", "    url: \(target.url)", "    topics: [app]"] + keys
        sinks += ["  - name: local", "    type: sqlite", "    path: \(sqlitePath)", "    topics: [app]"] + keys
        // The history sink writes a database of its own (two sinks creating sluice_offsets in one database race).
        sinks += ["  - name: history", "    type: postgres", "    url: \(historyURL)", "    tables: [public.events]",
                  "    rename: {public.events: history.events}", "    mode: history"]
        sinks += ["  - name: history_lite", "    type: sqlite", "    path: \(historyPath)", "    tables: [public.events]", "    mode: history"]
        // A keyless table with metadata: its old rows are matched without the added columns.
        for (name, kind, at) in [("tags", "postgres", "url: \(tagsURL)"), ("tags_lite", "sqlite", "path: \(tagsPath)")] {
            sinks += ["  - name: \(name)", "    type: \(kind)", "    \(at)", "    tables: [public.tags]", "    metadata: [lsn, op]"]
        }
        if ignoreSink {
            sinks += ["  - name: ignore_lite", "    type: sqlite", "    path: \(ignorePath)", "    tables: [customers]", "    deletes: ignore"]
        }
        try writeSourceConfig(tables: ["public.customers", "public.orders", "public.audit_log", "public.events", "public.tags"],
                              sinks: sinks)
    }

    var historyURL: String { String(target.url.dropLast("postgres".count)) + "history" }
    var tagsURL: String { String(target.url.dropLast("postgres".count)) + "tags" }
    var tagsPath: String { directory + "/tags.db" }

    func createTables() throws {
        try target.query("CREATE DATABASE history")
        try target.query("CREATE DATABASE tags")
        try source.query("""
            CREATE TABLE customers (id int PRIMARY KEY, email text, ssn text, phone text, amount numeric(10,2));
            ALTER TABLE customers REPLICA IDENTITY FULL;  -- every column flagged identity: excluding ssn stays allowed
            CREATE TABLE orders (id int PRIMARY KEY, status text NOT NULL, amount numeric(12,2), note text);
            CREATE TABLE audit_log (id int PRIMARY KEY, what text);
            CREATE TABLE events (id int PRIMARY KEY, kind text);
            ALTER TABLE events REPLICA IDENTITY FULL;
            CREATE TABLE tags (name text, n int);
            ALTER TABLE tags REPLICA IDENTITY FULL;
            """)
    }

    // MARK: Positions of every sink

    func sinkLSN(_ sink: String) throws -> UInt64? {
        switch sink {
        case "replica":
            return try target.scalar("SELECT lsn::text FROM public.sluice_offsets WHERE sink = $1 AND topic = 'app'", [sink]).map(lsnValue)
        case "history", "tags":
            let db = try PGConnection(url: sink == "tags" ? tagsURL : historyURL)
            return try db.execute("SELECT lsn::text FROM public.sluice_offsets WHERE sink = $1 AND topic = 'app'", [sink]).string(0, 0).map(lsnValue)
        default:
            let path = ["local": sqlitePath, "history_lite": historyPath, "ignore_lite": ignorePath, "tags_lite": tagsPath][sink]!
            guard FileManager.default.fileExists(atPath: path) else { return nil }
            let db = try SQLiteDatabase(path: path)
            return try db.query("SELECT lsn FROM sluice_offsets WHERE sink = ? AND topic = 'app'", [sink]).first?[0].flatMap { $0 }.map(lsnValue)
        }
    }

    func waitForSinks(_ sinks: [String], lsn: UInt64, timeout: TimeInterval = 120) throws {
        try eventually(timeout: timeout, "sinks \(sinks) to reach \(lsnText(lsn))" + logTail) {
            try sinks.allSatisfy { try (sinkLSN($0) ?? 0) >= lsn }
        }
    }

    func sqlite(_ path: String, _ sql: String) throws -> [String] {
        try SQLiteDatabase(path: path, readOnly: true).query(sql).map(rowLine)
    }

    func sqliteHasTable(_ path: String, _ name: String) throws -> Bool {
        try SQLiteDatabase(path: path, readOnly: true).query("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", [name]).count == 1
    }

    func h(_ text: String) -> String { hash.hex(Array(text.utf8)) }

    // MARK: Tests

    func testEachTransformOnPostgresAndSQLiteTargets() throws {
        try createTables()
        try source.query("""
            INSERT INTO customers VALUES (1, 'a@x.org', '111', '555-1', 10.00), (2, 'b@x.org', '222', '555-2', 20.00);
            INSERT INTO orders VALUES (1, 'paid', 150.00, 'big'), (2, 'draft', 500.00, 'draft big'), (3, 'paid', 50.00, 'small');
            INSERT INTO audit_log VALUES (1, 'x');
            INSERT INTO events VALUES (1, 'signup');
            INSERT INTO tags VALUES ('a', 1), ('a', 1), ('b', 2);
            """)
        try writeTransformConfig()
        let daemon = try startDaemon()
        try waitForSlotActive()
        try commitMarked("""
            INSERT INTO customers VALUES (3, 'c@x.org', '333', '555-3', 30.00);
            UPDATE customers SET amount = 11.00 WHERE id = 1;
            DELETE FROM customers WHERE id = 2;
            """)
        try commitMarked("""
            UPDATE orders SET amount = 40.00 WHERE id = 1;       -- moves out of where: soft-deleted, keeps its last values
            UPDATE orders SET status = 'paid' WHERE id = 2;      -- moves in: inserted
            UPDATE orders SET amount = 60.00 WHERE id = 3;       -- stays out
            INSERT INTO orders VALUES (4, 'paid', 1000.00, 'x'), (5, 'draft', 1000.00, 'y');
            """)
        try commitMarked("""
            INSERT INTO events VALUES (2, 'login');
            UPDATE events SET kind = 'logout' WHERE id = 2;
            DELETE FROM events WHERE id = 1;
            DELETE FROM tags WHERE ctid = (SELECT min(ctid) FROM tags WHERE name = 'a');
            UPDATE tags SET n = 3 WHERE name = 'b';
            """)
        let last = try commitMarked("""
            INSERT INTO audit_log VALUES (2, 'y');
            DELETE FROM customers WHERE id = 3;
            INSERT INTO customers VALUES (2, 'b2@x.org', '2', '5', 21.00);  -- a re-insert clears the soft delete
            UPDATE customers SET id = 5 WHERE id = 1;  -- a key change: the old key marked deleted (kept), the new inserted
            """)
        try waitForSinks(["replica", "local", "history", "history_lite", "ignore_lite", "tags", "tags_lite"], lsn: last)
        XCTAssertEqual(daemon.terminate(), 0, logTail)

        // tables: the excluded glob's table is never created.
        XCTAssertNil(try target.scalar("SELECT to_regclass('public.audit_log')::text"))
        XCTAssertFalse(try sqliteHasTable(sqlitePath, "audit_log"))
        XCTAssertNil(try target.scalar("SELECT to_regclass('public.orders')::text"), "orders is renamed")

        // columns: ssn absent (not NULL), email hashed, phone redacted; deletes: soft; metadata.
        XCTAssertEqual(try postgresTargetColumns("public.customers"),
                       ["id", "email", "phone", "amount", "_sluice_op", "_sluice_xid", "_sluice_deleted", "_sluice_deleted_at"])
        XCTAssertEqual(try sqliteColumns("public.customers"),
                       ["id", "email", "phone", "amount", "_sluice_op", "_sluice_xid", "_sluice_deleted", "_sluice_deleted_at"])
        let customers = [
            rowLine(["1", h("a@x.org"), nil, "11.00", "delete", "t"]),
            rowLine(["2", h("b2@x.org"), nil, "21.00", "insert", "f"]),
            rowLine(["3", h("c@x.org"), nil, "30.00", "delete", "t"]),
            rowLine(["5", h("a@x.org"), nil, "11.00", "insert", "f"]),
        ]
        XCTAssertEqual(try target.query("""
            SELECT id, email, phone, amount, _sluice_op, _sluice_deleted FROM public.customers ORDER BY id
            """).map(rowLine), customers, logTail)
        XCTAssertEqual(try sqlite(sqlitePath, """
            SELECT id, email, phone, amount, _sluice_op, CASE _sluice_deleted WHEN 1 THEN 't' ELSE 'f' END FROM customers ORDER BY id
            """), customers, logTail)
        XCTAssertEqual(try target.scalar("SELECT count(*) FROM public.customers WHERE _sluice_xid IS NULL OR (_sluice_deleted_at IS NOT NULL) <> _sluice_deleted"), "0")
        XCTAssertEqual(try sqlite(sqlitePath, "SELECT count(*) FROM customers WHERE _sluice_xid IS NULL OR (_sluice_deleted_at IS NOT NULL) <> _sluice_deleted"), ["'0'"])

        // rename + where: rows moving out are (soft-)deleted, rows moving in are inserted; note keeps 3 characters.
        let orders = [
            rowLine(["1", "paid", "150.00", "big", "delete", "t"]),
            rowLine(["2", "paid", "500.00", "dra", "update", "f"]),  // note: keep 3 of "draft big"
            rowLine(["4", "paid", "1000.00", "x", "insert", "f"]),
        ]
        XCTAssertEqual(try target.query("""
            SELECT id, status, amount, note, _sluice_op, _sluice_deleted FROM analytics.orders ORDER BY id
            """).map(rowLine), orders, logTail)
        XCTAssertEqual(try sqlite(sqlitePath, """
            SELECT id, status, amount, note, _sluice_op, CASE _sluice_deleted WHEN 1 THEN 't' ELSE 'f' END FROM analytics_orders ORDER BY id
            """), orders, logTail)

        // mode: history: every change once, in commit order, the old row for the delete.
        let history = [
            rowLine(["read", "1", "signup"]), rowLine(["insert", "2", "login"]), rowLine(["update", "2", "logout"]),
            rowLine(["delete", "1", "signup"]),
        ]
        let historyDB = try PGConnection(url: historyURL)
        let pgHistory = try historyDB.execute("SELECT _sluice_op, id, kind FROM history.events ORDER BY _sluice_lsn")
        XCTAssertEqual((0..<pgHistory.rowCount).map { row in rowLine((0..<3).map { pgHistory.string(row, $0) }) }, history, logTail)
        XCTAssertEqual(try sqlite(historyPath, "SELECT _sluice_op, id, kind FROM events ORDER BY rowid"), history, logTail)
        XCTAssertEqual(try historyDB.execute("SELECT count(*) FROM history.events WHERE _sluice_xid IS NULL OR _sluice_commit_time IS NULL").string(0, 0), "0")
        XCTAssertFalse(try sqliteHasTable(historyPath, "customers"), "tables: limits the history sink to events")

        // metadata on a keyless table: the delete removed one copy, the update found its row.
        let tags = [rowLine(["a", "1", "read"]), rowLine(["b", "3", "update"])]
        let tagsDB = try PGConnection(url: tagsURL)
        let pgTags = try tagsDB.execute("SELECT name, n, _sluice_op FROM public.tags ORDER BY name")
        XCTAssertEqual((0..<pgTags.rowCount).map { row in rowLine((0..<3).map { pgTags.string(row, $0) }) }, tags, logTail)
        XCTAssertEqual(try sqlite(tagsPath, "SELECT name, n, _sluice_op FROM tags ORDER BY name"), tags, logTail)

        // deletes: ignore keeps deleted rows as they were.
        XCTAssertEqual(try sqlite(ignorePath, "SELECT id, email, ssn, amount FROM customers ORDER BY id"), [
            rowLine(["1", "a@x.org", "111", "11.00"]), rowLine(["2", "b2@x.org", "2", "21.00"]), rowLine(["3", "c@x.org", "333", "30.00"]),
            rowLine(["5", "a@x.org", "111", "11.00"]),
        ])
    }

    func testTransformMistakesExitTwoNamingTheKey() throws {
        try createTables()
        // A predicate that does not parse: refused at load, before any database is touched.
        try writeSourceConfig(tables: ["public.orders"], sinks: [
            "  - name: replica", "    type: postgres", "    url: \(target.url)", "    where: {public.orders: \"amount >> 1\"}",
        ])
        var result = try sluice(["run", "--config", configPath])
        XCTAssertEqual(result.status, 2, result.describe)
        XCTAssertTrue(result.err.contains("sinks[0] (replica).where.public.orders"), result.describe)
        XCTAssertTrue(result.err.contains("at character 9"), result.describe)
        XCTAssertEqual(try source.scalar("SELECT count(*) FROM pg_replication_slots"), "0", "nothing was created")
        XCTAssertNil(try target.scalar("SELECT to_regclass('public.sluice_offsets')::text"))

        // A table the source does not capture: refused at load.
        try writeSourceConfig(tables: ["public.orders"], sinks: [
            "  - name: replica", "    type: postgres", "    url: \(target.url)", "    rename: {public.nope: x.nope}",
        ])
        result = try sluice(["run", "--config", configPath])
        XCTAssertEqual(result.status, 2, result.describe)
        XCTAssertTrue(result.err.contains("rename.public.nope: names public.nope, which the sink's topics (app) do not capture"), result.describe)

        // A column that is not there: known from the source's schema, so check reports it and run exits 2 at start.
        try writeSourceConfig(tables: ["public.customers"], sinks: [
            "  - name: local", "    type: sqlite", "    path: \(sqlitePath)",
            "    columns: {public.customers: {exclude: [social_security]}}",
        ])
        let unknown = "columns.public.customers: unknown column social_security in public.customers (columns: id, email, ssn, phone, amount)"
        let check = try sluice(["check", "--config", configPath])
        XCTAssertEqual(check.status, 2, check.describe)
        XCTAssertTrue(check.out.contains(unknown), check.describe)
        result = try sluice(["run", "--config", configPath])
        XCTAssertEqual(result.status, 2, result.describe)
        XCTAssertTrue(result.err.contains("sinks[0] (local)." + unknown), result.describe)
        XCTAssertFalse(FileManager.default.fileExists(atPath: sqlitePath), "nothing was created at the target")

        // A schema change that breaks a transform mid-stream: the sink stops loudly (no retries), the rest goes on.
        try writeSourceConfig(tables: ["public.customers"], sinks: [
            "  - name: local", "    type: sqlite", "    path: \(sqlitePath)", "    where: {public.customers: \"amount > 0\"}",
        ])
        try source.query("INSERT INTO customers VALUES (1, 'a', 'b', 'c', 1)")
        let daemon = try startDaemon()
        try eventually(timeout: 60, "the first row to arrive" + logTail) { (try? sqliteCount("public.customers")) == 1 }
        try source.query("ALTER TABLE customers DROP COLUMN amount; INSERT INTO customers VALUES (2, 'a', 'b', 'c')")
        try eventually(timeout: 60, "the sink to stop on the dropped column" + logTail) {
            logTail.contains("where.public.customers") && logTail.contains("The sink stopped (the rest goes on)")
        }
        XCTAssertTrue(daemon.isRunning, "the source goes on" + logTail)
        XCTAssertEqual(try sqliteCount("public.customers"), 1, "nothing after the change is applied")
    }
}

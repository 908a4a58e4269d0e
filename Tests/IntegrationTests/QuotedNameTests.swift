import Foundation
import SluiceWire
import XCTest

/// `tables:` entries follow SQL's identifier rules: `schema.table` or `table` (schema public), each part
/// unquoted (folded to lower case) or double-quoted (`""` for a quote inside), so `"My Schema"."a.b"` is
/// table `a.b` in schema `My Schema`. Tables and columns with spaces, capitals, quotes, dots, reserved
/// words, emoji and 63-byte names go through check, snapshot, stream and backfill to both targets; the
/// PostgreSQL target keeps the names, the SQLite target names a table `T` for `public.T` and `schema_T`
/// otherwise. Entries that are not table names are refused with exit 2, naming the entry.
final class QuotedNameTests: SinkTestCase {
    override var fixtureName: String { "names" }

    /// One source table: its name, how the configuration lists it, its columns (with the SQL computing
    /// each preloaded value from `i`), its key, an int column equal to `i` and a text column to update.
    private struct Table {
        let schema: String
        let name: String
        /// The `tables:` entry as written in the YAML file.
        let entry: String
        let columns: [(name: String, type: String, value: String)]
        let key: [String]
        let id: String
        let text: String

        var qualified: String { PGConnection.quoteIdentifier(schema) + "." + PGConnection.quoteIdentifier(name) }
        var sqliteName: String { schema == "public" ? name : schema + "_" + name }
        var columnNames: [String] { columns.map(\.name) }
        var columnList: String { columnNames.map(PGConnection.quoteIdentifier).joined(separator: ", ") }
        func q(_ column: String) -> String { PGConnection.quoteIdentifier(column) }
    }

    /// A YAML single-quoted scalar (a single quote inside is doubled).
    private static func yaml(_ text: String) -> String { "'" + text.replacingOccurrences(of: "'", with: "''") + "'" }
    /// A `"schema"."table"` entry, each part quoted the SQL way.
    private static func quotedEntry(_ schema: String, _ table: String) -> String {
        yaml(PGConnection.quoteIdentifier(schema) + "." + PGConnection.quoteIdentifier(table))
    }

    private static func padded(_ prefix: String, toBytes bytes: Int) -> String {
        prefix + String(repeating: "x", count: bytes - prefix.utf8.count)
    }

    private static let longTable = padded("Long Name Ü ", toBytes: 63)
    private static let longColumn = padded("Column Ö ", toBytes: 63)

    private var tables: [Table] { Self.allTables }

    private static let allTables: [Table] = {
        let s = "My Schema"
        return [
            Table(schema: s, name: "Order Items", entry: quotedEntry(s, "Order Items"),
                  columns: [("order", "int", "i / 4"), ("Line No", "int", "i % 4"), ("Item ID", "int", "i"),
                            ("Descr", "text", "'item ' || i"), ("say \"hi\"", "text", #"'it''s "quoted" ' || i"#)],
                  key: ["order", "Line No"], id: "Item ID", text: "Descr"),
            Table(schema: s, name: "it's", entry: quotedEntry(s, "it's"),
                  columns: [("id", "int", "i"), ("it's col", "text", "'v' || i"), ("Select", "int", "i * 2")],
                  key: ["id"], id: "id", text: "it's col"),
            Table(schema: s, name: "a.b", entry: quotedEntry(s, "a.b"),
                  columns: [("a.b", "int", "i"), ("x y", "text", "'xy ' || i"), ("c", "int", "-i")],
                  key: ["a.b"], id: "a.b", text: "x y"),
            Table(schema: s, name: "select", entry: quotedEntry(s, "select"),
                  columns: [("from", "int", "i"), ("where", "text", "'w' || i"), ("group", "int", "i % 3")],
                  key: ["from"], id: "from", text: "where"),
            Table(schema: s, name: "📦 boxes", entry: quotedEntry(s, "📦 boxes"),
                  columns: [("📦", "int", "i"), ("größe", "text", "'groß ' || i"), ("Label", "text", "'L' || i")],
                  key: ["📦"], id: "📦", text: "Label"),
            Table(schema: s, name: longTable, entry: quotedEntry(s, longTable),
                  columns: [("id", "int", "i"), (longColumn, "text", "'long ' || i")],
                  key: ["id"], id: "id", text: longColumn),
            Table(schema: s, name: "q\"uote", entry: quotedEntry(s, "q\"uote"),
                  columns: [("q\"id", "int", "i"), ("v", "text", "'v' || i")],
                  key: ["q\"id"], id: "q\"id", text: "v"),
            // Bare quoted name: schema public, capitals kept.
            Table(schema: "public", name: "MixedCase", entry: yaml(PGConnection.quoteIdentifier("MixedCase")),
                  columns: [("Id", "int", "i"), ("Name", "text", "'n' || i"), ("order", "int", "i * 10")],
                  key: ["Id"], id: "Id", text: "Name"),
            // Unquoted: folded to lower case, as PostgreSQL does.
            Table(schema: "public", name: "lowercase_t", entry: "public.LOWERCASE_T",
                  columns: [("id", "int", "i"), ("Note", "text", "'note ' || i"), ("desc", "text", "NULL")],
                  key: ["id"], id: "id", text: "Note"),
        ]
    }()

    private func createTables(rows: Int) throws {
        XCTAssertEqual(Self.longTable.utf8.count, 63)
        XCTAssertEqual(Self.longColumn.utf8.count, 63)
        var sql = "CREATE SCHEMA \(PGConnection.quoteIdentifier("My Schema"));\n"
        for table in tables {
            let definitions = table.columns.map { table.q($0.name) + " " + $0.type }
                + ["PRIMARY KEY (" + table.key.map(table.q).joined(separator: ", ") + ")"]
            sql += "CREATE TABLE \(table.qualified) (\(definitions.joined(separator: ", ")));\n"
            sql += insertSQL(table, from: 1, to: rows) + ";\n"
        }
        try source.query(sql)
        // The names are what PostgreSQL stored (nothing folded or truncated).
        for table in tables {
            XCTAssertEqual(try source.scalar("SELECT relname::text FROM pg_class WHERE oid = to_regclass($1)", [table.qualified]), table.name)
        }
    }

    private func insertSQL(_ table: Table, from: Int, to: Int) -> String {
        "INSERT INTO \(table.qualified) (\(table.columnList)) SELECT \(table.columns.map(\.value).joined(separator: ", ")) "
            + "FROM generate_series(\(from), \(to)) i"
    }

    // MARK: Comparing

    private func sourceRows(_ cluster: PostgresCluster, _ table: Table) throws -> [String] {
        try cluster.query("SELECT \(table.columnList) FROM \(table.qualified)").map(rowLine).sorted()
    }

    private func sqliteRows(_ table: Table) throws -> [String] {
        let db = try SQLiteDatabase(path: sqlitePath)
        let list = table.columnNames.map(SQLiteDatabase.quoteIdentifier).joined(separator: ", ")
        return try db.query("SELECT \(list) FROM \(SQLiteDatabase.quoteIdentifier(table.sqliteName))").map(rowLine).sorted()
    }

    /// Both targets hold exactly the source's rows and columns of every table, and no other tables.
    private func assertTargetsEqualSource(file: StaticString = #filePath, line: UInt = #line) throws {
        let lite = try SQLiteDatabase(path: sqlitePath)
        for table in tables {
            let label = "\(table.qualified)"
            // The PostgreSQL target: same schema, name, columns and key.
            let columns = try target.query("""
                SELECT attname FROM pg_attribute WHERE attrelid = to_regclass($1) AND attnum > 0 AND NOT attisdropped ORDER BY attnum
                """, [table.qualified]).map { $0[0]! }
            XCTAssertEqual(Set(columns), Set(table.columnNames), "\(label): the PostgreSQL target's columns" + logTail, file: file, line: line)
            guard !columns.isEmpty else { continue }
            let key = try target.query("""
                SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
                WHERE i.indrelid = to_regclass($1) AND i.indisprimary
                """, [table.qualified]).map { $0[0]! }
            XCTAssertEqual(Set(key), Set(table.key), "\(label): the PostgreSQL target's primary key", file: file, line: line)
            let expected = try sourceRows(source, table)
            if let diff = rowsDifference(expected: expected, actual: try sourceRows(target, table)) {
                XCTFail("\(label): the PostgreSQL target differs from the source: \(diff)" + logTail, file: file, line: line)
            }
            // The SQLite target.
            let liteColumns = try lite.query("SELECT name FROM pragma_table_info(?)", [table.sqliteName]).map { $0[0]! }
            XCTAssertEqual(Set(liteColumns), Set(table.columnNames), "\(label): the SQLite target's columns of table \(table.sqliteName)" + logTail,
                           file: file, line: line)
            guard !liteColumns.isEmpty else { continue }
            if let diff = rowsDifference(expected: expected, actual: try sqliteRows(table)) {
                XCTFail("\(label): the SQLite target (table \(table.sqliteName)) differs from the source: \(diff)" + logTail, file: file, line: line)
            }
        }
        // No table under a folded, truncated or mangled name beside them.
        let pgTables = Set(try target.query("""
            SELECT n.nspname || ' / ' || c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
              AND n.nspname NOT LIKE 'pg\\_%' AND c.relname NOT LIKE 'sluice\\_%'
            """).map { $0[0]! })
        XCTAssertEqual(pgTables, Set(tables.map { $0.schema + " / " + $0.name }), "the PostgreSQL target's tables", file: file, line: line)
        let liteTables = Set(try lite.query("""
            SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' AND name NOT LIKE 'sluice\\_%' ESCAPE '\\'
            """).map { $0[0]! })
        XCTAssertEqual(liteTables, Set(tables.map(\.sqliteName)), "the SQLite target's tables", file: file, line: line)
    }

    // MARK: A. Awkward names end to end

    func testQuotedTableAndColumnNamesEndToEnd() throws {
        try createTables(rows: 30)
        try writeConfig(tables: tables.map(\.entry))

        let check = try sluice(["check", "--config", configPath], timeout: 60)
        let configText = try String(contentsOfFile: configPath, encoding: .utf8)
        XCTAssertEqual(check.status, 0, "sluice check before the first run:\n" + configText + check.describe)

        let daemon = try startDaemon()
        try waitForSlotActive()
        let db = try source.connect()

        // The snapshot.
        var end = try commitMarked("UPDATE \(tables[0].qualified) SET \(tables[0].q(tables[0].text)) = 'after snapshot' WHERE \(tables[0].q(tables[0].id)) = 1", on: db)
        try waitForTargets(lsn: end)
        try assertTargetsEqualSource()

        // With the publication in place, check finds every configured table in it.
        let checkAgain = try sluice(["check", "--config", configPath], timeout: 60)
        XCTAssertEqual(checkAgain.status, 0, "sluice check with the daemon running: " + checkAgain.describe)

        // Inserts into every table in one transaction.
        try db.execute("BEGIN; " + tables.map { insertSQL($0, from: 31, to: 40) }.joined(separator: "; ") + "; COMMIT")
        // Updates, a NULL, a key change, deletes: a transaction per table and kind.
        for table in tables {
            let id = table.q(table.id), text = table.q(table.text), key = table.q(table.key[0])
            try db.execute("UPDATE \(table.qualified) SET \(text) = \(text) || ' (updated)' WHERE \(id) % 3 = 0")
            try db.execute("UPDATE \(table.qualified) SET \(text) = NULL WHERE \(id) = 2")
            try db.execute("UPDATE \(table.qualified) SET \(key) = \(key) + 1000 WHERE \(id) = 5")
        }
        for table in tables {
            try db.execute("DELETE FROM \(table.qualified) WHERE \(table.q(table.id)) % 7 = 0")
        }
        // Every table touched in one transaction.
        try db.execute("BEGIN; " + tables.map { table in
            "UPDATE \(table.qualified) SET \(table.q(table.text)) = 'together' WHERE \(table.q(table.id)) IN (11, 12)"
        }.joined(separator: "; ") + "; COMMIT")
        try db.execute(#"UPDATE public.lowercase_t SET "desc" = 'described' WHERE id < 10"#)
        end = try commitMarked("UPDATE \(tables[1].qualified) SET \(tables[1].q(tables[1].text)) = 'last' WHERE id = 1", on: db)
        try waitForTargets(lsn: end)
        try assertTargetsEqualSource()

        // Backfill one quoted table with the daemon running: damage it in both targets first, so only
        // the copy makes them exact again.
        let ab = try XCTUnwrap(tables.first { $0.name == "a.b" })
        try target.query("DELETE FROM \(ab.qualified) WHERE \(ab.q("a.b")) % 4 = 1; UPDATE \(ab.qualified) SET \(ab.q("x y")) = 'damaged' WHERE \(ab.q("a.b")) % 4 = 2")
        let lite = try SQLiteDatabase(path: sqlitePath)
        let liteName = SQLiteDatabase.quoteIdentifier(ab.sqliteName), liteKey = SQLiteDatabase.quoteIdentifier("a.b")
        try lite.execute("DELETE FROM \(liteName) WHERE \(liteKey) % 4 = 1; UPDATE \(liteName) SET \(SQLiteDatabase.quoteIdentifier("x y")) = 'damaged' WHERE \(liteKey) % 4 = 2")
        let backfill = try sluice(["backfill", "--config", configPath, "--table", #""My Schema"."a.b""#], timeout: 240)
        XCTAssertEqual(backfill.status, 0, #"sluice backfill --table '"My Schema"."a.b"': "# + backfill.describe + logTail)
        XCTAssertTrue(daemon.isRunning, "the daemon keeps running through the backfill" + logTail)
        let copied = backfill.err.range(of: #"backfill: copied (\d+) rows"#, options: .regularExpression)
            .flatMap { Int(backfill.err[$0].split(separator: " ")[2]) }
        XCTAssertEqual(copied, Int(try source.scalar("SELECT count(*) FROM \(ab.qualified)") ?? ""), "backfill copies a.b's rows: " + backfill.describe)
        try assertTargetsEqualSource()

        // The stream goes on.
        end = try commitMarked(insertSQL(ab, from: 100, to: 105) + "; " + insertSQL(tables[4], from: 100, to: 105), on: db)
        try waitForTargets(lsn: end)
        try assertTargetsEqualSource()
        XCTAssertEqual(daemon.terminate(), 0, "clean exit on SIGTERM" + logTail)
    }

    // MARK: B. Entries that are not table names

    /// `sluice <command>` on a config whose tables: is `entries`; the result, checked for exit 2.
    private func refused(_ command: String, entries: [String], naming needles: [String],
                         file: StaticString = #filePath, line: UInt = #line) throws {
        try writeConfig(tables: entries)
        let result = try sluice([command, "--config", configPath], timeout: 60)
        let context = "sluice \(command) with tables: [\(entries.joined(separator: ", "))]: " + result.describe
        XCTAssertFalse(result.timedOut, context, file: file, line: line)
        XCTAssertEqual(result.status, 2, context, file: file, line: line)
        for needle in needles {
            XCTAssertTrue(result.all.contains(needle), "the output must contain \(needle): " + context, file: file, line: line)
        }
    }

    func testBadTableEntriesAreRefusedNamingTheEntry() throws {
        try source.query("CREATE TABLE t (id int PRIMARY KEY)")
        // An unterminated quote: a syntax error in the file, found before any database is touched.
        for command in ["check", "run"] {
            try refused(command, entries: [#"'"unterminated'"#, "public.t"], naming: ["tables", #""unterminated"#])
        }
        // Three parts.
        for command in ["check", "run"] {
            try refused(command, entries: ["a.b.c"], naming: ["tables", "a.b.c"])
        }
        // Quoted parts are not split on their dots, but a third part still is one too many.
        try refused("run", entries: [#"'"x.y".z.w'"#], naming: ["tables", #""x.y".z.w"#])
        // Well-formed, but no such table.
        try refused("run", entries: ["public.nosuch", "public.t"], naming: ["nosuch"])
        // Quoted, a name keeps its case: "T" is not table t.
        try refused("run", entries: [#"'"T"'"#], naming: [])
        XCTAssertEqual(try source.scalar("SELECT count(*) FROM pg_replication_slots"), "0", "nothing created on the source")
        XCTAssertEqual(try source.scalar("SELECT count(*) FROM pg_publication"), "0", "nothing created on the source")

        // Unquoted, it folds to lower case: T is table public.t.
        try writeConfig(tables: ["T"])
        let check = try sluice(["check", "--config", configPath], timeout: 60)
        XCTAssertEqual(check.status, 0, "tables: [T] names table public.t: " + check.describe)
    }
}

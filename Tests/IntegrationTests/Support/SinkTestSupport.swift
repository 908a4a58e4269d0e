import Foundation
import SluiceWire
import XCTest

/// Base for end-to-end sink tests: `DaemonTestCase`'s source cluster and scratch directory, plus a
/// PostgreSQL target cluster and an SQLite file; `writeConfig` streams the source's topic `app` into
/// both (sinks `replica` and `local`).
class SinkTestCase: DaemonTestCase {
    var target: PostgresCluster!

    override var fixtureName: String { "sink" }
    var sqlitePath: String { directory + "/replica.db" }

    override func setUpWithError() throws {
        try super.setUpWithError()
        target = try PostgresCluster(name: fixtureName + "-dst")
    }

    override func tearDown() {
        super.tearDown()
        target?.destroy()
    }

    /// Writes the config: source `app` (see `writeSourceConfig`) into sinks `replica` (the PostgreSQL
    /// target) and `local` (the SQLite file).
    @discardableResult
    func writeConfig(tables: [String]?, sourceExtra: [String] = [], topExtra: [String] = []) throws -> String {
        try writeSourceConfig(tables: tables, sourceExtra: sourceExtra, topExtra: topExtra, sinks: [
            "  - name: replica",
            "    type: postgres",
            "    url: \(target.url)",
            "    topics: [app]",
            "  - name: local",
            "    type: sqlite",
            "    path: \(sqlitePath)",
            "    topics: [app]",
        ])
    }

    /// Runs `statements` in one transaction on `connection` (a new one to the source by default) and
    /// returns an LSN the transaction's commit record is at or after (read just before COMMIT): once a
    /// target's stored LSN reaches it, the target has applied this transaction and everything
    /// committed before it.
    @discardableResult
    func commitMarked(_ statements: String, on connection: PGConnection? = nil) throws -> UInt64 {
        let connection = try connection ?? source.connect()
        try connection.execute("BEGIN")
        try connection.execute(statements)
        let lsn = try XCTUnwrap(connection.execute("SELECT pg_current_wal_insert_lsn()::text").string(0, 0))
        try connection.execute("COMMIT")
        return lsnValue(lsn)
    }

    /// The LSN stored in the PostgreSQL target's `sluice_offsets` for sink `replica`, if any.
    func postgresTargetLSN() throws -> UInt64? {
        try target.scalar("SELECT lsn::text FROM public.sluice_offsets WHERE sink = 'replica' AND topic = 'app'").map(lsnValue)
    }

    /// The LSN stored in the SQLite target's `sluice_offsets` for sink `local`, if any.
    func sqliteTargetLSN() throws -> UInt64? {
        guard FileManager.default.fileExists(atPath: sqlitePath) else { return nil }
        let db = try SQLiteDatabase(path: sqlitePath)
        let rows = try db.query("SELECT lsn FROM sluice_offsets WHERE sink = 'local' AND topic = 'app'")
        guard let first = rows.first, let text = first[0] else { return nil }
        return lsnValue(text)
    }

    /// Waits until both targets have applied everything up to `lsn`.
    func waitForTargets(lsn: UInt64, timeout: TimeInterval = 120, file: StaticString = #filePath, line: UInt = #line) throws {
        try eventually(timeout: timeout, "both targets to reach LSN \(lsnText(lsn)) (postgres: \((try? postgresTargetLSN())?.map(lsnText) ?? "none"), "
                       + "sqlite: \((try? sqliteTargetLSN())?.map(lsnText) ?? "none"))" + logTail, file: file, line: line) {
            guard let pg = try postgresTargetLSN(), pg >= lsn else { return false }
            guard let lite = try sqliteTargetLSN(), lite >= lsn else { return false }
            return true
        }
    }

    // MARK: Contents

    /// The number of rows of the SQLite target's `table`.
    func sqliteCount(_ table: String) throws -> Int {
        let db = try SQLiteDatabase(path: sqlitePath, readOnly: true)
        return Int(try db.query("SELECT count(*) FROM \(SQLiteDatabase.quoteIdentifier(sqliteName(table)))").first?[0] ?? "0") ?? 0
    }

    /// The source table's columns in order, with their `format_type`.
    func sourceColumns(_ table: String) throws -> [(name: String, type: String)] {
        try source.query("""
            SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute
            WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum
            """, [table]).map { ($0[0]!, $0[1]!) }
    }

    func postgresTargetColumns(_ table: String) throws -> [String] {
        try postgresTargetColumnTypes(table).map(\.name)
    }

    func postgresTargetColumnTypes(_ table: String) throws -> [(name: String, type: String)] {
        try target.query("""
            SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute
            WHERE attrelid = to_regclass($1) AND attnum > 0 AND NOT attisdropped ORDER BY attnum
            """, [table]).map { ($0[0]!, $0[1]!) }
    }

    func sqliteColumns(_ table: String) throws -> [String] {
        let db = try SQLiteDatabase(path: sqlitePath)
        return try db.query("SELECT name FROM pragma_table_info(?) ORDER BY cid", [sqliteName(table)]).map { $0[0]! }
    }

    /// `T` for `public.T`, `schema_T` otherwise.
    func sqliteName(_ table: String) -> String {
        let parts = table.split(separator: ".", maxSplits: 1).map(String.init)
        guard parts.count == 2 else { return table }
        return parts[0] == "public" ? parts[1] : parts[0] + "_" + parts[1]
    }

    /// Every row of a PostgreSQL table as one line of its columns' text forms, sorted (a multiset).
    func postgresRows(_ cluster: PostgresCluster, _ table: String, columns: [String]) throws -> [String] {
        let list = columns.map(PGConnection.quoteIdentifier).joined(separator: ", ")
        return try cluster.query("SELECT \(list) FROM \(table)").map(rowLine).sorted()
    }

    /// The source rows as the SQLite sink must store them, for tables of integers, numerics, text
    /// and text-like types (bool as 0/1, bytea as upper-case hex); sorted.
    func expectedSQLiteRows(_ table: String, columns: [(name: String, type: String)]) throws -> [String] {
        let list = columns.map { column -> String in
            let quoted = PGConnection.quoteIdentifier(column.name)
            switch column.type {
            case "boolean": return "(\(quoted))::int"
            case "bytea": return "upper(encode(\(quoted), 'hex'))"
            default: return quoted
            }
        }.joined(separator: ", ")
        return try source.query("SELECT \(list) FROM \(table)").map { rowLine(normalizingFloats($0, columns)) }.sorted()
    }

    /// Every row of the SQLite table (same columns, blobs as hex), sorted.
    func sqliteRows(_ table: String, columns: [(name: String, type: String)]) throws -> [String] {
        let db = try SQLiteDatabase(path: sqlitePath)
        let list = columns.map { column -> String in
            let quoted = SQLiteDatabase.quoteIdentifier(column.name)
            switch column.type {
            case "bytea": return "CASE WHEN \(quoted) IS NULL THEN NULL ELSE hex(\(quoted)) END"
            case "real", "double precision": return "CASE WHEN \(quoted) IS NULL THEN NULL ELSE printf('%!.17g', \(quoted)) END"
            default: return quoted
            }
        }.joined(separator: ", ")
        return try db.query("SELECT \(list) FROM \(SQLiteDatabase.quoteIdentifier(sqliteName(table)))")
            .map { rowLine(normalizingFloats($0, columns)) }.sorted()
    }

    /// Floats in one spelling for both sides (PostgreSQL prints `Infinity`, SQLite `Inf`; SQLite keeps
    /// no negative zero): the shortest text that round-trips the double.
    func normalizingFloats(_ row: [String?], _ columns: [(name: String, type: String)]) -> [String?] {
        zip(row, columns).map { value, column in
            guard column.type == "real" || column.type == "double precision", let value, let number = Double(value) else { return value }
            return number == 0 ? "0.0" : "\(number)"
        }
    }

    /// Asserts both targets hold exactly the source's rows of `table` (as multisets) and its column set.
    func assertTargetsEqualSource(_ table: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let columns = try sourceColumns(table)
        let names = columns.map(\.name)
        let targetTypes = try postgresTargetColumnTypes(table)
        XCTAssertEqual(Set(targetTypes.map(\.name)), Set(names),
                       "\(table): the PostgreSQL target's columns" + logTail, file: file, line: line)
        // The PostgreSQL target keeps the source's types (built-in ones; an enum may become text).
        let builtIn = Set(try source.query("SELECT format_type(oid, NULL) FROM pg_type WHERE oid < 16384").compactMap { $0[0] })
        let wantedTypes = Dictionary(columns.map { ($0.name, $0.type) }, uniquingKeysWith: { a, _ in a })
        for column in targetTypes {
            guard let wanted = wantedTypes[column.name],
                  builtIn.contains(wanted.replacingOccurrences(of: #"\(.*\)"#, with: "", options: .regularExpression)) else { continue }
            XCTAssertEqual(column.type, wanted, "\(table).\(column.name): the PostgreSQL target's column type", file: file, line: line)
        }
        XCTAssertEqual(Set(try sqliteColumns(table)), Set(names),
                       "\(table): the SQLite target's columns" + logTail, file: file, line: line)
        let expected = try postgresRows(source, table, columns: names)
        let replica = try postgresRows(target, table, columns: names)
        if let diff = rowsDifference(expected: expected, actual: replica) {
            XCTFail("\(table): the PostgreSQL target differs from the source: \(diff)" + logTail, file: file, line: line)
        }
        let expectedLite = try expectedSQLiteRows(table, columns: columns)
        let lite = try sqliteRows(table, columns: columns)
        if let diff = rowsDifference(expected: expectedLite, actual: lite) {
            XCTFail("\(table): the SQLite target differs from the source: \(diff)" + logTail, file: file, line: line)
        }
    }
}

/// Every row of an SQLite table as one line of its columns, sorted (a multiset).
func sqliteRows(path: String, table: String, columns: [String]) throws -> [String] {
    let db = try SQLiteDatabase(path: path, readOnly: true)
    let list = columns.map(SQLiteDatabase.quoteIdentifier).joined(separator: ", ")
    return try db.query("SELECT \(list) FROM \(SQLiteDatabase.quoteIdentifier(table))").map(rowLine).sorted()
}

/// One row as a line: cells separated by ` | `, NULL as `NULL` (strings quoted to tell them apart).
func rowLine(_ row: [String?]) -> String {
    row.map { $0.map { "'" + $0 + "'" } ?? "NULL" }.joined(separator: " | ")
}

/// nil when the sorted lists are equal; otherwise what is missing and what is extra (with counts).
func rowsDifference(expected: [String], actual: [String], examples: Int = 8) -> String? {
    guard expected != actual else { return nil }
    var counts: [String: Int] = [:]
    for row in expected { counts[row, default: 0] += 1 }
    for row in actual { counts[row, default: 0] -= 1 }
    let missing = counts.filter { $0.value > 0 }.sorted { $0.key < $1.key }
    let extra = counts.filter { $0.value < 0 }.sorted { $0.key < $1.key }
    func show(_ rows: [(key: String, value: Int)]) -> String {
        rows.prefix(examples).map { "\n    \(abs($0.value))× \($0.key.prefix(300))" }.joined()
    }
    return "expected \(expected.count) rows, got \(actual.count); "
        + "\(missing.reduce(0) { $0 + $1.value }) missing:\(show(missing))\n  "
        + "\(extra.reduce(0) { $0 - $1.value }) extra (or duplicated):\(show(extra))"
}

/// Shared state between a test and its worker threads.
final class SinkTestFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var value = false
    func set() { lock.lock(); value = true; lock.unlock() }
    var isSet: Bool { lock.lock(); defer { lock.unlock() }; return value }
}

/// Counters and messages collected by worker threads.
final class SinkTestStats: @unchecked Sendable {
    private let lock = NSLock()
    private var counts: [String: Int] = [:]
    private var messages: [String] = []

    func count(_ key: String, _ amount: Int = 1) { lock.lock(); counts[key, default: 0] += amount; lock.unlock() }
    func note(_ message: String) {
        lock.lock()
        if messages.count < 50 { messages.append(message) }
        lock.unlock()
    }
    subscript(_ key: String) -> Int { lock.lock(); defer { lock.unlock() }; return counts[key] ?? 0 }
    var notes: [String] { lock.lock(); defer { lock.unlock() }; return messages }
    var summary: String { lock.lock(); defer { lock.unlock() }; return "\(counts.sorted { $0.key < $1.key })" }
}

/// Runs `body` on a new thread; `join()` waits for it (and may be called more than once). A body that
/// loops until `stop` is set ends with `stop()` (share one flag between workers to stop them together).
final class SinkTestWorker: @unchecked Sendable {
    private let done = DispatchGroup()
    private let flag: SinkTestFlag

    init(_ name: String, stop: SinkTestFlag = SinkTestFlag(), _ body: @escaping @Sendable () -> Void) {
        flag = stop
        done.enter()
        let thread = Thread { [done] in
            body()
            done.leave()
        }
        thread.name = name
        thread.start()
    }

    func join() { done.wait() }

    /// Sets the stop flag and waits for the body to return.
    func stop() {
        flag.set()
        join()
    }
}

/// One transaction of a writer workload: `body` between BEGIN and COMMIT, except every 13th `sequence`,
/// which is rolled back (so targets must never show it). Counts "committed", "rolled back" or "failed"
/// in `stats`, noting a failure's error after `label`.
func runWorkloadTransaction(on db: PGConnection, sequence: Int, stats: SinkTestStats, label: String,
                            _ body: () throws -> Void) {
    do {
        try db.execute("BEGIN")
        try body()
        if sequence % 13 == 0 {
            try db.execute("ROLLBACK")
            stats.count("rolled back")
        } else {
            try db.execute("COMMIT")
            stats.count("committed")
        }
    } catch {
        _ = try? db.execute("ROLLBACK")
        stats.count("failed")
        stats.note(label + "\(error)")
    }
}

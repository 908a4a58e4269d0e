import Foundation
import SluiceWire
import XCTest

/// Base for end-to-end sink tests: a source cluster, a target cluster, a scratch directory, and a
/// config that streams the source's topic `app` into the PostgreSQL target (sink `replica`) and an
/// SQLite file (sink `local`).
class SinkTestCase: XCTestCase {
    var source: PostgresCluster!
    var target: PostgresCluster!
    var directory: String!
    var daemons: [SluiceProcess] = []

    var sqlitePath: String { directory + "/replica.db" }
    var configPath: String { directory + "/sluice.yml" }
    var logPath: String { directory + "/daemon.log" }

    /// A short name for clusters and directories.
    var fixtureName: String { "sink" }

    override func setUpWithError() throws {
        directory = scratchDirectory(fixtureName)
        source = try PostgresCluster(name: fixtureName + "-src")
        target = try PostgresCluster(name: fixtureName + "-dst")
    }

    override func tearDown() {
        for daemon in daemons where daemon.isRunning { daemon.kill() }
        daemons.removeAll()
        source?.destroy()
        target?.destroy()
        if let directory { try? FileManager.default.removeItem(atPath: directory) }
    }

    /// Writes the config; `tables: nil` leaves the key out (publication FOR ALL TABLES).
    @discardableResult
    func writeConfig(tables: [String]?, sourceExtra: [String] = []) throws -> String {
        var lines = [
            "data_dir: \(directory!)/data",
            "sources:",
            "  - name: app",
            "    type: postgres",
            "    url: \(source.url)",
        ]
        if let tables { lines.append("    tables: [\(tables.joined(separator: ", "))]") }
        lines += sourceExtra.map { "    " + $0 }
        lines += [
            "sinks:",
            "  - name: replica",
            "    type: postgres",
            "    url: \(target.url)",
            "    topics: [app]",
            "  - name: local",
            "    type: sqlite",
            "    path: \(sqlitePath)",
            "    topics: [app]",
        ]
        try (lines.joined(separator: "\n") + "\n").write(toFile: configPath, atomically: true, encoding: .utf8)
        return configPath
    }

    /// Starts `sluice run` on the config, its output appended to `daemon.log`.
    func startDaemon() throws -> SluiceProcess {
        let daemon = try SluiceProcess(["run", "--config", configPath], logPath: logPath)
        daemons.append(daemon)
        return daemon
    }

    /// The end of the daemon's log, for failure messages.
    var logTail: String {
        let text = (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "(no daemon.log)"
        let limit = 30_000
        return "\n--- daemon.log (last \(min(limit, text.count)) of \(text.count) chars) ---\n"
            + String(text.suffix(limit)) + "\n--- end of daemon.log ---"
    }

    /// Waits until the daemon streams: its replication slot is active.
    func waitForSlotActive(timeout: TimeInterval = 60, file: StaticString = #filePath, line: UInt = #line) throws {
        try eventually(timeout: timeout, "the replication slot to be active" + logTail, file: file, line: line) {
            try source.scalar("SELECT bool_or(active)::text FROM pg_replication_slots") == "true"
        }
    }

    /// Runs `statements` in one transaction on `connection` and returns an LSN the transaction's commit
    /// record is at or after (read just before COMMIT): once a target's stored LSN reaches it, the
    /// target has applied this transaction and everything committed before it.
    @discardableResult
    func commitMarked(_ statements: String, on connection: PGConnection) throws -> UInt64 {
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
        let wanted = String(format: "%X/%X", lsn >> 32, lsn & 0xFFFF_FFFF)
        try eventually(timeout: timeout, "both targets to reach LSN \(wanted) (postgres: \(describe(try? postgresTargetLSN())), "
                       + "sqlite: \(describe(try? sqliteTargetLSN())))" + logTail, file: file, line: line) {
            guard let pg = try postgresTargetLSN(), pg >= lsn else { return false }
            guard let lite = try sqliteTargetLSN(), lite >= lsn else { return false }
            return true
        }
    }

    private func describe(_ lsn: UInt64??) -> String {
        guard let lsn = lsn ?? nil else { return "none" }
        return String(format: "%X/%X", lsn >> 32, lsn & 0xFFFF_FFFF)
    }

    // MARK: Contents

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
        return try cluster.query("SELECT \(list) FROM \(table)").map(sinkTestRowLine).sorted()
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
        return try source.query("SELECT \(list) FROM \(table)").map { sinkTestRowLine(normalizingFloats($0, columns)) }.sorted()
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
            .map { sinkTestRowLine(normalizingFloats($0, columns)) }.sorted()
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
        if let diff = sinkTestDifference(expected: expected, actual: replica) {
            XCTFail("\(table): the PostgreSQL target differs from the source: \(diff)" + logTail, file: file, line: line)
        }
        let expectedLite = try expectedSQLiteRows(table, columns: columns)
        let lite = try sqliteRows(table, columns: columns)
        if let diff = sinkTestDifference(expected: expectedLite, actual: lite) {
            XCTFail("\(table): the SQLite target differs from the source: \(diff)" + logTail, file: file, line: line)
        }
    }
}

/// One row as a line: cells separated by ` | `, NULL as `NULL` (strings quoted to tell them apart).
func sinkTestRowLine(_ row: [String?]) -> String {
    row.map { $0.map { "'" + $0 + "'" } ?? "NULL" }.joined(separator: " | ")
}

/// nil when the sorted lists are equal; otherwise what is missing and what is extra (with counts).
func sinkTestDifference(expected: [String], actual: [String], examples: Int = 8) -> String? {
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

/// Runs `body` on a new thread; `join()` waits for it (and may be called more than once).
final class SinkTestWorker: @unchecked Sendable {
    private let done = DispatchGroup()
    init(_ name: String, _ body: @escaping @Sendable () -> Void) {
        done.enter()
        let thread = Thread { [done] in
            body()
            done.leave()
        }
        thread.name = name
        thread.start()
    }
    func join() { done.wait() }
}

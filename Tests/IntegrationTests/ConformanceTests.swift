import ExecConnectors
import FileSink
import Foundation
import PostgresSink
import SluiceConformance
import SluiceKit
import SluiceWire
import SQLiteSink
import XCTest

/// Runs `SluiceConformance` against every built-in sink that can read its target back: PostgreSQL
/// (a throwaway cluster), SQLite, the file sink and the exec sink with examples/exec-sink/jsonl_sink.py
/// (both rebuilt from their JSON lines). The HTTP sink keeps nothing it could read back (a receiver
/// does); HTTPSinkTests covers it against a real receiver. The first two tests check the check itself:
/// a correct in-memory sink passes, and each deliberately broken one is caught.
final class ConformanceTests: XCTestCase {
    var directory: String!

    override func setUp() {
        directory = scratchDirectory("conformance")
    }

    override func tearDown() {
        if let directory { try? FileManager.default.removeItem(atPath: directory) }
    }

    // MARK: The check itself

    func testReferenceSinkConforms() throws {
        let target = ConformanceMemoryTarget()
        let check = SinkConformance(name: "memory", makeSink: { ConformanceMemorySink(target: target) },
                                    readRows: target.rows)
        assertConforms(try check.run(), "in-memory reference sink")
    }

    func testCheckCatchesBrokenSinks() throws {
        let expectations: [(ConformanceMemorySink.Fault, SinkConformance.Failure.Check)] = [
            (.positionsBeforeCommitBatch, .replay),
            (.writesBeforeCommitBatch, .replay),
            (.forgetsPositions, .positions),
            (.keylessUpdateChangesEveryEqualRow, .replay),
            (.unchangedBecomesNull, .batching),
            (.keyChangeKeepsOldRow, .batching),
            (.ignoresTruncate, .replay),
            (.failsOnEmptyTransaction, .sinkError),
        ]
        for (fault, check) in expectations {
            let target = ConformanceMemoryTarget()
            let failures = try SinkConformance(name: "broken", makeSink: { ConformanceMemorySink(target: target, fault: fault) },
                                               readRows: target.rows).run()
            XCTAssertTrue(failures.contains { $0.check == check },
                          "\(fault): expected a '\(check.rawValue)' failure, got:\n" + failures.map(\.description).joined(separator: "\n"))
        }
    }

    // MARK: Built-in sinks

    func testSQLiteSinkConforms() throws {
        let path = directory + "/target.db"
        let config = conformanceConfig(type: "sqlite", ["path": .scalar(path, line: 1)])
        let check = SinkConformance(name: "lite", makeSink: { try SQLiteSink(config: config()) }, readRows: { table in
            guard FileManager.default.fileExists(atPath: path) else { return [] }
            let database = try SQLiteDatabase(path: path, readOnly: true)
            let name = table.schema == "public" ? table.table : "\(table.schema)_\(table.table)"
            guard try !database.query("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", [name]).isEmpty else { return [] }
            let list = table.columns.map { SQLiteDatabase.quoteIdentifier($0.name) }.joined(separator: ", ")
            return try database.query("SELECT \(list) FROM \(SQLiteDatabase.quoteIdentifier(name))").map { values in
                // Booleans are stored as 0/1: back to PostgreSQL's t/f.
                conformanceRow(table, values.enumerated().map { index, value in
                    table.columns[index].typeClass == .boolean ? value.map { $0 == "1" ? "t" : "f" } : value
                })
            }
        })
        assertConforms(try check.run(), "SQLite sink")
    }

    func testPostgresSinkConforms() throws {
        let cluster = try PostgresCluster(name: "conformance")
        defer { cluster.destroy() }
        let config = conformanceConfig(type: "postgres", ["url": .scalar(cluster.url, line: 1)])
        let check = SinkConformance(name: "replica", makeSink: { try PostgresSink(config: config()) }, readRows: { table in
            let qualified = PGConnection.quoteIdentifier(table.schema) + "." + PGConnection.quoteIdentifier(table.table)
            guard try cluster.scalar("SELECT to_regclass($1)::text", [qualified]) != nil else { return [] }
            // Results come in text form already (a ::text cast would print booleans as true/false).
            let list = table.columns.map { PGConnection.quoteIdentifier($0.name) }.joined(separator: ", ")
            return try cluster.query("SELECT \(list) FROM \(qualified)").map { conformanceRow(table, $0) }
        })
        assertConforms(try check.run(), "PostgreSQL sink")
    }

    func testFileSinkConforms() throws {
        // Once with the default file size, once rotating to a new file after almost every batch.
        for (label, size) in [("default files", nil), ("1KB files", "1KB")] as [(String, String?)] {
            let path = directory + "/files-\(size ?? "default")"
            var entries: [String: ConfigValue] = ["path": .scalar(path, line: 1)]
            if let size { entries["max_file_bytes"] = .scalar(size, line: 2) }
            let config = conformanceConfig(type: "file", entries)
            let check = SinkConformance(name: "files", makeSink: { try FileSink(config: config()) }, readRows: { table in
                // `<topic>.<8-digit sequence>.jsonl`: name order is each topic's file order.
                let names = ((try? FileManager.default.contentsOfDirectory(atPath: path)) ?? [])
                    .filter { $0.hasSuffix(".jsonl") }.sorted()
                let lines = try names.flatMap { try String(contentsOfFile: path + "/" + $0, encoding: .utf8).split(separator: "\n") }
                return try JSONLinesReplay.rows(of: table, lines: lines)
            })
            assertConforms(try check.run(), "file sink (\(label))")
        }
    }

    func testExecSinkWithPythonExampleConforms() throws {
        let output = directory + "/transactions.jsonl"
        let config = conformanceConfig(type: "exec", [
            "command": .list([.scalar("python3", line: 1), .scalar(repositoryRoot + "/examples/exec-sink/jsonl_sink.py", line: 1)], line: 1),
            "config": .map([(key: "path", value: .scalar(output, line: 2))], line: 2),
            "ack_timeout": .scalar("20s", line: 3),
        ])
        let check = SinkConformance(name: "py", makeSink: { try ExecSink(config: config()) }, readRows: { table in
            guard FileManager.default.fileExists(atPath: output) else { return [] }
            return try JSONLinesReplay.rows(of: table, lines: String(contentsOfFile: output, encoding: .utf8).split(separator: "\n"))
        })
        assertConforms(try check.run(), "exec sink with examples/exec-sink/jsonl_sink.py")
    }

    // MARK: Helpers

    /// A sink's configuration section as the loader builds it; a new object per call, as each
    /// process start builds its own.
    private func conformanceConfig(type: String, _ entries: [String: ConfigValue]) -> () -> ConnectorConfig {
        let directory = self.directory!
        let all = [(key: "name", value: ConfigValue.scalar("conformance", line: 1)), (key: "type", value: .scalar(type, line: 1))]
            + entries.sorted { $0.key < $1.key }.map { (key: $0.key, value: $0.value) }
        return {
            ConnectorConfig(file: directory + "/sluice.yml", path: "sinks[0] (conformance)", name: "conformance", type: type,
                            entries: all, line: 1, dataDirectory: directory + "/data", baseDirectory: directory)
        }
    }

    private func assertConforms(_ failures: [SinkConformance.Failure], _ what: String,
                                file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertTrue(failures.isEmpty, "\(what) fails the conformance check:\n"
                      + failures.map(\.description).joined(separator: "\n"), file: file, line: line)
    }
}

/// Values in the columns' order as a conformance row.
private func conformanceRow(_ table: RelationSchema, _ values: [String?]) -> [String: String?] {
    var row: [String: String?] = [:]
    for (index, column) in table.columns.enumerated() { row.updateValue(index < values.count ? values[index] : nil, forKey: column.name) }
    return row
}

// MARK: - A reference sink

/// An in-memory target: tables of text rows and positions, replaced together at each commit.
final class ConformanceMemoryTarget: @unchecked Sendable {
    var tables: [String: [[String?]]] = [:]
    var positions: [String: SinkPosition] = [:]

    func rows(_ table: RelationSchema) -> [[String: String?]] {
        (tables[table.qualifiedName] ?? []).map { conformanceRow(table, $0) }
    }
}

/// A correct sink over ``ConformanceMemoryTarget`` (a batch works on a copy that `commitBatch` swaps
/// in with the positions), or one with a deliberate fault the conformance check must catch.
final class ConformanceMemorySink: Sink {
    enum Fault {
        /// Stores each transaction's position at `commitTransaction`, before the batch commits.
        case positionsBeforeCommitBatch
        /// Writes rows straight to the target: an abandoned batch leaves them.
        case writesBeforeCommitBatch
        /// `open` returns no positions.
        case forgetsPositions
        /// A keyless update changes every equal row instead of one.
        case keylessUpdateChangesEveryEqualRow
        /// Unchanged TOASTed columns are written as NULL.
        case unchangedBecomesNull
        /// A primary-key change upserts the new row but leaves the old one.
        case keyChangeKeepsOldRow
        case ignoresTruncate
        /// Throws on a transaction without changes.
        case failsOnEmptyTransaction
    }

    static let typeName = "memory"
    let target: ConformanceMemoryTarget
    let fault: Fault?
    private var working: [String: [[String?]]]?
    private var changesInTransaction = 0

    init(target: ConformanceMemoryTarget, fault: Fault? = nil) {
        self.target = target
        self.fault = fault
    }

    init(config: ConnectorConfig) throws { fatalError("built in code only") }

    func open(context: SinkContext) throws -> [String: SinkPosition] { fault == .forgetsPositions ? [:] : target.positions }
    func readPositions() throws -> [String: SinkPosition]? { target.positions.isEmpty ? nil : target.positions }
    func beginBatch() throws { working = target.tables }

    func beginTransaction(_ begin: BeginRecord, topic: String, offset: UInt64) throws { changesInTransaction = 0 }

    func apply(_ change: Change) throws {
        changesInTransaction += 1
        let name = change.relation.qualifiedName
        var rows = (fault == .writesBeforeCommitBatch ? target.tables[name] : working![name]) ?? []
        apply(RowAction(change), to: &rows, key: change.relation.primaryKey)
        if fault == .writesBeforeCommitBatch { target.tables[name] = rows }
        working![name] = rows
    }

    func commitTransaction(_ commit: CommitRecord, position: SinkPosition) throws {
        if fault == .failsOnEmptyTransaction && changesInTransaction == 0 { throw ConnectorError.fatal("no changes") }
        if fault == .positionsBeforeCommitBatch { target.positions[position.topic] = position }
    }

    func commitBatch(positions: [SinkPosition]) throws {
        if fault != .writesBeforeCommitBatch { target.tables = working! }
        for position in positions { target.positions[position.topic] = position }
        working = nil
    }

    func rollbackBatch() { working = nil }
    func close() { working = nil }

    private func apply(_ action: RowAction, to rows: inout [[String?]], key: [Int]) {
        func text(_ values: [Value]) -> [String?] { values.map(\.string) }
        func matches(_ row: [String?], _ match: KeyMatch) -> Bool {
            zip(match.columns, match.values).allSatisfy { row[$0] == $1.string }
        }
        func upsert(_ new: [String?]) {
            if let index = rows.firstIndex(where: { row in key.allSatisfy { row[$0] == new[$0] } }) { rows[index] = new } else { rows.append(new) }
        }
        /// Sets the columns `new` sent; unchanged ones stay (or become NULL under the fault).
        func merge(_ row: inout [String?], _ new: [Value]) {
            for (index, value) in new.enumerated() where !value.isUnchanged || fault == .unchangedBecomesNull { row[index] = value.string }
        }
        func firstEqual(_ old: [Value]) -> Int? {
            rows.firstIndex { row in old.indices.allSatisfy { old[$0].isUnchanged || row[$0] == old[$0].string } }
        }
        switch action {
        case let .upsert(new): upsert(text(new.values))
        case let .insert(new): rows.append(text(new.values))
        case let .delete(match): rows.removeAll { matches($0, match) }
        case let .deleteThenUpsert(match, new):
            if fault != .keyChangeKeepsOldRow { rows.removeAll { matches($0, match) } }
            upsert(text(new.values))
        case let .update(_, new, match):
            for index in rows.indices where matches(rows[index], match) { merge(&rows[index], new) }
        case let .updateOneRow(old, new):
            if fault == .keylessUpdateChangesEveryEqualRow {
                let original = rows
                for index in original.indices where old.indices.allSatisfy({ old[$0].isUnchanged || original[index][$0] == old[$0].string }) {
                    merge(&rows[index], new)
                }
            } else if let index = firstEqual(old) {
                merge(&rows[index], new)
            }
        case let .deleteOneRow(old):
            if let index = firstEqual(old) { rows.remove(at: index) }
        case .truncate:
            if fault != .ignoresTruncate { rows.removeAll() }
        case .none:
            break
        }
    }
}

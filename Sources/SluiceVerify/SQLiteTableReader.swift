import Foundation
import SluiceKit
import SluiceWire

/// Reads one table of an SQLite sink's file for verify. SQLite has no md5, so Sluice turns each
/// stored value back into PostgreSQL's text form (``CanonicalText``) and digests the rows itself.
/// Each read is one read transaction (WAL mode), so it sees whole applied batches only.
final class SQLiteTableReader {
    let database: SQLiteDatabase
    let shape: TableShape
    private let quotedName: String
    private let quotedColumns: [String]

    init(database: SQLiteDatabase, shape: TableShape) {
        self.database = database
        self.shape = shape
        quotedName = SQLiteDatabase.quoteIdentifier(shape.sqliteName)
        quotedColumns = shape.columns.map { SQLiteDatabase.quoteIdentifier($0.name) }
    }

    var exists: Bool {
        (try? database.query("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", [shape.sqliteName]).isEmpty == false) ?? false
    }

    private var keyList: String { "(" + shape.key.map { quotedColumns[$0] }.joined(separator: ", ") + ")" }

    private func condition(_ range: KeyRange) -> String {
        var clauses: [String] = []
        let marks = "(" + shape.key.map { _ in "?" }.joined(separator: ", ") + ")"
        if range.lower != nil { clauses.append("\(keyList) > \(marks)") }
        if range.upper != nil { clauses.append("\(keyList) <= \(marks)") }
        return clauses.isEmpty ? "1" : clauses.joined(separator: " AND ")
    }

    /// Binds a key value (canonical text) in the storage class the sink gave the column.
    private func bindKey(_ statement: SQLiteStatement, _ position: Int, column: Int, _ text: String) {
        let bytes = ArraySlice(Array(text.utf8))
        switch shape.columns[column].typeClass {
        case .integer: if let number = TextValues.int64(bytes) { statement.bind(position, int64: number); return }
        case .boolean: if let flag = TextValues.bool(bytes) { statement.bind(position, int64: flag ? 1 : 0); return }
        case .float: if let number = TextValues.double(bytes) { statement.bind(position, double: number); return }
        case .bytes:
            if let blob = TextValues.bytea(bytes) { blob.withUnsafeBytes { statement.bind(position, blob: $0) }; return }
        case .numeric, .json, .text: break
        }
        statement.bind(position, text: text)
    }

    private func row(_ statement: SQLiteStatement) -> CanonicalRow {
        shape.columns.indices.map { column in
            CanonicalText.value(statement, column, typeClass: shape.columns[column].typeClass, isFloat4: shape.columns[column].isFloat4)
        }
    }

    /// The current row's digest, from SQLite's buffers into one reused record text.
    private func digest(_ statement: SQLiteStatement, into text: inout RecordText) -> RowDigest {
        text.reset()
        for (index, column) in shape.columns.enumerated() {
            CanonicalText.withBytes(statement, index, typeClass: column.typeClass, isFloat4: column.isFloat4) { bytes in
                if let bytes { text.append(bytes) } else { text.appendNull() }
            }
        }
        return RowDigest(value: text.digest())
    }

    /// Prepared once per query text: a table is read chunk after chunk with the same few statements.
    private var statements: [String: SQLiteStatement] = [:]

    private func statement(_ sql: String) throws -> SQLiteStatement {
        if let statement = statements[sql] { return statement }
        let statement = try database.prepare(sql)
        statements[sql] = statement
        return statement
    }

    /// Runs `sql` in one read transaction, handing over the statement at each row.
    private func scan(_ sql: String, bind: (SQLiteStatement) -> Void = { _ in }, _ visit: (SQLiteStatement) throws -> Void) throws {
        let statement = try statement(sql)
        try database.execute("BEGIN")
        defer {
            statement.reset()
            try? database.execute("COMMIT")
        }
        bind(statement)
        while try statement.step() { try visit(statement) }
    }

    private var selectAll: String { "SELECT " + quotedColumns.joined(separator: ", ") + " FROM \(quotedName)" }

    private func scan(_ range: KeyRange, _ visit: (SQLiteStatement) throws -> Void) throws {
        try scan(selectAll + " WHERE " + condition(range), bind: { statement in
            var position = 1
            for bound in [range.lower, range.upper] {
                guard let bound else { continue }
                for (index, column) in shape.key.enumerated() {
                    bindKey(statement, position, column: column, bound[index])
                    position += 1
                }
            }
        }, visit)
    }

    func rows(in range: KeyRange, _ visit: (CanonicalRow) throws -> Void) throws {
        try scan(range) { try visit(row($0)) }
    }

    func summary(_ range: KeyRange) throws -> ChunkSummary {
        var summary = ChunkSummary()
        var text = RecordText()
        try scan(range) { summary.add(digest($0, into: &text)) }
        return summary
    }

    func bucketSummaries(count: Int) throws -> [ChunkSummary] {
        var summaries = [ChunkSummary](repeating: ChunkSummary(), count: count)
        var text = RecordText()
        try scan(selectAll) { statement in
            let digest = digest(statement, into: &text)
            summaries[digest.bucket(of: count)].add(digest)
        }
        return summaries
    }

    func rows(inBuckets buckets: Set<Int>, of count: Int) throws -> [CanonicalRow] {
        var rows: [CanonicalRow] = []
        var text = RecordText()
        try scan(selectAll) { statement in
            if buckets.contains(digest(statement, into: &text).bucket(of: count)) { rows.append(row(statement)) }
        }
        return rows
    }

    func rows(withKeys keys: [[String]]) throws -> [CanonicalRow] {
        guard !keys.isEmpty else { return [] }
        let statement = try statement(selectAll + " WHERE " + shape.key.map { "\(quotedColumns[$0]) = ?" }.joined(separator: " AND "))
        var rows: [CanonicalRow] = []
        try database.execute("BEGIN")
        defer {
            statement.reset()
            try? database.execute("COMMIT")
        }
        for key in keys {
            statement.reset()
            for (index, column) in shape.key.enumerated() { bindKey(statement, index + 1, column: column, key[index]) }
            while try statement.step() { rows.append(row(statement)) }
        }
        return rows
    }
}

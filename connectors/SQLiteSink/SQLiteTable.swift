import Foundation
import Logging
import SluiceKit
import SluiceWire

/// One target table: creates or alters it to match the source's schema, and applies changes with
/// cached prepared statements.
final class SQLiteTable {
    let schema: RelationSchema
    let name: String
    let quotedName: String
    private let database: SQLiteDatabase
    private let classes: [TypeClass]
    private let quotedColumns: [String]
    private let primaryKey: [Int]
    private var statements: [String: SQLiteStatement] = [:]
    /// Text values are bound from here with `SQLITE_STATIC` (one copy, no allocation of SQLite's
    /// per value); every statement runs, and so lets go of it, before the next change resets it.
    private let arena = SQLiteBindArena()

    /// `T` for `public.T`, `schema_T` otherwise.
    static func targetName(_ schema: RelationSchema) -> String {
        schema.schema == "public" ? schema.table : "\(schema.schema)_\(schema.table)"
    }

    static func storageType(_ typeClass: TypeClass) -> String {
        switch typeClass {
        case .integer, .boolean: return "INTEGER"
        case .float: return "REAL"
        case .bytes: return "BLOB"
        case .numeric, .json, .text: return "TEXT"
        }
    }

    init(database: SQLiteDatabase, schema: RelationSchema, logger: Logger) throws {
        self.database = database
        self.schema = schema
        name = Self.targetName(schema)
        quotedName = SQLiteDatabase.quoteIdentifier(name)
        classes = schema.columns.map(\.typeClass)
        quotedColumns = schema.columns.map { SQLiteDatabase.quoteIdentifier($0.name) }
        primaryKey = schema.primaryKey
        try ensureTable(logger: logger)
    }

    /// Creates the table, or adds and drops columns so it mirrors the source.
    private func ensureTable(logger: Logger) throws {
        let existing = try database.query("SELECT name FROM pragma_table_info(?)", [name]).compactMap { $0[0] }
        let definitions = schema.columns.indices.map { "\(quotedColumns[$0]) \(Self.storageType(classes[$0]))" }
        if existing.isEmpty {
            let key = primaryKey.isEmpty ? "" : ", PRIMARY KEY (" + primaryKey.map { quotedColumns[$0] }.joined(separator: ", ") + ")"
            try database.execute("CREATE TABLE \(quotedName) (\(definitions.joined(separator: ", "))\(key))")
            logger.info("created table", metadata: ["table": "\(name)"])
            return
        }
        for (index, column) in schema.columns.enumerated() where !existing.contains(column.name) {
            try database.execute("ALTER TABLE \(quotedName) ADD COLUMN \(definitions[index])"
                                 + (column.existingRowsValue.map { " DEFAULT " + Self.literal($0, classes[index]) } ?? ""))
            logger.info("added column", metadata: ["table": "\(name)", "column": "\(column.name)"])
        }
        let wanted = Set(schema.columns.map(\.name))
        for column in existing where !wanted.contains(column) {
            try database.execute("ALTER TABLE \(quotedName) DROP COLUMN \(SQLiteDatabase.quoteIdentifier(column))")
            logger.info("dropped column", metadata: ["table": "\(name)", "column": "\(column)"])
        }
        if !primaryKey.isEmpty {
            // A table created before the source gained its key still needs a unique index for upserts.
            let keyColumns = primaryKey.map { quotedColumns[$0] }.joined(separator: ", ")
            let indexName = SQLiteDatabase.quoteIdentifier("\(name)_sluice_key")
            let hasKey = try database.query("SELECT count(*) FROM pragma_table_info(?) WHERE pk > 0", [name]).first?[0] != "0"
            if !hasKey { try database.execute("CREATE UNIQUE INDEX IF NOT EXISTS \(indexName) ON \(quotedName) (\(keyColumns))") }
        }
    }

    /// A constant for `DEFAULT`, in the column's storage class.
    static func literal(_ text: String, _ typeClass: TypeClass) -> String {
        let bytes = ArraySlice(Array(text.utf8))
        switch typeClass {
        case .integer: if let number = TextValues.int64(bytes) { return String(number) }
        case .boolean: if let flag = TextValues.bool(bytes) { return flag ? "1" : "0" }
        case .float: if let number = TextValues.double(bytes), number.isFinite { return "\(number)" }
        case .bytes: if let blob = TextValues.bytea(bytes) { return "X'" + blob.map { String(format: "%02x", $0) }.joined() + "'" }
        case .numeric, .json, .text: break
        }
        return "'" + text.replacingOccurrences(of: "'", with: "''") + "'"
    }

    func apply(_ change: Change) throws {
        arena.reset()
        switch RowAction(change) {
        case let .upsert(new), let .insert(new):
            let statement = try cached(primaryKey.isEmpty ? "insert" : "upsert") { upsertSQL() }
            try bindRow(new, to: statement, from: 1)
            try statement.run()
        case let .delete(match):
            try deleteRows(matching: match)
        case let .deleteThenUpsert(match, new):
            try deleteRows(matching: match)
            let statement = try cached("upsert") { upsertSQL() }
            try bindRow(new, to: statement, from: 1)
            try statement.run()
        case let .update(present, new, match):
            let signature = "update:" + present.map(String.init).joined(separator: ",") + ":"
                + match.columns.map(String.init).joined(separator: ",")
            let statement = try cached(signature) {
                let sets = present.map { "\(quotedColumns[$0]) = ?\($0 + 1)" }.joined(separator: ", ")
                let wheres = match.columns.enumerated().map { "\(quotedColumns[$1]) = ?\(new.count + $0 + 1)" }
                return "UPDATE \(quotedName) SET \(sets) WHERE \(wheres.joined(separator: " AND "))"
            }
            for index in present { try bind(new[index], column: index, to: statement, at: index + 1) }
            for (k, column) in match.columns.enumerated() {
                try bind(match.values[k], column: column, to: statement, at: new.count + k + 1)
            }
            try statement.run()
        case let .updateOneRow(old, new):
            try rewriteOneRow(old: old, new: new)
        case let .deleteOneRow(old):
            try rewriteOneRow(old: old, new: nil)
        case .truncate:
            try database.execute("DELETE FROM \(quotedName)")
        case .none:
            break
        }
    }

    private func deleteRows(matching match: KeyMatch) throws {
        let statement = try cached("delete:" + match.columns.map(String.init).joined(separator: ",")) {
            // Key columns are never NULL: plain equality uses the primary key's index.
            "DELETE FROM \(quotedName) WHERE "
                + match.columns.enumerated().map { "\(quotedColumns[$1]) = ?\($0 + 1)" }.joined(separator: " AND ")
        }
        for (k, column) in match.columns.enumerated() { try bind(match.values[k], column: column, to: statement, at: k + 1) }
        try statement.run()
    }

    /// Updates (or deletes, when `new` is nil) one row equal to `old` on every column it carries.
    private func rewriteOneRow(old: [Value], new: [Value]?) throws {
        let compared = old.indices.filter { !old[$0].isUnchanged }
        let present = new.map { values in values.indices.filter { !values[$0].isUnchanged } } ?? []
        let width = schema.columns.count
        let signature = "row:" + compared.map(String.init).joined(separator: ",") + ":" + (new == nil ? "delete" : present.map(String.init).joined(separator: ","))
        let statement = try cached(signature) {
            let locate = "rowid = (SELECT rowid FROM \(quotedName) WHERE "
                + (compared.isEmpty ? "1" : compared.map { "\(quotedColumns[$0]) IS ?\(width + $0 + 1)" }.joined(separator: " AND "))
                + " LIMIT 1)"
            if new == nil { return "DELETE FROM \(quotedName) WHERE \(locate)" }
            let sets = present.map { "\(quotedColumns[$0]) = ?\($0 + 1)" }.joined(separator: ", ")
            return "UPDATE \(quotedName) SET \(sets) WHERE \(locate)"
        }
        if let new { for index in present { try bind(new[index], column: index, to: statement, at: index + 1) } }
        for index in compared { try bind(old[index], column: index, to: statement, at: width + index + 1) }
        try statement.run()
    }

    private func upsertSQL() -> String {
        let columns = quotedColumns.joined(separator: ", ")
        let values = quotedColumns.indices.map { "?\($0 + 1)" }.joined(separator: ", ")
        var sql = "INSERT INTO \(quotedName) (\(columns)) VALUES (\(values))"
        guard !primaryKey.isEmpty else { return sql }
        let others = quotedColumns.indices.filter { !primaryKey.contains($0) }
        sql += " ON CONFLICT (" + primaryKey.map { quotedColumns[$0] }.joined(separator: ", ") + ") DO "
        sql += others.isEmpty ? "NOTHING"
            : "UPDATE SET " + others.map { "\(quotedColumns[$0]) = excluded.\(quotedColumns[$0])" }.joined(separator: ", ")
        return sql
    }

    private func cached(_ signature: String, _ sql: () -> String) throws -> SQLiteStatement {
        if let statement = statements[signature] { return statement }
        let statement = try database.prepare(sql())
        statements[signature] = statement
        return statement
    }

    private func bindRow(_ tuple: Tuple, to statement: SQLiteStatement, from first: Int) throws {
        var index = 0
        for value in tuple {
            guard index < classes.count else { break }
            try bind(value, column: index, to: statement, at: first + index)
            index += 1
        }
    }

    /// Binds a value in the column's storage class.
    private func bind(_ value: Value, column: Int, to statement: SQLiteStatement, at position: Int) throws {
        switch value {
        case .null, .unchanged:
            statement.bindNull(position)
        case let .text(bytes), let .binary(bytes):
            switch classes[column] {
            case .integer:
                if let number = TextValues.int64(bytes) { statement.bind(position, int64: number); return }
            case .float:
                if let number = TextValues.double(bytes) { statement.bind(position, double: number); return }
            case .boolean:
                if let flag = TextValues.bool(bytes) { statement.bind(position, int64: flag ? 1 : 0); return }
            case .bytes:
                if let blob = TextValues.bytea(bytes) { blob.withUnsafeBytes { statement.bind(position, blob: $0) }; return }
            case .numeric, .json, .text:
                break
            }
            bytes.withUnsafeBytes { statement.bind(position, text: $0, in: arena) }
        }
    }
}

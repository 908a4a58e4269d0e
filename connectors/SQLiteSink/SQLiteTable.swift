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
            try database.execute("ALTER TABLE \(quotedName) ADD COLUMN \(definitions[index])")
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

    func apply(_ change: Change) throws {
        switch change.operation {
        case .read, .insert:
            let new = change.new!
            let statement = try cached(primaryKey.isEmpty ? "insert" : "upsert") { upsertSQL() }
            try bindRow(new, to: statement, from: 1)
            try statement.run()
        case .update:
            try update(change)
        case .delete:
            try delete(change)
        case .truncate:
            try database.execute("DELETE FROM \(quotedName)")
        }
    }

    private func update(_ change: Change) throws {
        let new = change.new!
        let newValues = new.values
        let hasUnchanged = newValues.contains { $0.isUnchanged }
        if primaryKey.isEmpty {
            // Keyless (REPLICA IDENTITY FULL): change exactly one row equal to the old one.
            guard let old = change.old else {
                throw ConnectorError.fatal("update of keyless table \(schema.qualifiedName) without its old row")
            }
            try rewriteOneRow(old: old.values, new: newValues)
            return
        }
        let oldKey = change.old.map { matchValues($0.values, kind: change.oldKind) }
        let newKey = primaryKey.map { newValues[$0] }
        let keyChanged = oldKey.map { $0.columns != primaryKey || $0.values != newKey } ?? false
        if !hasUnchanged {
            if keyChanged, let oldKey { try deleteRows(matching: oldKey) }
            let statement = try cached("upsert") { upsertSQL() }
            try bindRow(new, to: statement, from: 1)
            try statement.run()
            return
        }
        // Unchanged TOAST values: set only what was sent, on the row as it was keyed before.
        let match = oldKey ?? (primaryKey, newKey)
        let present = newValues.indices.filter { !newValues[$0].isUnchanged }
        let signature = "update:" + present.map(String.init).joined(separator: ",") + ":" + match.columns.map(String.init).joined(separator: ",")
        let statement = try cached(signature) {
            let sets = present.map { "\(quotedColumns[$0]) = ?\($0 + 1)" }.joined(separator: ", ")
            let wheres = match.columns.enumerated().map { "\(quotedColumns[$1]) IS ?\(newValues.count + $0 + 1)" }
            return "UPDATE \(quotedName) SET \(sets) WHERE \(wheres.joined(separator: " AND "))"
        }
        for index in present { try bind(newValues[index], column: index, to: statement, at: index + 1) }
        for (k, column) in match.columns.enumerated() {
            try bind(match.values[k], column: column, to: statement, at: newValues.count + k + 1)
        }
        try statement.run()
    }

    private func delete(_ change: Change) throws {
        guard let old = change.old else { return }
        if primaryKey.isEmpty {
            try rewriteOneRow(old: old.values, new: nil)
        } else {
            try deleteRows(matching: matchValues(old.values, kind: change.oldKind))
        }
    }

    /// The columns and values that identify the old row: the replica identity for an old key,
    /// the primary key for a full old row.
    private func matchValues(_ old: [Value], kind: OldValuesKind) -> (columns: [Int], values: [Value]) {
        let columns = kind == .key ? schema.columns.indices.filter { schema.columns[$0].isReplicaIdentity } : primaryKey
        let usable = columns.isEmpty ? primaryKey : columns
        return (usable, usable.map { old[$0] })
    }

    private func deleteRows(matching match: (columns: [Int], values: [Value])) throws {
        let statement = try cached("delete:" + match.columns.map(String.init).joined(separator: ",")) {
            "DELETE FROM \(quotedName) WHERE "
                + match.columns.enumerated().map { "\(quotedColumns[$1]) IS ?\($0 + 1)" }.joined(separator: " AND ")
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
            bytes.withUnsafeBytes { statement.bind(position, text: $0) }
        }
    }
}

import Logging
import SluiceKit
import SluiceWire

/// One target table: created or altered to mirror the source's schema, written with prepared
/// statements sent through the sink's pipeline.
final class PostgresTable {
    let schema: RelationSchema
    let qualifiedName: String
    private let pipeline: PGPipeline
    private let prefix: String
    let quotedColumns: [String]
    let primaryKey: [Int]
    private let isKeyColumn: [Bool]
    /// Columns compared as text because their type has no equality operator (json, xml, geometry).
    private let compareAsText: [Bool]
    /// A temporary table runs of updates and deletes are copied into (see ``ChangeRun``).
    let changeStagingName: String
    var changeStagingReady = false
    private var statements: [String: String] = [:]
    private var parameters = PGParameters()
    /// A temporary table runs of inserts are copied into before one merge (keyed tables only).
    let stagingName: String
    private var stagingReady = false

    /// Types without an `=` operator, whose values are matched through their text form.
    static let textCompared: Set<UInt32> = [114, 142, 600, 601, 602, 603, 604, 628, 718, 199, 143, 1017, 1018, 1019, 1020, 1027, 629, 719]

    init(pipeline: PGPipeline, schema: RelationSchema, statementPrefix: String, enumTypes: EnumTypes, logger: Logger) throws {
        self.pipeline = pipeline
        self.schema = schema
        prefix = statementPrefix
        qualifiedName = PGConnection.quoteIdentifier(schema.schema) + "." + PGConnection.quoteIdentifier(schema.table)
        quotedColumns = schema.columns.map { PGConnection.quoteIdentifier($0.name) }
        primaryKey = schema.primaryKey
        isKeyColumn = schema.columns.indices.map { schema.primaryKey.contains($0) } + [false]
        compareAsText = schema.columns.map { Self.textCompared.contains($0.typeOID) }
        stagingName = PGConnection.quoteIdentifier("sluice_stage_\(statementPrefix)\(schema.id)")
        changeStagingName = PGConnection.quoteIdentifier("sluice_changes_\(statementPrefix)\(schema.id)")
        try ensureTable(enumTypes: enumTypes, logger: logger)
    }

    // MARK: Schema

    /// Creates the schema and table, or adds, drops and retypes columns so the table mirrors the source.
    ///
    /// NOT NULL is kept where it holds for every row the target gets: on created tables, and on added
    /// columns whose existing rows take a value; a column the source stops requiring loses it here too.
    private func ensureTable(enumTypes: EnumTypes, logger: Logger) throws {
        let (types, asText) = try targetTypes(enumTypes: enumTypes, logger: logger)
        func warnAsText(_ index: Int) {
            guard asText.contains(index) else { return }
            logger.warning("type missing in target; column created as text (create the type there first to keep it)",
                           metadata: ["table": "\(schema.qualifiedName)", "column": "\(schema.columns[index].name)",
                                      "type": "\(schema.columns[index].typeName)"])
        }
        var lookup = PGParameters()
        lookup.append(qualifiedName)
        let existing = try pipeline.query("""
            SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull FROM pg_attribute a
            WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum
            """, lookup)
        if existing.rowCount == 0 {
            if schema.schema != "public" {
                try pipeline.send("CREATE SCHEMA IF NOT EXISTS \(PGConnection.quoteIdentifier(schema.schema))")
            }
            var definitions = schema.columns.indices.map {
                "\(quotedColumns[$0]) \(types[$0])" + (schema.columns[$0].isNotNull ? " NOT NULL" : "")
            }
            schema.columns.indices.forEach(warnAsText)
            if !primaryKey.isEmpty {
                definitions.append("PRIMARY KEY (" + primaryKey.map { quotedColumns[$0] }.joined(separator: ", ") + ")")
            }
            try pipeline.send("CREATE TABLE IF NOT EXISTS \(qualifiedName) (\(definitions.joined(separator: ", ")))")
            try pipeline.sync()
            logger.info("created table", metadata: ["table": "\(schema.qualifiedName)"])
            return
        }
        var current: [String: String] = [:]
        var notNull: Set<String> = []
        for row in 0..<existing.rowCount {
            current[existing.string(row, 0)!] = existing.string(row, 1)!
            if existing.string(row, 2) == "t" { notNull.insert(existing.string(row, 0)!) }
        }
        for (index, column) in schema.columns.enumerated() {
            if let type = current[column.name] {
                if type != types[index] {
                    try pipeline.send("ALTER TABLE \(qualifiedName) ALTER COLUMN \(quotedColumns[index]) TYPE \(types[index]) USING \(quotedColumns[index])::text::\(types[index])")
                    logger.info("changed column type", metadata: ["table": "\(schema.qualifiedName)", "column": "\(column.name)",
                                                                  "from": "\(type)", "to": "\(types[index])"])
                    warnAsText(index)
                }
                if notNull.contains(column.name) && !column.isNotNull && !primaryKey.contains(index) {
                    try pipeline.send("ALTER TABLE \(qualifiedName) ALTER COLUMN \(quotedColumns[index]) DROP NOT NULL")
                    logger.info("column no longer NOT NULL", metadata: ["table": "\(schema.qualifiedName)", "column": "\(column.name)"])
                }
            } else {
                // Rows the target already has need a value before the column can be NOT NULL.
                let required = column.isNotNull && column.existingRowsValue != nil
                try pipeline.send("ALTER TABLE \(qualifiedName) ADD COLUMN \(quotedColumns[index]) \(types[index])"
                                  + (column.existingRowsValue.map { " DEFAULT \(PGConnection.quoteLiteral($0))::\(types[index])" } ?? "")
                                  + (required ? " NOT NULL" : ""))
                warnAsText(index)
                if column.existingRowsValue != nil {
                    // Existing rows keep the value; new rows always come with every column.
                    try pipeline.send("ALTER TABLE \(qualifiedName) ALTER COLUMN \(quotedColumns[index]) DROP DEFAULT")
                }
                logger.info("added column", metadata: ["table": "\(schema.qualifiedName)", "column": "\(column.name)"])
            }
        }
        let wanted = Set(schema.columns.map(\.name))
        for column in current.keys.sorted() where !wanted.contains(column) {
            try pipeline.send("ALTER TABLE \(qualifiedName) DROP COLUMN \(PGConnection.quoteIdentifier(column))")
            logger.info("dropped column", metadata: ["table": "\(schema.qualifiedName)", "column": "\(column)"])
        }
        if !primaryKey.isEmpty {
            // Upserts need a unique index on the key, even on a table created before the source had one.
            var key = PGParameters()
            key.append(qualifiedName)
            key.append("{" + primaryKey.map { "\"" + schema.columns[$0].name.replacingOccurrences(of: "\"", with: "\\\"") + "\"" }.joined(separator: ",") + "}")
            let unique = try pipeline.query("""
                SELECT 1 FROM pg_index i WHERE i.indrelid = to_regclass($1) AND i.indisunique AND i.indpred IS NULL
                  AND (SELECT array_agg(a.attname::text ORDER BY a.attname) FROM pg_attribute a
                       WHERE a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey))
                    = (SELECT array_agg(k ORDER BY k) FROM unnest($2::text[]) AS k)
                """, key)
            if unique.rowCount == 0 {
                let indexName = PGConnection.quoteIdentifier(Self.keyIndexName(schema.table))
                try pipeline.send("CREATE UNIQUE INDEX \(indexName) ON \(qualifiedName) (" + primaryKey.map { quotedColumns[$0] }.joined(separator: ", ") + ")")
            }
        }
        try pipeline.sync()
    }

    /// `<table>_sluice_key`, or a hash of it past PostgreSQL's 63 bytes: cut to 63, a long table's index would
    /// take the table's own name (or another long table's index's), and the CREATE fail.
    static func keyIndexName(_ table: String) -> String {
        let name = table + "_sluice_key"
        guard name.utf8.count > 63 else { return name }
        let hash = name.utf8.reduce(UInt64(0xcbf2_9ce4_8422_2325)) { ($0 ^ UInt64($1)) &* 0x100_0000_01b3 }
        return "sluice_key_" + String(hash, radix: 16)
    }

    /// The source's type names, with its enums created in the target first; another user-defined type
    /// the target lacks (a domain, a composite) becomes text (`asText`: warned about where a column is made).
    private func targetTypes(enumTypes: EnumTypes, logger: Logger) throws -> (types: [String], asText: Set<Int>) {
        var types = schema.columns.map(\.typeName)
        let custom = schema.columns.indices.filter { schema.columns[$0].typeOID >= 16384 }
        guard !custom.isEmpty else { return (types, []) }
        for index in custom {
            if let type = schema.columns[index].enumType { try enumTypes.ensure(type, logger: logger) }
        }
        var names = PGParameters()
        names.append("{" + custom.map { "\"" + types[$0].replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"") + "\"" }.joined(separator: ",") + "}")
        let found = try pipeline.query("SELECT to_regtype(t)::text FROM unnest($1::text[]) WITH ORDINALITY AS u(t, n) ORDER BY n", names)
        var asText: Set<Int> = []
        for (row, index) in custom.enumerated() where found.isNull(row, 0) {
            types[index] = "text"
            asText.insert(index)
        }
        return (types, asText)
    }

    // MARK: Bulk loading

    var hasKey: Bool { !primaryKey.isEmpty }

    /// Set once a direct COPY met an existing key: this table's runs go through the staging table.
    var prefersStaging = false

    /// `COPY … FROM STDIN` straight into the table.
    var directCopySQL: String {
        "COPY \(qualifiedName) (\(quotedColumns.joined(separator: ", "))) FROM STDIN"
    }

    /// `COPY … FROM STDIN` into the staging table.
    var stagingCopySQL: String {
        "COPY \(stagingName) (\(quotedColumns.joined(separator: ", "))) FROM STDIN"
    }

    /// Moves a copied run from the staging table into the table, updating rows whose key exists.
    var mergeSQL: String {
        upsertSQL(rows: "SELECT \(quotedColumns.joined(separator: ", ")) FROM \(stagingName)")
    }

    /// Creates the staging table once, in the sink's session (it lives as long as the connection;
    /// emptied at each commit). Called outside pipeline mode.
    func createStaging(on connection: PGConnection) throws {
        guard !stagingReady else { return }
        try connection.execute("CREATE TEMP TABLE IF NOT EXISTS \(stagingName) (LIKE \(qualifiedName)) ON COMMIT DELETE ROWS")
        stagingReady = true
    }

    /// Creates the staging table through the pipeline, for tables known to need it.
    func prepareStaging() throws {
        guard hasKey, prefersStaging, !stagingReady else { return }
        try pipeline.send("CREATE TEMP TABLE IF NOT EXISTS \(stagingName) (LIKE \(qualifiedName)) ON COMMIT DELETE ROWS")
        stagingReady = true
    }

    func encode(_ tuple: Tuple, into encoder: inout CopyTextEncoder) {
        let width = quotedColumns.count
        tuple.forEachRaw { column, value in
            guard column < width else { return }
            switch value {
            case .null, .unchanged: encoder.appendNull()
            case let .text(bytes), let .binary(bytes): encoder.append(bytes)
            }
        }
        encoder.endRow()
    }

    /// A hash of a row's primary key; nil for a keyless table. (A collision only ends a bulk run early.)
    func key(of tuple: Tuple) -> Int? {
        guard !primaryKey.isEmpty else { return nil }
        var hasher = Hasher()
        tuple.forEachRaw { column, value in
            guard isKeyColumn[column] else { return }
            switch value {
            case let .text(bytes), let .binary(bytes):
                hasher.combine(bytes.count)
                hasher.combine(bytes: bytes)
            case .null, .unchanged:
                hasher.combine(-1)
            }
        }
        return hasher.finalize()
    }

    /// One row inserted, or updated by key, through the pipeline.
    func upsert(_ tuple: Tuple) throws {
        parameters.removeAll()
        appendRow(tuple)
        try pipeline.send(prepared: try statement(primaryKey.isEmpty ? "insert" : "upsert") { upsertSQL() }, parameters)
    }

    // MARK: Changes

    func apply(_ change: Change) throws {
        try apply(RowAction(change))
    }

    func apply(_ action: RowAction) throws {
        switch action {
        case let .upsert(new), let .insert(new):
            try upsert(new)
        case let .delete(match):
            try delete(match)
        case let .deleteThenUpsert(match, new):
            try delete(match)
            parameters.removeAll()
            appendRow(new)
            try pipeline.send(prepared: try statement("upsert") { upsertSQL() }, parameters)
        case let .update(present, new, match):
            let signature = "update:" + present.map(String.init).joined(separator: ",") + ":"
                + match.columns.map(String.init).joined(separator: ",")
            let name = try statement(signature) {
                let sets = present.enumerated().map { "\(quotedColumns[$1]) = $\($0 + 1)" }.joined(separator: ", ")
                return "UPDATE \(qualifiedName) SET \(sets) WHERE " + condition(match.columns, from: present.count + 1)
            }
            parameters.removeAll()
            for index in present { append(new[index]) }
            for value in match.values { append(value) }
            try pipeline.send(prepared: name, parameters)
        case let .updateOneRow(old, new):
            try rewriteOneRow(old: old, new: new)
        case let .deleteOneRow(old):
            try rewriteOneRow(old: old, new: nil)
        case let .truncate(options) where options & ChangeRecord.backfillTruncate != 0:
            // A backfill's whole copy follows: readers keep seeing the old rows until it commits.
            try pipeline.send("DELETE FROM \(qualifiedName)")
        case let .truncate(options):
            var sql = "TRUNCATE \(qualifiedName)"
            if options & 2 != 0 { sql += " RESTART IDENTITY" }
            if options & 1 != 0 { sql += " CASCADE" }
            try pipeline.send(sql)
        case .none:
            break
        }
    }

    private func delete(_ match: KeyMatch) throws {
        let name = try statement("delete:" + match.columns.map(String.init).joined(separator: ",")) {
            "DELETE FROM \(qualifiedName) WHERE " + condition(match.columns, from: 1)
        }
        parameters.removeAll()
        for value in match.values { append(value) }
        try pipeline.send(prepared: name, parameters)
    }

    /// Updates (or deletes, when `new` is nil) exactly one row equal to `old` on the columns it carries.
    private func rewriteOneRow(old: [Value], new: [Value]?) throws {
        let compared = old.indices.filter { !old[$0].isUnchanged }
        let present = new.map { values in values.indices.filter { !values[$0].isUnchanged } } ?? []
        let signature = "row:" + compared.map(String.init).joined(separator: ",") + ":"
            + (new == nil ? "delete" : present.map(String.init).joined(separator: ","))
        let name = try statement(signature) {
            let locate = "ctid = (SELECT ctid FROM \(qualifiedName) WHERE "
                + (compared.isEmpty ? "true" : condition(compared, from: present.count + 1, nullable: true)) + " LIMIT 1)"
            guard new != nil else { return "DELETE FROM \(qualifiedName) WHERE \(locate)" }
            let sets = present.enumerated().map { "\(quotedColumns[$1]) = $\($0 + 1)" }.joined(separator: ", ")
            return "UPDATE \(qualifiedName) SET \(sets) WHERE \(locate)"
        }
        parameters.removeAll()
        if let new { for index in present { append(new[index]) } }
        for index in compared { append(old[index]) }
        try pipeline.send(prepared: name, parameters)
    }

    /// `a = $n AND b = $n+1 …`: plain equality for key columns (never NULL, and indexable), NULL-safe
    /// comparison for the columns of a keyless row, text-compared where the type has no equality.
    private func condition(_ columns: [Int], from first: Int, nullable: Bool = false) -> String {
        columns.enumerated().map { offset, column in
            let name = quotedColumns[column]
            let parameter = "$\(first + offset)"
            if compareAsText[column] { return "\(name)::text IS NOT DISTINCT FROM \(parameter)::text" }
            return nullable ? "\(name) IS NOT DISTINCT FROM \(parameter)" : "\(name) = \(parameter)"
        }.joined(separator: " AND ")
    }

    /// Inserts `rows` (a VALUES list of the parameters by default), updating rows whose key exists.
    private func upsertSQL(rows: String? = nil) -> String {
        let values = rows ?? "VALUES (" + quotedColumns.indices.map { "$\($0 + 1)" }.joined(separator: ", ") + ")"
        var sql = "INSERT INTO \(qualifiedName) (\(quotedColumns.joined(separator: ", "))) \(values)"
        guard !primaryKey.isEmpty else { return sql }
        let others = quotedColumns.indices.filter { !primaryKey.contains($0) }
        sql += " ON CONFLICT (" + primaryKey.map { quotedColumns[$0] }.joined(separator: ", ") + ") DO "
        sql += others.isEmpty ? "NOTHING"
            : "UPDATE SET " + others.map { "\(quotedColumns[$0]) = excluded.\(quotedColumns[$0])" }.joined(separator: ", ")
        return sql
    }

    /// The name of the prepared statement for `signature`, preparing it on first use.
    private func statement(_ signature: String, _ sql: () -> String) throws -> String {
        if let name = statements[signature] { return name }
        let name = "\(prefix)\(statements.count)"
        try pipeline.prepare(name, sql())
        statements[signature] = name
        return name
    }

    private func appendRow(_ tuple: Tuple) {
        let width = quotedColumns.count
        tuple.forEachRaw { column, value in
            guard column < width else { return }
            switch value {
            case .null, .unchanged: parameters.appendNull()
            case let .text(bytes), let .binary(bytes): parameters.append(bytes)
            }
        }
    }

    private func append(_ value: Value) {
        switch value {
        case .null, .unchanged: parameters.appendNull()
        case let .text(bytes), let .binary(bytes): parameters.append(bytes)
        }
    }
}

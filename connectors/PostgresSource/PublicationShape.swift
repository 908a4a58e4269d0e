import SluiceKit
import SluiceWire

/// What a publication carries of one table: its column list and row filter as PostgreSQL keeps them
/// (the filter in `pg_get_expr`'s normal form, e.g. `(status <> 'draft'::text)`).
struct PublicationShape: Equatable {
    /// nil: every column.
    var columns: [String]?
    var rowFilter: String?

    static let whole = PublicationShape(columns: nil, rowFilter: nil)

    var describe: String {
        (rowFilter.map { "WHERE \($0)" } ?? "every row") + ", "
            + (columns.map { "columns (" + $0.joined(separator: ", ") + ")" } ?? "every column")
    }
}

/// A table's rows as the stream carries them: for the initial snapshot and backfill, which must copy
/// exactly what the publication lets through (a row outside the filter would reach the targets and
/// never be updated or deleted there).
struct CopySource {
    /// The table's schema with the published columns only, in table order (as pgoutput sends them).
    let schema: RelationSchema
    let selectList: String
    /// The publication's row filter, in PostgreSQL's form.
    let rowFilter: String?
    /// ` WHERE (…)` or empty.
    var filter: String { rowFilter.map { " WHERE (\($0))" } ?? "" }
}

extension PostgresSource {
    /// What `publication` carries of `table` (PostgreSQL 15 and later know filters and lists; before, the whole table).
    func publishedShape(of table: TableName, on sql: PGConnection) throws -> PublicationShape? {
        guard sql.serverVersion >= 150000 else { return .whole }
        let row = try sql.execute("""
            SELECT rowfilter, attnames IS NOT NULL AND cardinality(attnames) < (
                     SELECT count(*) FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
                       JOIN pg_namespace n ON n.oid = c.relnamespace
                     WHERE n.nspname = $2 AND c.relname = $3 AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = '')
            FROM pg_publication_tables WHERE pubname = $1 AND schemaname = $2 AND tablename = $3
            """, [publication, table.schema, table.table])
        guard row.rowCount == 1 else { return nil }
        var shape = PublicationShape(columns: nil, rowFilter: row.string(0, 0))
        if row.string(0, 1) == "t" {
            let names = try sql.execute("""
                SELECT u.name FROM pg_publication_tables t, unnest(t.attnames) WITH ORDINALITY AS u(name, n)
                WHERE t.pubname = $1 AND t.schemaname = $2 AND t.tablename = $3 ORDER BY u.n
                """, [publication, table.schema, table.table])
            shape.columns = (0..<names.rowCount).compactMap { names.string($0, 0) }
        }
        return shape
    }

    /// How to copy `table` as the publication carries it; nil if the table does not exist.
    func copySource(of table: TableName, on sql: PGConnection) throws -> CopySource? {
        guard var schema = try RelationCatalog.schema(ofTable: table.sql, on: sql) else { return nil }
        let shape = try publishedShape(of: table, on: sql) ?? .whole
        if let columns = shape.columns { schema.columns = schema.columns.filter { columns.contains($0.name) } }
        return CopySource(schema: schema,
                          selectList: schema.columns.map { PGConnection.quoteIdentifier($0.name) }.joined(separator: ", "),
                          rowFilter: shape.rowFilter)
    }
}

/// The configured row filter as PostgreSQL reads it, found without changing anything lasting: a CHECK
/// constraint of the same expression on a temporary copy of the table, in a transaction rolled back.
/// PostgreSQL parses, types and prints it exactly as it does a publication's filter, and lists the
/// columns it uses.
struct RowFilterProbe {
    /// `pg_get_expr`'s form, comparable with `pg_publication_tables.rowfilter`.
    let normalized: String
    let columns: [String]

    /// Throws PostgreSQL's error when the expression is not a valid condition on the table.
    static func run(_ expression: String, table: TableName, on sql: PGConnection) throws -> RowFilterProbe {
        try sql.execute("BEGIN")
        defer { _ = try? sql.execute("ROLLBACK") }
        try sql.execute("CREATE TEMPORARY TABLE sluice_row_filter_probe (LIKE \(table.sql)) ON COMMIT DROP", [])
        try sql.execute("ALTER TABLE sluice_row_filter_probe ADD CONSTRAINT probe CHECK (\(expression)) NOT VALID", [])
        let result = try sql.execute("""
            SELECT pg_get_expr(c.conbin, c.conrelid) FROM pg_constraint c WHERE c.conrelid = 'sluice_row_filter_probe'::regclass AND c.conname = 'probe'
            """, [])
        let columns = try sql.execute("""
            SELECT a.attname FROM pg_constraint c JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = ANY(c.conkey)
            WHERE c.conrelid = 'sluice_row_filter_probe'::regclass AND c.conname = 'probe' ORDER BY a.attnum
            """, [])
        return RowFilterProbe(normalized: result.string(0, 0) ?? expression,
                              columns: (0..<columns.rowCount).compactMap { columns.string($0, 0) })
    }
}

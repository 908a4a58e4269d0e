import SluiceKit
import SluiceWire

/// The row filters and column lists of `tables:`: what PostgreSQL will accept, checked before anything
/// is created, and how an existing publication compares with the file.
extension Prerequisites {
    private var pushDownSubject: String { "source \(source.name)" }
    private var quotedPublication: String { PGConnection.quoteIdentifier(source.publication) }

    /// Each configured row filter and column list: PostgreSQL 15, columns that exist, a condition PostgreSQL
    /// accepts, and both covering the replica identity (else PostgreSQL rejects the table's UPDATE and DELETE).
    func pushDown() throws -> [CheckFinding] {
        let shaped = (source.published ?? []).filter { !$0.isWholeTable }
        guard !shaped.isEmpty else { return [] }
        guard sql.serverVersion >= 150000 else {
            return [CheckFinding(.error, pushDownSubject, """
                tables: \(shaped.map(\.name.description).joined(separator: ", ")) has a row filter (where:) or a column \
                list (columns:), which need PostgreSQL 15 or later; the server is PostgreSQL \(sql.serverVersion / 10000)
                """, fix: "remove where: and columns: from those tables, or upgrade the source to PostgreSQL 15")]
        }
        var findings: [CheckFinding] = []
        for entry in shaped {
            // A missing table is reported by tables().
            guard let schema = try RelationCatalog.schema(ofTable: entry.name.sql, on: sql) else { continue }
            findings += try check(entry, schema)
        }
        return findings
    }

    private func check(_ entry: PublishedTable, _ schema: RelationSchema) throws -> [CheckFinding] {
        let table = entry.name
        let names = schema.columns.map(\.name)
        let identity = schema.columns.filter(\.isReplicaIdentity).map(\.name)
        let rejects = "PostgreSQL would reject every UPDATE and DELETE of the table"
        var findings: [CheckFinding] = []
        if let columns = entry.columns {
            let unknown = columns.filter { !names.contains($0) }
            if !unknown.isEmpty {
                return [CheckFinding(.error, pushDownSubject, """
                    tables: \(table) columns: names \(unknown.joined(separator: ", ")), which \(table) does not have \
                    (its columns: \(names.joined(separator: ", ")))
                    """, fix: "correct the column list of \(table) in the configuration")]
            }
            let left = identity.filter { !columns.contains($0) }
            if !left.isEmpty {
                findings.append(CheckFinding(.error, pushDownSubject, """
                    tables: \(table) columns: leaves out \(left.joined(separator: ", ")), part of the table's replica \
                    identity (\(describeIdentity(schema))): \(rejects) (a column list must cover the replica identity)
                    """, fix: "add \(left.joined(separator: ", ")) to columns: of \(table)"))
            }
        }
        if let expression = entry.rowFilter {
            let probe: RowFilterProbe
            do {
                probe = try RowFilterProbe.run(expression, table: table, on: sql)
            } catch let error as PGError where !error.isTransient {
                return findings + [CheckFinding(.error, pushDownSubject, """
                    tables: \(table) where: PostgreSQL rejects the row filter "\(expression)": \(error.message)
                    """, fix: "write a condition on the columns of \(table), e.g. \"status <> 'draft'\"")]
            }
            let outside = probe.columns.filter { !identity.contains($0) }
            if !outside.isEmpty {
                findings.append(CheckFinding(.error, pushDownSubject, """
                    tables: \(table) where: the row filter uses \(outside.joined(separator: ", ")), outside the table's \
                    replica identity (\(describeIdentity(schema))): \(rejects), because PostgreSQL evaluates the filter of \
                    an UPDATE or DELETE on the old row, of which only the replica identity is logged
                    """, fix: """
                    filter on replica identity columns only, or log whole old rows: ALTER TABLE \(table.sql) REPLICA \
                    IDENTITY FULL; (then a column list, if any, must name every column)
                    """))
            }
            if let columns = entry.columns {
                let unlisted = probe.columns.filter { !columns.contains($0) }
                if !unlisted.isEmpty {
                    findings.append(CheckFinding(.warning, pushDownSubject, """
                        tables: \(table) where: the row filter uses \(unlisted.joined(separator: ", ")), which columns: \
                        does not publish: the targets cannot see why a row is there
                        """))
                }
            }
        }
        if findings.isEmpty {
            findings.append(CheckFinding(.ok, pushDownSubject, "tables: \(table) publishes "
                                         + (entry.rowFilter.map { "rows WHERE \($0)" } ?? "every row") + ", "
                                         + (entry.columns.map { "columns " + $0.joined(separator: ", ") } ?? "every column")))
        }
        return findings
    }

    private func describeIdentity(_ schema: RelationSchema) -> String {
        let identity = schema.columns.filter(\.isReplicaIdentity).map(\.name).joined(separator: ", ")
        switch schema.replicaIdentity {
        case .full: return "REPLICA IDENTITY FULL: every column"
        case .index: return "its REPLICA IDENTITY index: \(identity)"
        case .nothing: return "REPLICA IDENTITY NOTHING"
        case .default: return identity.isEmpty ? "no primary key" : "its primary key: \(identity)"
        }
    }

    /// The shape the file asks of `entry`, in the publication's terms: the filter normalized by PostgreSQL,
    /// a column list naming every column counted as none.
    func wantedShape(_ entry: PublishedTable) throws -> PublicationShape {
        var shape = PublicationShape.whole
        if let expression = entry.rowFilter {
            shape.rowFilter = try RowFilterProbe.run(expression, table: entry.name, on: sql).normalized
        }
        if let columns = entry.columns, let schema = try RelationCatalog.schema(ofTable: entry.name.sql, on: sql),
           Set(columns) != Set(schema.columns.map(\.name)) {
            shape.columns = schema.columns.map(\.name).filter(columns.contains)
        }
        return shape
    }

    /// Configured tables the existing publication carries otherwise than the file says, as check findings
    /// with the statements that make it match. Sluice never changes them itself: rows the old filter kept
    /// out were never copied, and rows it let in would stay at the targets unmaintained.
    func shapeDifferences(published: Set<TableName>) throws -> [CheckFinding] {
        guard sql.serverVersion >= 150000, let entries = source.published else { return [] }
        var findings: [CheckFinding] = []
        for entry in entries where published.contains(entry.name) {
            guard let current = try source.publishedShape(of: entry.name, on: sql) else { continue }
            let wanted: PublicationShape
            do {
                wanted = try wantedShape(entry)
            } catch let error as PGError where !error.isTransient {
                continue  // pushDown() reports the filter PostgreSQL rejects.
            }
            guard current.rowFilter != wanted.rowFilter || current.columns.map(Set.init) != wanted.columns.map(Set.init)
            else { continue }
            let fix = """
                BEGIN; ALTER PUBLICATION \(quotedPublication) DROP TABLE \(entry.name.sql); \
                ALTER PUBLICATION \(quotedPublication) ADD TABLE \(entry.publicationClause); COMMIT; \
                -- then sluice backfill --config <file> --table \(entry.name) copies the rows the new filter lets in
                """
            findings.append(CheckFinding(.error, pushDownSubject, """
                publication \(source.publication) carries \(entry.name) with \(current.describe), but the configuration \
                says \(wanted.describe). Sluice leaves an existing publication's filters and column lists as they are, \
                rather than capture something other than the file says
                """, fix: fix))
        }
        return findings
    }
}

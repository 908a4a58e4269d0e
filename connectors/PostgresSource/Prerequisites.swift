import Foundation
import SluiceKit
import SluiceWire

/// What the source needs from its database, probed without changing anything. `sluice check` prints
/// every finding; `sluice run` stops at the first blocking one before it creates anything.
struct Prerequisites {
    let source: PostgresSource
    let sql: PGConnection
    let state: SourceState

    var subject: String { "source \(source.name)" }

    func findings() -> [CheckFinding] {
        var findings: [CheckFinding] = []
        func probe(_ body: () throws -> [CheckFinding]) {
            do { findings += try body() } catch { findings.append(CheckFinding(.error, subject, "\(error)")) }
        }
        probe { [try serverVersion()] }
        findings.append(CheckFinding(.ok, subject, sql.tls.summary))
        if let warning = connectionTLSWarning(source.url) {
            findings.append(CheckFinding(.warning, subject, warning, fix: "add sslmode=verify-full&sslrootcert=<the server's CA file> to the url"))
        }
        probe { [try walLevel()] }
        probe { [try replicationPrivilege()] }
        probe { try schemaUsage() }
        probe { try publication() }
        probe { try privileges() }
        probe { try tables() }
        probe { try pushDown() }
        probe { try slot() }
        return findings
    }

    /// The first blocking problem, as the error `run` stops with.
    func requireAll() throws {
        guard let problem = findings().first(where: { $0.severity == .error }) else { return }
        throw ConnectorError.misconfigured("\(problem.subject): \(problem.message)" + (problem.fix.map { ". Fix: \($0)" } ?? ""))
    }

    func serverVersion() throws -> CheckFinding {
        let version = sql.serverVersion
        guard version >= 140000 else {
            return CheckFinding(.error, subject, "PostgreSQL \(version / 10000) is too old: Sluice needs 14 or later")
        }
        return CheckFinding(.ok, subject, "connected to \(redactURL(source.url)) (PostgreSQL \(version / 10000))")
    }

    func walLevel() throws -> CheckFinding {
        let level = try sql.execute("SHOW wal_level").string(0, 0) ?? ""
        guard level == "logical" else {
            return CheckFinding(.error, subject, "wal_level is '\(level)'; logical replication needs 'logical'",
                                fix: "ALTER SYSTEM SET wal_level = logical; -- then restart PostgreSQL")
        }
        return CheckFinding(.ok, subject, "wal_level is logical")
    }

    func replicationPrivilege() throws -> CheckFinding {
        let result = try sql.execute("SELECT current_user, rolreplication OR rolsuper FROM pg_roles WHERE rolname = current_user")
        let user = result.string(0, 0) ?? "?"
        guard result.string(0, 1) == "t" else {
            return CheckFinding(.error, subject, "role \(user) may not use replication",
                                fix: "ALTER ROLE \(PGConnection.quoteIdentifier(user)) WITH REPLICATION;")
        }
        return CheckFinding(.ok, subject, "role \(user) may use replication")
    }

    func publicationExists() throws -> Bool {
        try sql.execute("SELECT 1 FROM pg_publication WHERE pubname = $1", [source.publication]).rowCount == 1
    }

    /// The FOR clause of the publication Sluice creates. Changes of a partitioned table are published
    /// under its own name, not its partitions' (which a `tables:` list does not name).
    var publicationTarget: String {
        (source.published.map { "TABLE " + $0.map(\.publicationClause).joined(separator: ", ") } ?? "ALL TABLES")
            + " WITH (publish_via_partition_root = true)"
    }

    func publication() throws -> [CheckFinding] {
        let name = source.publication
        guard try publicationExists() else {
            guard source.tables != nil || source.allTables else {
                return [CheckFinding(.error, subject, """
                    publication \(name) does not exist and tables: is not set. Sluice does not create a FOR ALL TABLES \
                    publication unasked: once it exists, every table created later without a primary key or REPLICA \
                    IDENTITY FULL makes the application's own UPDATE and DELETE on it fail
                    """, fix: "list the tables to capture (tables: [public.orders, ...]), or opt in with tables: all")]
            }
            var findings = [CheckFinding(.ok, subject, "publication \(name) will be created FOR \(publicationTarget)")]
            if source.allTables {
                findings.append(CheckFinding(.warning, subject, """
                    tables: all creates publication \(name) FOR ALL TABLES: any table created later without a primary key \
                    or REPLICA IDENTITY FULL will make UPDATE and DELETE on it fail at the source
                    """))
            }
            return findings
        }
        var findings: [CheckFinding] = []
        if let partitioned = try partitionedWithoutRoot() {
            let fix = "ALTER PUBLICATION \(PGConnection.quoteIdentifier(name)) SET (publish_via_partition_root = true);"
            if state.publicationCreated {
                findings.append(CheckFinding(.ok, subject, "publication \(name) will be set to publish_via_partition_root (Sluice created it)"))
            } else {
                findings.append(CheckFinding(.error, subject, """
                    publication \(name) publishes the changes of partitioned table \(partitioned) under its partitions' \
                    names (publish_via_partition_root is off), so none of them would be captured as \(partitioned)
                    """, fix: fix))
                return findings
            }
        }
        guard source.tables != nil else {
            return findings + [CheckFinding(.ok, subject, "publication \(name) exists; every table in it is captured")]
        }
        if let shaped = source.published?.first(where: { !$0.isWholeTable }),
           try sql.execute("SELECT puballtables FROM pg_publication WHERE pubname = $1", [name]).string(0, 0) == "t" {
            return findings + [CheckFinding(.error, subject, """
                publication \(name) is FOR ALL TABLES, which cannot carry the row filter or column list tables: gives \(shaped.name)
                """, fix: "let Sluice create a publication of its own: set publication: to a name that does not exist yet")]
        }
        let published = try publishedTables()
        findings += try shapeDifferences(published: published)
        let missing = (source.published ?? []).filter { !published.contains($0.name) }
        guard !missing.isEmpty else {
            return findings + [CheckFinding(.ok, subject, "publication \(name) includes every configured table")]
        }
        let list = missing.map(\.name.description).joined(separator: ", ")
        if state.publicationCreated {
            return findings + [CheckFinding(.ok, subject, "publication \(name) will get \(list) added (Sluice created it)")]
        }
        let fix = "ALTER PUBLICATION \(PGConnection.quoteIdentifier(name)) ADD TABLE \(missing.map(\.publicationClause).joined(separator: ", "));"
        return findings + [CheckFinding(.error, subject, "publication \(name) does not include \(list)", fix: fix)]
    }

    /// A configured partitioned table, when the existing publication does not publish via the partition root.
    func partitionedWithoutRoot() throws -> TableName? {
        guard let tables = source.tables, !tables.isEmpty else { return nil }
        let viaRoot = try sql.execute("SELECT pubviaroot FROM pg_publication WHERE pubname = $1", [source.publication])
        guard viaRoot.rowCount == 1, viaRoot.string(0, 0) != "t" else { return nil }
        for table in tables where try schemaUsable(table) {
            let kind = try sql.execute("SELECT relkind FROM pg_class WHERE oid = to_regclass($1)", [table.sql])
            if kind.rowCount == 1, kind.string(0, 0) == "p" { return table }
        }
        return nil
    }

    func publishedTables() throws -> Set<TableName> {
        let result = try sql.execute("SELECT schemaname, tablename FROM pg_publication_tables WHERE pubname = $1",
                                     [source.publication])
        return Set((0..<result.rowCount).compactMap { row in
            guard let schema = result.string(row, 0), let table = result.string(row, 1) else { return nil }
            return TableName(schema: schema, table: table)
        })
    }

    /// The configured tables; else the publication's; else every user table (what FOR ALL TABLES covers,
    /// partitioned tables by their root).
    func tablesInScope() throws -> [TableName] {
        if let tables = source.tables { return tables }
        if try publicationExists() { return try publishedTables().sorted() }
        let result = try sql.execute("""
            SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition AND n.nspname NOT IN ('pg_catalog', 'information_schema')
              AND n.nspname NOT LIKE 'pg_toast%' ORDER BY 1, 2
            """)
        return (0..<result.rowCount).compactMap { row in
            guard let schema = result.string(row, 0), let table = result.string(row, 1) else { return nil }
            return TableName(schema: schema, table: table)
        }
    }

    /// Each table must exist and identify its rows: a primary key, or REPLICA IDENTITY FULL or USING INDEX.
    func tables() throws -> [CheckFinding] {
        // Tables in a schema the role may not use are reported by privileges().
        try tablesInScope().filter { try schemaUsable($0) }.map { table in
            let result = try sql.execute("""
                SELECT c.relreplident, EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary)
                FROM pg_class c WHERE c.oid = to_regclass($1)
                """, [table.sql])
            guard result.rowCount == 1 else {
                return CheckFinding(.error, subject, "table \(table) does not exist in \(redactURL(source.url))")
            }
            let identity = result.string(0, 0) ?? "d"
            let hasKey = result.string(0, 1) == "t"
            if identity == "n" || (identity == "d" && !hasKey) {
                return CheckFinding(.error, subject,
                                    "table \(table) has no primary key and its REPLICA IDENTITY is not FULL, so its updates and deletes cannot be replicated",
                                    fix: "ALTER TABLE \(table.sql) REPLICA IDENTITY FULL; -- or add a primary key")
            }
            let how = hasKey ? "primary key" : identity == "f" ? "REPLICA IDENTITY FULL" : "REPLICA IDENTITY USING INDEX"
            let read = try sql.execute("SELECT has_table_privilege(to_regclass($1), 'SELECT'), current_user", [table.sql])
            guard read.string(0, 0) == "t" else {
                let role = read.string(0, 1) ?? "?"
                let fix = "GRANT SELECT ON \(table.sql) TO \(PGConnection.quoteIdentifier(role));"
                // The first run copies the table: without SELECT it would fail half-way.
                if try willSnapshot() {
                    return CheckFinding(.error, subject, """
                        role \(role) may not SELECT from table \(table), and the initial snapshot (snapshot: initial) copies it
                        """, fix: fix)
                }
                return CheckFinding(.warning, subject, """
                    table \(table) identifies rows by its \(how), but role \(role) may not SELECT from it: streaming works, \
                    the initial snapshot and sluice backfill of it cannot
                    """, fix: fix)
            }
            return CheckFinding(.ok, subject, "table \(table) identifies rows by its \(how)")
        }
    }

    /// The tables in scope that `wanted` selects and that exist without REPLICA IDENTITY FULL.
    func tablesWithoutFullIdentity(among wanted: (TableName) -> Bool) throws -> [TableName] {
        try tablesInScope().filter(wanted).filter { table in
            guard try schemaUsable(table) else { return false }
            let result = try sql.execute("SELECT relreplident FROM pg_class WHERE oid = to_regclass($1)", [table.sql])
            return result.rowCount == 1 && result.string(0, 0) != "f"
        }
    }

    func slot() throws -> [CheckFinding] {
        if let status = try source.slotStatus(sql) {
            if status.plugin != "pgoutput" {
                return [CheckFinding(.error, subject, "slot \(source.slot) uses plugin \(status.plugin), not pgoutput",
                                     fix: "SELECT pg_drop_replication_slot('\(source.slot)'); -- or choose another slot name")]
            }
            return [CheckFinding(status.active ? .warning : .ok, subject,
                                 "slot \(source.slot) exists" + (status.active ? " and is in use by a running process" : ""))]
        }
        let free = try sql.execute("""
            SELECT current_setting('max_replication_slots')::int - (SELECT count(*) FROM pg_replication_slots),
                   current_setting('max_wal_senders')::int - (SELECT count(*) FROM pg_stat_replication)
            """)
        let slots = Int(free.string(0, 0) ?? "0") ?? 0
        let senders = Int(free.string(0, 1) ?? "0") ?? 0
        if slots <= 0 {
            return [CheckFinding(.error, subject, "no free replication slot for \(source.slot) (max_replication_slots is used up)",
                                 fix: "ALTER SYSTEM SET max_replication_slots = <more>; -- then restart PostgreSQL")]
        }
        if senders <= 0 {
            return [CheckFinding(.error, subject, "no free WAL sender (max_wal_senders is used up)",
                                 fix: "ALTER SYSTEM SET max_wal_senders = <more>; -- then restart PostgreSQL")]
        }
        return [CheckFinding(.ok, subject, "slot \(source.slot) will be created (\(slots) free)")]
    }
}

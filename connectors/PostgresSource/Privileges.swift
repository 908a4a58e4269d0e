import Foundation
import SluiceKit
import SluiceWire

/// The privileges `run` will use at the source, probed the way PostgreSQL will check them, each
/// missing one with the statement that grants it. `check` prints them; `run` stops with the first
/// (exit 2) before it creates anything.
extension Prerequisites {
    struct Role {
        let name: String
        let superuser: Bool
        var quoted: String { PGConnection.quoteIdentifier(name) }
    }

    func currentRole() throws -> Role {
        let result = try sql.execute("SELECT current_user, rolsuper FROM pg_roles WHERE rolname = current_user")
        return Role(name: result.string(0, 0) ?? "?", superuser: result.string(0, 1) == "t")
    }

    func privileges() throws -> [CheckFinding] {
        let role = try currentRole()
        if role.superuser { return [CheckFinding(.ok, subject, "role \(role.name) is a superuser: every privilege is there (a role with REPLICATION and SELECT is enough)")] }
        var findings: [CheckFinding] = []
        let name = source.publication
        let quotedPublication = PGConnection.quoteIdentifier(name)
        if !(try publicationExists()) {
            if source.allTables {
                findings.append(CheckFinding(.error, subject, """
                    role \(role.name) cannot create publication \(name) FOR ALL TABLES: PostgreSQL allows that to superusers only
                    """, fix: "have a superuser run: CREATE PUBLICATION \(quotedPublication) FOR \(publicationTarget);"))
            } else if let tables = source.tables {
                let database = try sql.execute("SELECT current_database(), has_database_privilege(current_database(), 'CREATE')")
                if database.string(0, 1) != "t" {
                    let db = PGConnection.quoteIdentifier(database.string(0, 0) ?? "?")
                    findings.append(CheckFinding(.error, subject, """
                        role \(role.name) may not create publication \(name): creating one needs CREATE on database \
                        \(database.string(0, 0) ?? "?")
                        """, fix: "GRANT CREATE ON DATABASE \(db) TO \(role.quoted); -- or have an admin run: CREATE PUBLICATION \(quotedPublication) FOR \(publicationTarget);"))
                }
                let foreign = try notOwned(tables)
                if !foreign.isEmpty {
                    findings.append(CheckFinding(.error, subject, """
                        role \(role.name) may not create publication \(name) for \(foreign.map(\.description).joined(separator: ", ")): \
                        PostgreSQL lets only a table's owner add it to a publication
                        """, fix: "have the owner (or a superuser) run: CREATE PUBLICATION \(quotedPublication) FOR \(publicationTarget);"))
                }
            }
        } else if state.publicationCreated, let tables = source.tables {
            // Sluice adds configured tables to the publication it created: that takes owning each.
            let missing = tables.filter { !((try? publishedTables().contains($0)) ?? true) }
            let foreign = try notOwned(missing)
            if !foreign.isEmpty {
                findings.append(CheckFinding(.error, subject, """
                    role \(role.name) may not add \(foreign.map(\.description).joined(separator: ", ")) to publication \(name): \
                    PostgreSQL lets only a table's owner add it to a publication
                    """, fix: "have the owner run: ALTER PUBLICATION \(quotedPublication) ADD TABLE \(foreign.map(\.sql).joined(separator: ", "));"))
            }
        }
        let emit = try sql.execute("SELECT has_function_privilege('pg_logical_emit_message(boolean,text,text)', 'EXECUTE')")
        if emit.string(0, 0) != "t" {
            findings.append(CheckFinding(.error, subject, """
                role \(role.name) may not call pg_logical_emit_message, which heartbeats and backfill watermarks use
                """, fix: "GRANT EXECUTE ON FUNCTION pg_logical_emit_message(boolean, text, text) TO \(role.quoted);"))
        }
        if findings.isEmpty, try tablesInScope().allSatisfy({ try mayRead($0) != false }) {
            findings.append(CheckFinding(.ok, subject, "role \(role.name) has every privilege run will use"))
        }
        return findings
    }

    /// Without USAGE on a schema PostgreSQL will not even look its tables up: each such schema with
    /// its GRANT. The other probes leave those tables out (they would fail with "permission denied
    /// for schema"), so this comes before them.
    func schemaUsage() throws -> [CheckFinding] {
        let role = try currentRole()
        guard !role.superuser else { return [] }
        let hidden = try schemasWithoutUsage()
        return hidden.keys.sorted().map { schema in
            let tables = hidden[schema]!.map(\.description).joined(separator: ", ")
            return CheckFinding(.error, subject, "role \(role.name) may not use schema \(schema) (USAGE), so it cannot read \(tables)",
                                fix: "GRANT USAGE ON SCHEMA \(PGConnection.quoteIdentifier(schema)) TO \(role.quoted);")
        }
    }

    /// The configured tables' schemas the current role may not use, with their tables (none for a
    /// superuser; a schema that does not exist is left to tables()).
    func schemasWithoutUsage() throws -> [String: [TableName]] {
        var hidden: [String: [TableName]] = [:]
        for table in source.tables ?? [] {
            let usage = try sql.execute("SELECT has_schema_privilege(oid, 'USAGE') FROM pg_namespace WHERE nspname = $1", [table.schema])
            if usage.rowCount == 1, usage.string(0, 0) != "t" { hidden[table.schema, default: []].append(table) }
        }
        return hidden
    }

    /// Whether the current role may SELECT from `table` (nil: not found, or its schema is hidden).
    func mayRead(_ table: TableName) throws -> Bool? {
        guard try schemaUsable(table) else { return nil }
        let read = try sql.execute("SELECT has_table_privilege(c.oid, 'SELECT') FROM pg_class c WHERE c.oid = to_regclass($1)", [table.sql])
        return read.rowCount == 1 ? read.string(0, 0) == "t" : nil
    }

    /// Whether PostgreSQL lets the current role look up names in `table`'s schema (true when the
    /// schema does not exist: the lookup then just finds nothing).
    func schemaUsable(_ table: TableName) throws -> Bool {
        let usage = try sql.execute("SELECT has_schema_privilege(oid, 'USAGE') FROM pg_namespace WHERE nspname = $1", [table.schema])
        return usage.rowCount == 0 || usage.string(0, 0) == "t"
    }

    /// The tables of `tables` the current role does not own (nor is a member of the owner's role).
    func notOwned(_ tables: [TableName]) throws -> [TableName] {
        try tables.filter { table in
            // A table in a schema the role may not use is reported by privileges().
            guard try schemaUsable(table) else { return false }
            let owned = try sql.execute("SELECT pg_has_role(relowner, 'USAGE') FROM pg_class WHERE oid = to_regclass($1)", [table.sql])
            // A table that does not exist is reported by tables().
            return owned.rowCount == 1 && owned.string(0, 0) != "t"
        }
    }

    /// Whether `run` will copy the tables' rows before streaming: the first run with `snapshot: initial`.
    func willSnapshot() throws -> Bool {
        guard source.initialSnapshot else { return false }
        return try source.slotStatus(sql) == nil
    }
}

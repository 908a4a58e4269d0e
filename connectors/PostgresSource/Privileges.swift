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
        if findings.isEmpty { findings.append(CheckFinding(.ok, subject, "role \(role.name) has every privilege run will use")) }
        return findings
    }

    /// The tables of `tables` the current role does not own (nor is a member of the owner's role).
    func notOwned(_ tables: [TableName]) throws -> [TableName] {
        try tables.filter { table in
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

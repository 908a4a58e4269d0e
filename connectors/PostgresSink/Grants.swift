import Foundation
import SluiceWire

/// The statement that grants what a "permission denied" error (SQLSTATE 42501) says is missing, so
/// `check` and `run` print the same fix.
enum Grants {
    static func fix(for message: String, role: String) -> String? {
        let quotedRole = PGConnection.quoteIdentifier(role)
        func object(after prefix: String) -> String? {
            guard let range = message.range(of: prefix) else { return nil }
            let rest = message[range.upperBound...]
            let name = rest.prefix { !$0.isWhitespace && $0 != "," && $0 != ";" }
            return name.isEmpty ? nil : String(name)
        }
        if let schema = object(after: "permission denied for schema ") {
            return "GRANT USAGE, CREATE ON SCHEMA \(PGConnection.quoteIdentifier(schema)) TO \(quotedRole);"
        }
        if let table = object(after: "permission denied for table ") {
            return "GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON TABLE \(table) TO \(quotedRole); -- in its schema"
        }
        if let database = object(after: "permission denied for database ") {
            return "GRANT CREATE ON DATABASE \(PGConnection.quoteIdentifier(database)) TO \(quotedRole);"
        }
        if let table = object(after: "must be owner of table ") {
            return "ALTER TABLE \(table) OWNER TO \(quotedRole); -- Sluice alters the tables it replicates into (new columns)"
        }
        if let type = object(after: "must be owner of type ") {
            return "ALTER TYPE \(type) OWNER TO \(quotedRole); -- Sluice adds enum labels the source gained"
        }
        return nil
    }
}

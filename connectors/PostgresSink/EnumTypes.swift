import Logging
import SluiceKit
import SluiceWire

/// Creates the source's enum types in the target and adds the labels they gain (`ALTER TYPE … ADD
/// VALUE` at the source), on a connection of its own that commits each statement: a label added
/// inside the sink's batch transaction could not be used before that transaction commits (PostgreSQL
/// refuses an "unsafe use of new value"). A type that already exists and is not an enum is left alone.
final class EnumTypes {
    private let url: String
    private let applicationName: String
    private var connection: PGConnection?
    /// Labels known to exist, by quoted qualified name.
    private var known: [String: Set<String>] = [:]

    init(url: String, applicationName: String) {
        self.url = url
        self.applicationName = applicationName
    }

    /// Makes `type` exist in the target with at least its labels, in the source's order where it can.
    func ensure(_ type: RelationSchema.EnumType, logger: Logger) throws {
        let qualified = PGConnection.quoteIdentifier(type.schema) + "." + PGConnection.quoteIdentifier(type.name)
        if let labels = known[qualified], labels.isSuperset(of: type.labels) { return }
        let connection = try open()
        var found = try lookUp(qualified, on: connection)
        if case .missing = found {
            if type.schema != "public" {
                try connection.execute("CREATE SCHEMA IF NOT EXISTS \(PGConnection.quoteIdentifier(type.schema))")
            }
            let list = type.labels.map(PGConnection.quoteLiteral).joined(separator: ", ")
            do {
                try connection.execute("CREATE TYPE \(qualified) AS ENUM (\(list))")
                logger.info("created enum type", metadata: ["type": "\(type.schema).\(type.name)"])
            } catch let error as PGError where error.sqlState == "42710" {
                // Created meanwhile by another sink writing to this database: extended below.
            }
            found = try lookUp(qualified, on: connection)
        }
        guard case var .labels(existing) = found else {
            known[qualified] = Set(type.labels)  // another kind of type of that name: used as it is
            return
        }
        for (index, label) in type.labels.enumerated() where !existing.contains(label) {
            var sql = "ALTER TYPE \(qualified) ADD VALUE IF NOT EXISTS \(PGConnection.quoteLiteral(label))"
            if index > 0 {
                sql += " AFTER \(PGConnection.quoteLiteral(type.labels[index - 1]))"
            } else if let next = type.labels.dropFirst().first(where: existing.contains) {
                sql += " BEFORE \(PGConnection.quoteLiteral(next))"
            }
            try connection.execute(sql)
            existing.insert(label)
            logger.info("added enum label", metadata: ["type": "\(type.schema).\(type.name)", "label": "\(label)"])
        }
        known[qualified] = existing
    }

    func close() {
        connection = nil
        known.removeAll()
    }

    private func open() throws -> PGConnection {
        if let connection, connection.isConnected { return connection }
        let fresh = try PGConnection(url: url, applicationName: applicationName)
        // Never wait long on a lock the sink's own open batch might hold.
        try fresh.execute("SET lock_timeout = '10s'")
        connection = fresh
        return fresh
    }

    private enum Found {
        case missing, notAnEnum
        case labels(Set<String>)
    }

    private func lookUp(_ qualified: String, on connection: PGConnection) throws -> Found {
        let type = try connection.execute("SELECT typtype::text FROM pg_type WHERE oid = to_regtype($1)", [qualified])
        guard type.rowCount == 1 else { return .missing }
        guard type.string(0, 0) == "e" else { return .notAnEnum }
        let result = try connection.execute("SELECT enumlabel FROM pg_enum WHERE enumtypid = to_regtype($1)::oid", [qualified])
        return .labels(Set((0..<result.rowCount).compactMap { result.string($0, 0) }))
    }
}

import PGOutput
import SluiceKit
import SluiceWire

/// Completes pgoutput's Relation messages with what they lack: type names as `format_type` prints
/// them, the primary key when the replica identity is not the primary key, NOT NULL, and the labels
/// of enum types (a target that lacks the type creates it).
///
/// The catalog is read as it is now, not as it was when the decoded change was made: an enum may
/// list labels added later (harmless), and a label renamed since is added back as the stream uses it.
final class RelationCatalog {
    private let connection: PGConnection
    private var typeNames: [TypeKey: String] = [:]
    private var enumLabels: [UInt32: [String]] = [:]

    struct TypeKey: Hashable {
        let oid: UInt32
        let modifier: Int32
    }

    init(connection: PGConnection) {
        self.connection = connection
    }

    func schema(for relation: PGOutput.Relation) throws -> RelationSchema {
        let identity = RelationSchema.ReplicaIdentity(rawValue: relation.replicaIdentity) ?? .default
        // Under the default identity pgoutput's key flags are exactly the primary key.
        let primaryKey: Set<String> = identity == .default
            ? Set(relation.columns.filter(\.isKey).map(\.name))
            : try primaryKeyColumns(relation.oid)
        let names = try typeNames(for: relation.columns.map { TypeKey(oid: $0.typeOID, modifier: $0.typeModifier) })
        let details = try Self.columnDetails(relation.oid, on: connection)
        var columns = relation.columns.enumerated().map { index, column in
            RelationSchema.Column(name: column.name, typeOID: column.typeOID, typeModifier: column.typeModifier,
                                  typeName: names[index], isPrimaryKey: primaryKey.contains(column.name),
                                  isReplicaIdentity: column.isKey, existingRowsValue: details[column.name]?.missing,
                                  isNotNull: details[column.name]?.notNull ?? false)
        }
        for index in columns.indices {
            guard let type = details[columns[index].name]?.enumType else { continue }
            columns[index].enumType = try enumType(type)
        }
        return RelationSchema(id: relation.oid, schema: relation.namespace.isEmpty ? "pg_catalog" : relation.namespace,
                              table: relation.name, replicaIdentity: identity, columns: columns)
    }

    /// `schema` with the labels of its enum columns read again, plus any of `used` the catalog does not
    /// list; nil when nothing changed. Called when a change uses a label the schema lacks.
    func refreshingEnums(_ schema: RelationSchema, used: [Int: Set<String>]) throws -> RelationSchema? {
        var refreshed = schema
        for (index, values) in used {
            guard var type = schema.columns[index].enumType else { continue }
            let oid = try enumOID(type)
            enumLabels[oid] = nil
            var labels = try labels(of: oid)
            for value in values.sorted() where !labels.contains(value) { labels.append(value) }
            enumLabels[oid] = labels
            type.labels = labels
            refreshed.columns[index].enumType = type
        }
        return refreshed == schema ? nil : refreshed
    }

    /// Forgets cached labels: pgoutput sent a Type message (the type may have changed).
    func typeChanged(_ oid: UInt32) { enumLabels[oid] = nil }

    private func enumType(_ type: EnumKey) throws -> RelationSchema.EnumType {
        RelationSchema.EnumType(schema: type.schema, name: type.name, labels: try labels(of: type.oid))
    }

    private func labels(of oid: UInt32) throws -> [String] {
        if let cached = enumLabels[oid] { return cached }
        let labels = try Self.enumLabels(oid, on: connection)
        enumLabels[oid] = labels
        return labels
    }

    private func enumOID(_ type: RelationSchema.EnumType) throws -> UInt32 {
        let name = PGConnection.quoteIdentifier(type.schema) + "." + PGConnection.quoteIdentifier(type.name)
        return UInt32(try connection.execute("SELECT $1::regtype::oid", [name]).string(0, 0) ?? "0") ?? 0
    }

    struct EnumKey {
        let oid: UInt32
        let schema: String
        let name: String
    }

    struct ColumnDetails {
        var notNull: Bool
        /// Values that rows older than an `ADD COLUMN … DEFAULT` take for the column (`attmissingval`).
        var missing: String?
        var enumType: EnumKey?
    }

    /// NOT NULL, the existing-rows value and the enum (of the column or of its array elements) per column.
    static func columnDetails(_ relation: UInt32, on connection: PGConnection) throws -> [String: ColumnDetails] {
        let result = try connection.execute("""
            SELECT a.attname, a.attnotnull, CASE WHEN a.atthasmissing THEN a.attmissingval::text END,
                   e.oid, en.nspname, e.typname
            FROM pg_attribute a
            JOIN pg_type t ON t.oid = a.atttypid
            LEFT JOIN pg_type e ON e.typtype = 'e' AND e.oid = CASE WHEN t.typtype = 'e' THEN t.oid ELSE t.typelem END
            LEFT JOIN pg_namespace en ON en.oid = e.typnamespace
            WHERE a.attrelid = $1::oid AND a.attnum > 0 AND NOT a.attisdropped
            """, [String(relation)])
        var details: [String: ColumnDetails] = [:]
        for row in 0..<result.rowCount {
            guard let name = result.string(row, 0) else { continue }
            let enumKey = result.string(row, 3).flatMap(UInt32.init).map {
                EnumKey(oid: $0, schema: result.string(row, 4) ?? "public", name: result.string(row, 5) ?? "")
            }
            details[name] = ColumnDetails(notNull: result.string(row, 1) == "t",
                                          missing: result.string(row, 2).flatMap(Self.singleElement), enumType: enumKey)
        }
        return details
    }

    static func enumLabels(_ oid: UInt32, on connection: PGConnection) throws -> [String] {
        let result = try connection.execute("SELECT enumlabel FROM pg_enum WHERE enumtypid = $1::oid ORDER BY enumsortorder",
                                            [String(oid)])
        return (0..<result.rowCount).compactMap { result.string($0, 0) }
    }

    /// The schema of a table as the catalog (or the snapshot the session runs in) sees it,
    /// with the columns pgoutput would send.
    static func schema(ofTable qualifiedName: String, on connection: PGConnection) throws -> RelationSchema? {
        let result = try connection.execute("""
            SELECT c.oid, n.nspname, c.relname, c.relreplident, a.attname, a.atttypid, a.atttypmod,
                   format_type(a.atttypid, a.atttypmod),
                   coalesce(a.attnum = ANY(pk.indkey), false),
                   CASE c.relreplident
                     WHEN 'f' THEN true
                     WHEN 'd' THEN coalesce(a.attnum = ANY(pk.indkey), false)
                     WHEN 'i' THEN coalesce(a.attnum = ANY(ri.indkey), false)
                     ELSE false END
            FROM pg_class c
            JOIN pg_namespace n ON n.oid = c.relnamespace
            JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
            LEFT JOIN pg_index pk ON pk.indrelid = c.oid AND pk.indisprimary
            LEFT JOIN pg_index ri ON ri.indrelid = c.oid AND ri.indisreplident
            WHERE c.oid = $1::regclass
            ORDER BY a.attnum
            """, [qualifiedName])
        guard result.rowCount > 0 else { return nil }
        var columns: [RelationSchema.Column] = []
        for row in 0..<result.rowCount {
            columns.append(RelationSchema.Column(
                name: result.string(row, 4)!, typeOID: UInt32(result.string(row, 5)!)!,
                typeModifier: Int32(result.string(row, 6)!)!, typeName: result.string(row, 7)!,
                isPrimaryKey: result.string(row, 8) == "t", isReplicaIdentity: result.string(row, 9) == "t"))
        }
        let identity = RelationSchema.ReplicaIdentity(rawValue: UInt8(ascii: Unicode.Scalar(result.string(0, 3)!.utf8.first!))) ?? .default
        let oid = UInt32(result.string(0, 0)!)!
        let details = try columnDetails(oid, on: connection)
        for index in columns.indices {
            guard let detail = details[columns[index].name] else { continue }
            columns[index].isNotNull = detail.notNull
            if let type = detail.enumType {
                columns[index].enumType = RelationSchema.EnumType(schema: type.schema, name: type.name,
                                                                  labels: try enumLabels(type.oid, on: connection))
            }
        }
        return RelationSchema(id: oid, schema: result.string(0, 1)!,
                              table: result.string(0, 2)!, replicaIdentity: identity, columns: columns)
    }

    /// The element of a one-element array literal (`{x}`, `{"a b"}`); nil for `{NULL}` or anything else.
    static func singleElement(_ literal: String) -> String? {
        guard literal.hasPrefix("{"), literal.hasSuffix("}") else { return nil }
        let inner = literal.dropFirst().dropLast()
        guard inner.first == "\"" else { return inner == "NULL" ? nil : String(inner) }
        guard inner.count >= 2, inner.last == "\"" else { return nil }
        var out = ""
        var escaped = false
        for character in inner.dropFirst().dropLast() {
            if escaped {
                out.append(character)
                escaped = false
            } else if character == "\\" {
                escaped = true
            } else {
                out.append(character)
            }
        }
        return out
    }

    private func primaryKeyColumns(_ relation: UInt32) throws -> Set<String> {
        let result = try connection.execute("""
            SELECT a.attname FROM pg_index i
            JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
            WHERE i.indrelid = $1::oid AND i.indisprimary
            """, [String(relation)])
        return Set((0..<result.rowCount).compactMap { result.string($0, 0) })
    }

    private func typeNames(for keys: [TypeKey]) throws -> [String] {
        let missing = Array(Set(keys.filter { typeNames[$0] == nil }))
        if !missing.isEmpty {
            let oids = "{" + missing.map { String($0.oid) }.joined(separator: ",") + "}"
            let modifiers = "{" + missing.map { String($0.modifier) }.joined(separator: ",") + "}"
            let result = try connection.execute(
                "SELECT format_type(o, m) FROM unnest($1::oid[], $2::int4[]) WITH ORDINALITY AS t(o, m, n) ORDER BY n",
                [oids, modifiers])
            for (index, key) in missing.enumerated() where index < result.rowCount {
                typeNames[key] = result.string(index, 0) ?? "text"
            }
        }
        return keys.map { typeNames[$0] ?? "text" }
    }
}

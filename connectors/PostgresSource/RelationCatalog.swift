import PGOutput
import SluiceKit
import SluiceWire

/// Completes pgoutput's Relation messages with what they lack: type names as `format_type` prints
/// them, and the primary key when the replica identity is not the primary key.
final class RelationCatalog {
    private let connection: PGConnection
    private var typeNames: [TypeKey: String] = [:]

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
        let missing = try missingValues(relation.oid)
        let columns = relation.columns.enumerated().map { index, column in
            RelationSchema.Column(name: column.name, typeOID: column.typeOID, typeModifier: column.typeModifier,
                                  typeName: names[index], isPrimaryKey: primaryKey.contains(column.name),
                                  isReplicaIdentity: column.isKey, existingRowsValue: missing[column.name])
        }
        return RelationSchema(id: relation.oid, schema: relation.namespace.isEmpty ? "pg_catalog" : relation.namespace,
                              table: relation.name, replicaIdentity: identity, columns: columns)
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
        return RelationSchema(id: UInt32(result.string(0, 0)!)!, schema: result.string(0, 1)!,
                              table: result.string(0, 2)!, replicaIdentity: identity, columns: columns)
    }

    /// Values that rows older than an `ADD COLUMN … DEFAULT` take for that column (`attmissingval`).
    private func missingValues(_ relation: UInt32) throws -> [String: String] {
        let result = try connection.execute(
            "SELECT attname, attmissingval::text FROM pg_attribute WHERE attrelid = $1::oid AND atthasmissing AND NOT attisdropped AND attnum > 0",
            [String(relation)])
        var values: [String: String] = [:]
        for row in 0..<result.rowCount {
            if let name = result.string(row, 0), let array = result.string(row, 1), let value = Self.singleElement(array) {
                values[name] = value
            }
        }
        return values
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

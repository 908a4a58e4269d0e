import Foundation
import SluiceKit
import SluiceWire

/// A captured table as verify reads it: its columns in the source's order, its primary key, and
/// the name the sink gives it.
struct TableShape {
    struct Column {
        let name: String
        let typeOID: UInt32
        /// `format_type()`: what key literals are cast to.
        let typeName: String
        var typeClass: TypeClass { TypeClass(oid: typeOID) }
        var isFloat4: Bool { typeOID == 700 }
    }

    let table: TableName
    let columns: [Column]
    /// Indices of the primary-key columns; empty for a keyless table (compared as a multiset).
    let key: [Int]

    var isKeyed: Bool { !key.isEmpty }

    /// Only `names` (a publication's column list), in the table's order; keyless when the list
    /// leaves out a key column.
    func restricted(to names: [String]) -> TableShape {
        let kept = columns.indices.filter { names.contains(columns[$0].name) }
        let keyed = key.allSatisfy { kept.contains($0) }
        return TableShape(table: table, columns: kept.map { columns[$0] },
                          key: keyed ? key.compactMap { kept.firstIndex(of: $0) } : [])
    }

    /// What the publication carries of the table: its row filter and column list (PostgreSQL 15+).
    static func publication(_ name: String, table: TableName, on connection: PGConnection) throws -> (filter: String?, columns: [String]?) {
        guard connection.serverVersion >= 150000 else { return (nil, nil) }
        let result = try connection.execute("""
            SELECT rowfilter, array_to_json(attnames)::text,
                   (SELECT count(*) FROM pg_attribute WHERE attrelid = to_regclass($2) AND attnum > 0 AND NOT attisdropped AND attgenerated = '')
            FROM pg_publication_tables WHERE pubname = $1 AND schemaname = $3 AND tablename = $4
            """, [name, table.sql, table.schema, table.table])
        guard result.rowCount == 1 else { return (nil, nil) }
        let names = result.string(0, 1).flatMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String] }
        let all = Int(result.string(0, 2) ?? "0") ?? 0
        return (result.string(0, 0), names.flatMap { $0.count < all ? $0 : nil })
    }

    /// Reads the shape from the source catalog; nil when the table does not exist.
    static func read(_ table: TableName, on connection: PGConnection) throws -> TableShape? {
        let result = try connection.execute("""
            SELECT a.attname, a.atttypid::int8::text, format_type(a.atttypid, a.atttypmod),
                   coalesce(a.attnum = ANY(pk.indkey), false)
            FROM pg_attribute a
            LEFT JOIN pg_index pk ON pk.indrelid = a.attrelid AND pk.indisprimary
            WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
            ORDER BY a.attnum
            """, [table.sql])
        guard result.rowCount > 0 else { return nil }
        var columns: [Column] = []
        var key: [Int] = []
        for row in 0..<result.rowCount {
            columns.append(Column(name: result.string(row, 0) ?? "", typeOID: UInt32(result.string(row, 1) ?? "0") ?? 0,
                                  typeName: result.string(row, 2) ?? "text"))
            if result.string(row, 3) == "t" { key.append(row) }
        }
        return TableShape(table: table, columns: columns, key: key)
    }

    /// The SQLite sink's table name: `T` for `public.T`, `schema_T` otherwise.
    var sqliteName: String { table.schema == "public" ? table.table : "\(table.schema)_\(table.table)" }

    /// Whether a key column sorts the same in PostgreSQL and in SQLite's storage of it. Others are
    /// ordered by their text form, byte by byte (`COLLATE "C"`), which is how SQLite compares TEXT.
    func sortsNatively(_ column: Int) -> Bool {
        switch columns[column].typeClass {
        case .integer, .float, .boolean, .bytes: return true
        case .numeric, .json, .text: return false
        }
    }
}

/// A key range of a keyed table: after `lower` (exclusive) up to `upper` (inclusive); nil is open.
struct KeyRange: CustomStringConvertible {
    var lower: [String]?
    var upper: [String]?

    var description: String {
        "(" + (lower?.joined(separator: ",") ?? "start") + " .. " + (upper?.joined(separator: ",") ?? "end") + "]"
    }
}

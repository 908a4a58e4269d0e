import SluiceKit
import SluiceWire

/// What a sink should hold of one source table, as verify compares it (DESIGN.md "What reaches each
/// target"): the kept columns (excluded ones are not compared), each as the source computes it with
/// the sink's mask applied (`hash`: HMAC-SHA256 in SQL with PostgreSQL's `sha256()`, `redact`: NULL),
/// the target table's name (`rename`), and the rows that reach it (the sink's `where`, evaluated by
/// PostgreSQL: the predicate language is SQL's expression syntax). Metadata columns the sink adds
/// are not compared (verify reads the columns it names).
struct SinkView {
    /// The source side: kept columns, the source table.
    let source: TableShape
    /// The target side: the same columns under the target's name, masked ones as text.
    let target: TableShape
    /// Per kept column, the SQL the source computes it with.
    let expressions: [String]
    /// The sink's row predicate, as SQL at the source.
    let filter: String?
    /// What transforms apply, for the output ("rename, columns, where"); empty when none.
    let transformed: [String]

    /// Why the table cannot be compared as the sink holds it, or nil.
    static func unsupported(_ transforms: SinkTransforms, _ table: TableName) -> String? {
        if transforms.mode != .mirror {
            return "the sink keeps history (mode: \(transforms.mode.rawValue)): an append-only changelog has no source rows to compare with"
        }
        if transforms.deletes != .apply {
            return "the sink has deletes: \(transforms.deletes.rawValue): the target keeps rows the source deleted, so it cannot equal the source"
        }
        if !transforms.includes(table) { return "not mirrored by this sink (its tables: leaves it out)" }
        return nil
    }

    /// A table compared as it is, both sides.
    init(plain shape: TableShape) {
        source = shape
        target = shape
        expressions = shape.columns.map { PGConnection.quoteIdentifier($0.name) }
        filter = nil
        transformed = []
    }

    init(_ shape: TableShape, transforms: SinkTransforms) throws(VerifyUsageError) {
        let table = shape.table
        let rules = transforms.columns[table]
        let excluded = rules?.exclude ?? []
        let kept = shape.restricted(to: shape.columns.map(\.name).filter { !excluded.contains($0) })
        var masks: [String: SinkTransforms.Mask] = [:]
        for (column, mask) in rules?.mask ?? [] { masks[column] = mask }
        for index in kept.key where masks[kept.columns[index].name] != nil {
            throw VerifyUsageError(description: """
                key column \(kept.columns[index].name) of \(table) is masked at the target: its rows cannot be matched with the source's
                """)
        }
        source = kept
        expressions = kept.columns.map { column in
            let quoted = PGConnection.quoteIdentifier(column.name)
            switch masks[column.name] {
            case .redact?: return "NULL::text"
            case .hash?: return Self.hmacSQL(quoted, key: transforms.maskKey ?? [])
            case let .keep(count)?: return "left(\(quoted)::text, \(count))"
            case nil: return quoted
            }
        }
        let targetColumns = kept.columns.map { column in
            masks[column.name] == nil ? column : TableShape.Column(name: column.name, typeOID: 25, typeName: "text")
        }
        target = TableShape(table: transforms.target(of: table), columns: targetColumns, key: kept.key)
        filter = transforms.predicates[table]?.text
        transformed = [("rename", transforms.rename[table] != nil), ("columns", transforms.columns[table] != nil),
                       ("where", filter != nil)].filter(\.1).map(\.0)
    }

    /// The `hash` mask in SQL: lowercase hex HMAC-SHA256 of the value's text in UTF-8 (RFC 2104:
    /// sha256 of the outer pad and sha256 of the inner pad and the message); NULL stays NULL.
    static func hmacSQL(_ quoted: String, key: [UInt8]) -> String {
        var block = key.count > 64 ? SHA256.digest(key) : key
        block += [UInt8](repeating: 0, count: 64 - block.count)
        func hex(_ bytes: [UInt8]) -> String { "'\\x" + bytes.map { String($0, radix: 16).leftPadded(2) }.joined() + "'::bytea" }
        let inner = hex(block.map { $0 ^ 0x36 }), outer = hex(block.map { $0 ^ 0x5c })
        return "CASE WHEN \(quoted) IS NULL THEN NULL ELSE encode(sha256(\(outer) || sha256(\(inner) || "
            + "convert_to(concat(\(quoted)), 'UTF8'))), 'hex') END"
    }
}

private extension String {
    func leftPadded(_ width: Int) -> String { String(repeating: "0", count: max(0, width - count)) + self }
}

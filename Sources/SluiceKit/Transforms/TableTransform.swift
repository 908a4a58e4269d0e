/// The transforms of one source table for one sink, built when the table's schema is first seen
/// (and again when it changes): the target schema, and how each change becomes the change the sink
/// applies. Pure: no I/O, the same input always gives the same output, so a replay after a crash
/// yields the same target. A class, so the per-change call shares it instead of copying its fields.
///
/// - Mirror: kept columns (excluded ones dropped, hashed ones become text), then `_sluice_<name>`
///   metadata columns, then `_sluice_deleted`/`_sluice_deleted_at` under `deletes: soft`.
/// - History: a keyless table of `_sluice_op`, `_sluice_lsn`, `_sluice_xid`, `_sluice_commit_time`
///   and the kept columns; every change becomes one inserted row (the old row for deletes).
public final class TableTransform: Sendable {
    public let source: RelationSchema
    public let target: RelationSchema
    /// Source column indices the target keeps, in order.
    let kept: [Int]
    let masks: [Int: SinkTransforms.Mask]
    let predicate: BoundPredicate?
    /// The predicate's fast form (``ColumnTests``), when it has one.
    let columnTests: ColumnTests?
    public let rules: SinkTransforms
    let hmac: HMACSHA256?
    /// Nothing changes the tuples: the sink gets them as they are, under the target's name.
    let passesTuples: Bool
    /// Per source column, what the target gets of it (``TableTransform/mirroredRow(_:_:lsn:_:)``).
    let columnPlans: [ColumnPlan]
    /// Per source column, the characters a `keep N` mask keeps (0 for the others).
    let keptCharacters: [Int]
    let hashedColumns: Int
    /// The most a target row can be longer than its source tuple, besides the commit time it holds
    /// (twice at most): a hash is 69 bytes, an added column's kind, length and text at most 22 (an LSN).
    let rowSlack: Int
    /// What an old row holds in the columns the sink adds: NULL, or "unchanged" for a keyless target,
    /// whose old row is matched on every column it carries (the old row's metadata are not known).
    let oldRowAddedValue: UInt8

    /// Checks the table's keys against its columns; errors are ``ConnectorError/misconfigured(_:)``
    /// naming the configuration key.
    public init(source: RelationSchema, transforms rules: SinkTransforms) throws {
        self.source = source
        self.rules = rules
        let table = TableName(schema: source.schema, table: source.table)
        let names = source.columns.map(\.name)
        func fail(_ key: String, _ message: String) -> ConnectorError {
            .misconfigured(rules.error(key, message).description)
        }
        let columnRules = rules.columns[table] ?? SinkTransforms.ColumnRules()
        let key = "columns.\(table)"
        for name in columnRules.exclude + columnRules.mask.map(\.column) where !names.contains(name) {
            throw fail(key, "unknown column \(name) in \(table) (columns: \(names.joined(separator: ", ")))")
        }
        // Under REPLICA IDENTITY FULL every column is flagged as identity, but a full old row is matched by
        // the primary key: only it must stay. Otherwise the old key's columns, or every column of a keyless table.
        let identity = source.replicaIdentity == .full && !source.primaryKey.isEmpty ? Set(source.primaryKey)
            : Set(source.identityColumns + source.columns.indices.filter { source.columns[$0].isReplicaIdentity })
        for name in columnRules.exclude {
            let index = names.firstIndex(of: name)!
            if identity.contains(index) {
                throw fail("\(key).exclude", "\(name) identifies rows of \(table) (its key): updates and deletes could not find them; mask it with hash instead")
            }
        }
        let kept = source.columns.indices.filter { !columnRules.exclude.contains(names[$0]) }
        self.kept = kept
        var masks: [Int: SinkTransforms.Mask] = [:]
        for (name, mask) in columnRules.mask { masks[names.firstIndex(of: name)!] = mask }
        for (index, mask) in masks where identity.contains(index) && mask != .hash {
            throw fail("\(key).mask.\(names[index])", """
                \(names[index]) identifies rows of \(table) (its key): masked with \(mask == .redact ? "redact" : "keep"), \
                different rows would share one key at the target; mask it with hash instead
                """)
        }
        self.masks = masks
        columnPlans = source.columns.indices.map { index in
            if columnRules.exclude.contains(names[index]) { return .drop }
            switch masks[index] {
            case nil: return .copy
            case .redact?: return .redact
            case .hash?: return .hash
            case .keep?: return .keep
            }
        }
        keptCharacters = source.columns.indices.map { index in
            if case let .keep(count)? = masks[index] { return count }
            return 0
        }
        hashedColumns = masks.values.filter { $0 == .hash }.count
        let hmac = rules.maskKey.map(HMACSHA256.init(key:))
        self.hmac = hmac
        var bound: BoundPredicate?
        if let predicate = rules.predicates[table] {
            do {
                bound = try predicate.bind(to: source.columns, table: table.description)
            } catch {
                throw fail("where.\(table)", "\"\(predicate.text)\": \(error)")
            }
        }
        predicate = bound
        columnTests = bound?.tests
        if rules.deletes == .soft, rules.mode == .mirror, source.primaryKey.isEmpty {
            throw fail("deletes", "soft needs a primary key to mark a row deleted; \(table) has none (use deletes: apply or ignore for it, or add a key)")
        }
        var columns = kept.map { index in
            var column = source.columns[index]
            // Rows that existed before an ADD COLUMN … DEFAULT get the masked default, as new rows would;
            // a redacted column is NULL at the target, whatever the source declares.
            switch masks[index] {
            case .hash?:
                (column.typeOID, column.typeModifier, column.typeName) = (25, -1, "text")
                column.enumType = nil
                column.existingRowsValue = column.existingRowsValue.map { hmac!.hex(Array($0.utf8)) }
                column.isNotNull = false
            case .redact?: (column.existingRowsValue, column.isNotNull) = (nil, false)
            case let .keep(count)?:
                (column.typeOID, column.typeModifier, column.typeName) = (25, -1, "text")
                column.enumType = nil
                column.existingRowsValue = column.existingRowsValue.map { String(String.UnicodeScalarView($0.unicodeScalars.prefix(count))) }
            case nil: break
            }
            return column
        }
        let added = Self.addedColumns(rules)
        for column in added where names.contains(column.name) {
            throw fail(rules.mode == .history ? "mode" : (rules.metadata.isEmpty ? "deletes" : "metadata"),
                       "\(table) already has a column \(column.name), which this sink would add; rename the column or drop the key")
        }
        var replicaIdentity = source.replicaIdentity
        if rules.mode == .history {
            columns = added + columns.map { column in
                var plain = column
                // A delete's row holds only the old key: the other columns are NULL there.
                (plain.isPrimaryKey, plain.isReplicaIdentity, plain.isNotNull) = (false, false, false)
                return plain
            }
            replicaIdentity = .full
        } else {
            columns += added
        }
        let name = rules.target(of: table)
        target = RelationSchema(id: source.id, schema: name.schema, table: name.table, replicaIdentity: replicaIdentity,
                                columns: columns)
        oldRowAddedValue = columns.contains(where: \.isPrimaryKey) ? Tuple.null : Tuple.unchanged
        rowSlack = 32 + 2 * source.columns.count + 2 * columns.count + 69 * hashedColumns + 24 * (added.count + 4)
        passesTuples = kept.count == source.columns.count && masks.isEmpty && added.isEmpty
    }

    /// The columns a sink adds: history's four first, or metadata then soft-delete ones last.
    static func addedColumns(_ rules: SinkTransforms) -> [RelationSchema.Column] {
        func column(_ name: String, _ oid: UInt32, _ type: String) -> RelationSchema.Column {
            RelationSchema.Column(name: "_sluice_\(name)", typeOID: oid, typeModifier: -1, typeName: type,
                                  isPrimaryKey: false, isReplicaIdentity: false)
        }
        func metadata(_ item: SinkTransforms.Metadata) -> RelationSchema.Column {
            switch item {
            case .lsn: return column("lsn", 3220, "pg_lsn")
            case .commit_time: return column("commit_time", 1184, "timestamp with time zone")
            case .op: return column("op", 25, "text")
            case .xid: return column("xid", 20, "bigint")
            }
        }
        if rules.mode == .history { return [.op, .lsn, .xid, .commit_time].map(metadata) }
        var columns = rules.metadata.map(metadata)
        if rules.deletes == .soft {
            columns += [column("deleted", 16, "boolean"), column("deleted_at", 1184, "timestamp with time zone")]
        }
        return columns
    }
}

/// What the transforms need to know of the transaction a change belongs to.
public struct TransactionInfo: Sendable {
    public var xid: UInt32
    public var commitTime: Micros
    /// The commit time in PostgreSQL's text form for timestamptz, UTC.
    public let commitTimeText: [UInt8]

    /// `withText: false` leaves ``commitTimeText`` empty, for transforms that write no commit time.
    public init(xid: UInt32, commitTime: Micros, withText: Bool = true) {
        self.xid = xid
        self.commitTime = commitTime
        guard withText else {
            commitTimeText = []
            return
        }
        var text = formatMicros(commitTime)
        text = text.replacingAll("T", with: " ")
        if text.hasSuffix("Z") { text.removeLast(); text += "+00" }
        commitTimeText = Array(text.utf8)
    }
}

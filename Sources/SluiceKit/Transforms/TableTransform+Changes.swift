extension TableTransform {
    /// The change the sink applies for `change`, or nil when nothing reaches the target. `warn` is told
    /// about a change the transforms cannot make exact (see docs/transforms.md, "Unchanged values").
    public func transform(_ change: Change, in transaction: TransactionInfo,
                          warn: (String) -> Void = { _ in }) throws -> Change? {
        var buffers = RowBuffers()
        return try transform(change, in: transaction, buffers: &buffers, warn: warn)
    }

    /// The same, writing target rows into `buffers` (a sink's, reused for every change). Rows are
    /// written from the tuples' bytes; values are built only for an update whose unchanged TOASTed
    /// values come from its full old row, and for an update leaving the predicate without an old key.
    public func transform(_ change: Change, in transaction: TransactionInfo, buffers: inout RowBuffers,
                          warn: (String) -> Void = { _ in }) throws -> Change? {
        switch rules.mode {
        case .history: return try history(change, transaction, &buffers)
        case .mirror: return try mirror(change, transaction, &buffers, warn: warn)
        }
    }

    private func mirror(_ change: Change, _ transaction: TransactionInfo, _ buffers: inout RowBuffers,
                        warn: (String) -> Void) throws -> Change? {
        if passesTuples, predicate == nil, rules.deletes == .apply {
            var out = change
            out.relation = target
            return out
        }
        switch change.operation {
        case .truncate:
            if rules.deletes != .apply {
                if rules.deletes == .soft { warn("a TRUNCATE of \(source.qualifiedName) is not applied under deletes: soft (rows stay, not marked deleted)") }
                return nil
            }
            return Change(change, relation: target, oldKind: .none, old: nil, new: nil)
        case .read, .insert:
            let new = change.new!
            guard try passes(new, change) else { return nil }
            return Change(change, relation: target, oldKind: change.oldKind, old: change.old,
                          new: targetRow(new, .mirrored(change.operation), lsn: change.lsn, transaction, into: &buffers.new))
        case .update:
            let new = newRow(change)
            guard try passes(new, change) else {
                // Out of the predicate: gone from the target, as a delete of its old identity would.
                let old = change.old ?? Tuple(values: keyOnly(new.values))
                return deleted(change, kind: change.old == nil ? .key : change.oldKind, old: old, transaction, &buffers)
            }
            if predicate != nil, change.oldKind != .full, new.hasUnchanged {
                warn("""
                    an update of \(source.qualifiedName) left a TOASTed value unchanged (not sent); if it moved the row into \
                    where:, the target lacks the row until an update sends every value (ALTER TABLE \(source.qualifiedName) \
                    REPLICA IDENTITY FULL makes this exact)
                    """)
            }
            let old = change.old.map { targetRow($0, .old, lsn: change.lsn, transaction, into: &buffers.old) }
            return Change(change, relation: target, oldKind: old == nil ? .none : change.oldKind, old: old,
                          new: targetRow(new, .mirrored(.update), lsn: change.lsn, transaction, into: &buffers.new))
        case .delete:
            guard let old = change.old else { return nil }
            // A full old row that never passed the predicate was never at the target.
            if change.oldKind == .full, try !passes(old, change) { return nil }
            return deleted(change, kind: change.oldKind, old: old, transaction, &buffers)
        }
    }

    /// An update's new row; under REPLICA IDENTITY FULL the old row supplies unchanged TOASTed values.
    private func newRow(_ change: Change) -> Tuple {
        let new = change.new!
        guard change.oldKind == .full, let old = change.old, new.hasUnchanged else { return new }
        return Tuple(values: Self.filled(new.values, from: old.values))
    }

    /// A delete (or a move out of the predicate) under the `deletes:` rule.
    private func deleted(_ change: Change, kind: OldValuesKind, old: Tuple, _ transaction: TransactionInfo,
                         _ buffers: inout RowBuffers) -> Change? {
        if rules.deletes == .ignore { return nil }
        let oldRow = targetRow(old, .old, lsn: change.lsn, transaction, into: &buffers.old)
        if rules.deletes == .apply {
            return Change(change, relation: target, operation: .delete, oldKind: kind, old: oldRow, new: nil)
        }
        // An update of the soft-delete (and metadata) columns only: the row keeps its last values.
        return Change(change, relation: target, operation: .update, oldKind: kind, old: oldRow,
                      new: targetRow(nil, .softDeleted, lsn: change.lsn, transaction, into: &buffers.new))
    }

    private func history(_ change: Change, _ transaction: TransactionInfo, _ buffers: inout RowBuffers) throws -> Change? {
        let row: Tuple?
        switch change.operation {
        case .truncate:
            row = nil
        case .read, .insert:
            row = change.new!
            guard try passes(change.new!, change) else { return nil }
        case .update:
            let new = newRow(change)
            let oldPassed = try change.oldKind == .full && change.old.map { try passes($0, change) } == true
            guard try passes(new, change) || oldPassed else { return nil }
            row = new
        case .delete:
            guard let old = change.old else { return nil }
            if change.oldKind == .full, try !passes(old, change) { return nil }
            row = old
        }
        return Change(change, relation: target, operation: .insert, oldKind: .none, old: nil,
                      new: targetRow(row, .history(change.operation), lsn: change.lsn, transaction, into: &buffers.new))
    }

    /// Whether a row passes `where:` (always true without one), decided over the tuple's bytes; the
    /// values are built only when it cannot be decided there.
    private func passes(_ tuple: Tuple, _ change: Change) throws -> Bool {
        // The fast form read in place (binding the predicate to a local would copy it, retains and all).
        if let decided = columnTests?.evaluate(tuple) { return decided == .true }
        guard let predicate else { return true }
        switch predicate.evaluate(tuple) {
        case .true: return true
        case .false, .null: return false
        case .unavailable: return try passes(tuple.values, change)
        }
    }

    /// The same over values. A value the predicate reads that was not sent stops the sink: guessing
    /// would make the target wrong.
    private func passes(_ values: [Value], _ change: Change) throws -> Bool {
        guard let predicate else { return true }
        switch predicate.evaluate(values) {
        case .true: return true
        case .false, .null: return false
        case .unavailable:
            let missing = predicate.referencedColumns.filter { values[$0].isUnchanged }.map { source.columns[$0].name }
            throw ConnectorError.fatal(rules.error("where.\(TableName(schema: source.schema, table: source.table))", """
                cannot decide the predicate for a change at offset \(change.offset): \(missing.joined(separator: ", ")) \
                was not sent (an unchanged TOASTed value); run ALTER TABLE \(source.qualifiedName) REPLICA IDENTITY FULL \
                so updates carry the old row, then restart the sink
                """).description)
        }
    }

    /// The identity of a row from its new values (others null), for a delete built from an update.
    private func keyOnly(_ values: [Value]) -> [Value] {
        var identity = source.columns.indices.filter { source.columns[$0].isReplicaIdentity }
        if identity.isEmpty { identity = source.primaryKey }
        return values.indices.map { identity.contains($0) ? values[$0] : .null }
    }

    static func filled(_ values: [Value], from old: [Value]) -> [Value] {
        guard values.contains(where: \.isUnchanged) else { return values }
        return values.indices.map { values[$0].isUnchanged && $0 < old.count ? old[$0] : values[$0] }
    }
}

extension Tuple {
    /// A tuple of `values` in the topic's layout (including unchanged and binary values).
    public init(values: [Value]) {
        var body = RecordBody()
        body.u16(UInt16(values.count))
        for value in values {
            switch value {
            case .null: body.u8(Tuple.null)
            case .unchanged: body.u8(Tuple.unchanged)
            case let .text(bytes), let .binary(bytes):
                body.u8(value.isText ? Tuple.text : Tuple.binary)
                body.u32(UInt32(bytes.count))
                body.raw(bytes)
            }
        }
        self.init(bytes: body.bytes)
    }
}

extension Change {
    /// `change` as the sink applies it: the target's schema and rows, built at once rather than as a
    /// copy whose fields are then replaced (each replaced field a retain and a release per row).
    init(_ change: Change, relation: RelationSchema, operation: ChangeOperation? = nil, oldKind: OldValuesKind,
         old: Tuple?, new: Tuple?) {
        topic = change.topic
        offset = change.offset
        self.operation = operation ?? change.operation
        self.relation = relation
        lsn = change.lsn
        self.oldKind = oldKind
        self.old = old
        self.new = new
        truncateOptions = change.truncateOptions
    }
}

extension Value {
    var isText: Bool { if case .text = self { return true } else { return false } }
}

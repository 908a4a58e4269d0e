extension TableTransform {
    /// The change the sink applies for `change`, or nil when nothing reaches the target. `warn` is told
    /// about a change the transforms cannot make exact (see docs/transforms.md, "Unchanged values").
    public func transform(_ change: Change, in transaction: TransactionInfo,
                          warn: (String) -> Void = { _ in }) throws -> Change? {
        switch rules.mode {
        case .history: return try history(change, transaction)
        case .mirror: return try mirror(change, transaction, warn: warn)
        }
    }

    private func mirror(_ change: Change, _ transaction: TransactionInfo, warn: (String) -> Void) throws -> Change? {
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
            return output(change, old: nil, new: nil)
        case .read, .insert:
            guard writesRowDirectly(change) else {
                let values = change.new!.values
                guard try passes(values, change) else { return nil }
                return output(change, old: nil, new: row(values, change, transaction, deleted: false))
            }
            if predicate != nil, try !passes(change.new!, change) { return nil }
            var out = change
            out.relation = target
            out.new = mirroredRow(change.new!, change.operation, lsn: change.lsn, transaction)
            return out
        case .update:
            var values = change.new!.values
            let old = change.old?.values
            if change.oldKind == .full, let old { values = Self.filled(values, from: old) }
            guard try passes(values, change) else {
                // Out of the predicate: gone from the target, as a delete of its old identity would.
                let identity = change.old.map { (change.oldKind, $0.values) } ?? (.key, keyOnly(values))
                return deleted(change, kind: identity.0, old: identity.1, transaction)
            }
            if predicate != nil, change.oldKind != .full, values.contains(where: \.isUnchanged) {
                warn("""
                    an update of \(source.qualifiedName) left a TOASTed value unchanged (not sent); if it moved the row into \
                    where:, the target lacks the row until an update sends every value (ALTER TABLE \(source.qualifiedName) \
                    REPLICA IDENTITY FULL makes this exact)
                    """)
            }
            if writesRowDirectly(change) {
                var out = output(change, old: change.old.map { rewriteOld($0.values) }, new: nil)
                out.new = mirroredRow(change.new!, change.operation, lsn: change.lsn, transaction)
                return out
            }
            return output(change, old: change.old.map { rewriteOld($0.values) }, new: row(values, change, transaction, deleted: false))
        case .delete:
            guard let oldTuple = change.old else { return nil }
            let old = oldTuple.values
            // A full old row that never passed the predicate was never at the target.
            if change.oldKind == .full, try !passes(old, change) { return nil }
            return deleted(change, kind: change.oldKind, old: old, transaction)
        }
    }

    /// A delete (or a move out of the predicate) under the `deletes:` rule.
    private func deleted(_ change: Change, kind: OldValuesKind, old: [Value], _ transaction: TransactionInfo) -> Change? {
        switch rules.deletes {
        case .ignore: return nil
        case .apply:
            var out = output(change, old: rewriteOld(old), new: nil)
            out.operation = .delete
            out.oldKind = kind
            return out
        case .soft:
            // An update of the soft-delete (and metadata) columns only: the row keeps its last values.
            let unchanged = [Value](repeating: .unchanged, count: kept.count)
            var out = output(change, old: rewriteOld(old), new: unchanged + extras(.delete, change, transaction, deleted: true))
            out.operation = .update
            out.oldKind = kind
            return out
        }
    }

    private func history(_ change: Change, _ transaction: TransactionInfo) throws -> Change? {
        var values: [Value]
        switch change.operation {
        case .truncate:
            values = [Value](repeating: .null, count: source.columns.count)
        case .read, .insert:
            values = change.new!.values
            guard try passes(values, change) else { return nil }
        case .update:
            values = change.new!.values
            let old = change.old.map(\.values)
            if change.oldKind == .full, let old { values = Self.filled(values, from: old) }
            let oldPassed = try change.oldKind == .full && old.map { try passes($0, change) } == true
            guard try passes(values, change) || oldPassed else { return nil }
        case .delete:
            guard let old = change.old?.values else { return nil }
            if change.oldKind == .full, try !passes(old, change) { return nil }
            values = old
        }
        values = values.map { $0.isUnchanged ? .null : $0 }
        var out = output(change, old: nil, new: extras(change.operation, change, transaction, deleted: false) + rewrite(values))
        out.operation = .insert
        out.oldKind = .none
        return out
    }

    /// ``passes(_:_:)-([Value],_)`` over a tuple's bytes.
    private func passes(_ tuple: Tuple, _ change: Change) throws -> Bool {
        guard let predicate else { return true }
        switch predicate.evaluate(tuple) {
        case .true: return true
        case .false, .null: return false
        case .unavailable: return try passes(tuple.values, change)
        }
    }

    /// Whether a row passes `where:` (always true without one). A value the predicate reads that was
    /// not sent stops the sink: guessing would make the target wrong.
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

    private func row(_ values: [Value], _ change: Change, _ transaction: TransactionInfo, deleted: Bool) -> [Value] {
        rewrite(values) + extras(change.operation, change, transaction, deleted: deleted)
    }

    /// An old row or key in the target's columns (added columns NULL: no old values for them).
    func rewriteOld(_ values: [Value]) -> [Value] {
        let row = rewrite(values)
        return row.count < target.columns.count ? row + [Value](repeating: .null, count: target.columns.count - row.count) : row
    }

    /// Kept columns, masked.
    func rewrite(_ values: [Value]) -> [Value] {
        if passesTuples { return values }
        return kept.map { index in
            let value = values[index]
            switch masks[index] {
            case nil: return value
            case .redact?: return .null
            case .hash?:
                switch value {
                case let .text(bytes), let .binary(bytes): return .text(Array(hmac!.hex(bytes).utf8)[...])
                case .null, .unchanged: return value
                }
            }
        }
    }

    private func extras(_ operation: ChangeOperation, _ change: Change, _ transaction: TransactionInfo, deleted: Bool) -> [Value] {
        func text(_ string: String) -> Value { .text(Array(string.utf8)[...]) }
        let items: [SinkTransforms.Metadata] = rules.mode == .history ? [.op, .lsn, .xid, .commit_time] : rules.metadata
        var values = items.map { item -> Value in
            switch item {
            case .lsn: return text(change.lsn.description)
            case .commit_time: return .text(transaction.commitTimeText[...])
            case .op: return text(operation.name)
            case .xid: return text(String(transaction.xid))
            }
        }
        if rules.mode == .mirror, rules.deletes == .soft {
            values += deleted ? [text("t"), .text(transaction.commitTimeText[...])] : [text("f"), .null]
        }
        return values
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

    private func output(_ change: Change, old: [Value]?, new: [Value]?) -> Change {
        var out = change
        out.relation = target
        out.old = old.map(Tuple.init(values:))
        out.new = new.map(Tuple.init(values:))
        if old == nil { out.oldKind = .none }
        return out
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

extension Value {
    var isText: Bool { if case .text = self { return true } else { return false } }
}

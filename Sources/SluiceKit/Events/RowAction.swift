/// The columns and values that find an existing row in a keyed table.
public struct KeyMatch: Equatable, Sendable {
    /// Column indices (into the relation's columns).
    public var columns: [Int]
    public var values: [Value]

    public init(columns: [Int], values: [Value]) {
        self.columns = columns
        self.values = values
    }
}

/// What a change does to a target table that mirrors the source, decided once for every sink:
/// upsert by key, the delete-then-insert of a key change, a partial update when unchanged TOASTed
/// values were not sent, or, for a keyless table under REPLICA IDENTITY FULL, a change to exactly
/// one row equal to the old one (so a table with duplicate rows stays exact).
public enum RowAction {
    /// Keyed table: insert, or update the row with the same primary key.
    case upsert(Tuple)
    /// Keyless table: add one row.
    case insert(Tuple)
    /// Keyed table: delete the row(s) matching.
    case delete(KeyMatch)
    /// Keyed table whose key changed: delete the old key, then upsert the new row.
    case deleteThenUpsert(KeyMatch, Tuple)
    /// Keyed table, some values unchanged (not sent): set only `present` columns of the row matching.
    case update(present: [Int], new: [Value], match: KeyMatch)
    /// Keyless table: change one row equal to `old` on every column `old` carries.
    case updateOneRow(old: [Value], new: [Value])
    /// Keyless table: delete one row equal to `old` on every column `old` carries.
    case deleteOneRow(old: [Value])
    /// Remove every row (options: 1 cascade, 2 restart identity).
    case truncate(options: UInt8)
    /// Nothing to do (e.g. a delete without old values, which pgoutput never sends).
    case none

    public init(_ change: Change) {
        let relation = change.relation
        let key = relation.primaryKey
        switch change.operation {
        case .truncate:
            self = .truncate(options: change.truncateOptions)
        case .read, .insert:
            self = key.isEmpty ? .insert(change.new!) : .upsert(change.new!)
        case .delete:
            guard let old = change.old else { self = .none; return }
            self = key.isEmpty ? .deleteOneRow(old: old.values)
                : .delete(Self.match(old.values, kind: change.oldKind, relation: relation))
        case .update:
            let new = change.new!
            guard !key.isEmpty else {
                // Without its old row (REPLICA IDENTITY not FULL) the best a mirror can do is add the new one.
                self = change.old.map { .updateOneRow(old: $0.values, new: new.values) } ?? .insert(new)
                return
            }
            let oldMatch = change.old.map { Self.match($0.values, kind: change.oldKind, relation: relation) }
            if new.contains(where: { $0.isUnchanged }) {
                let values = new.values
                self = .update(present: values.indices.filter { !values[$0].isUnchanged }, new: values,
                               match: oldMatch ?? KeyMatch(columns: key, values: key.map { values[$0] }))
            } else if let oldMatch {
                let values = new.values
                let keyChanged = oldMatch.columns != key || oldMatch.values != key.map { values[$0] }
                self = keyChanged ? .deleteThenUpsert(oldMatch, new) : .upsert(new)
            } else {
                self = .upsert(new)
            }
        }
    }

    /// The old row's identity: the replica-identity columns of an old key, or the primary key of a
    /// full old row.
    static func match(_ old: [Value], kind: OldValuesKind, relation: RelationSchema) -> KeyMatch {
        var columns = kind == .key ? relation.columns.indices.filter { relation.columns[$0].isReplicaIdentity } : []
        if columns.isEmpty { columns = relation.primaryKey }
        return KeyMatch(columns: columns, values: columns.map { old[$0] })
    }
}

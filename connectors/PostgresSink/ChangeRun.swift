import SluiceKit
import SluiceWire

/// A run of updates and deletes (and the inserts among them) of one keyed table, applied set-wise.
///
/// Each key holds one entry: the run folds a key's changes in order (a delete after an upsert is a
/// delete, an upsert after a delete replaces it, a partial update — unchanged TOASTed columns not
/// sent — is merged into the row before it), so the entries' effects no longer depend on their order.
/// At the end of the run they are copied into a temporary staging table with their operation and
/// applied by three statements: `DELETE … USING`, `UPDATE … FROM` of the present columns of partial
/// updates, and an `UPDATE … FROM` of whole rows that inserts the keys it did not find (an upsert).
/// A short run goes through the pipeline's prepared statements instead, one per entry.
///
/// What cannot be folded by primary key ends the run and is applied alone, in order: a partial update
/// that changes the key, and a change found by a replica identity other than the primary key.
/// A run ends past `maxRunBytes` too (memory does not grow with transaction size).
struct ChangeRun {
    static let threshold = 128
    static let maxRunBytes = 16 << 20
    static let flushBytes = 1 << 20

    enum Operation: UInt8 {
        case upsert = 117, update = 112, delete = 100   // u, p, d
    }

    struct Entry {
        var operation: Operation
        /// The whole row (upsert), the row with unchanged columns (update), or a row holding the key (delete).
        var row: Tuple
    }

    /// What became of a change offered to the run.
    enum Admission {
        case added
        /// The run must end first (full, or a different key with the same hash); then offer it again.
        case full
        /// Not foldable by key: end the run, then apply the change alone.
        case alone
    }

    let table: PostgresTable
    private var entries: [Entry] = []
    private var slots: [Int: Int] = [:]
    private var bytes = 0

    init(table: PostgresTable) {
        self.table = table
    }

    var isEmpty: Bool { entries.isEmpty }

    mutating func add(_ change: Change) -> Admission {
        guard bytes < Self.maxRunBytes else { return .full }
        switch change.operation {
        case .insert, .read:
            return change.new.map { put(.upsert, $0) } ?? .alone
        case .update:
            guard let new = change.new else { return .alone }
            if change.old == nil && !new.hasUnchanged { return put(.upsert, new) }
            switch RowAction(change) {
            case let .upsert(row):
                return put(.upsert, row)
            case let .update(_, values, match):
                guard match.columns == table.primaryKey, match.values == table.primaryKey.map({ values[$0] }) else { return .alone }
                return put(.update, new)
            case let .deleteThenUpsert(match, row):
                guard match.columns == table.primaryKey else { return .alone }
                let key = keyRow(match.values)
                // Both halves or neither: a different key behind the same hash would split them.
                guard fits(key), fits(row) else { return .full }
                _ = put(.delete, key)
                return put(.upsert, row)
            default:
                return .alone
            }
        case .delete:
            guard case let .delete(match) = RowAction(change), match.columns == table.primaryKey else { return .alone }
            return put(.delete, keyRow(match.values))
        case .truncate:
            return .alone
        }
    }

    /// Whether `row` can join: its key is new to the run, or is the same key as the entry of its hash.
    private func fits(_ row: Tuple) -> Bool {
        guard let hash = table.key(of: row), let slot = slots[hash] else { return true }
        return table.keyBytes(of: entries[slot].row) == table.keyBytes(of: row)
    }

    private mutating func put(_ operation: Operation, _ row: Tuple) -> Admission {
        guard let hash = table.key(of: row) else { return .alone }
        guard let slot = slots[hash] else {
            slots[hash] = entries.count
            entries.append(Entry(operation: operation, row: Self.own(row)))
            bytes += row.bytes.count
            return .added
        }
        guard table.keyBytes(of: entries[slot].row) == table.keyBytes(of: row) else { return .full }
        let before = entries[slot]
        switch (before.operation, operation) {
        case (_, .upsert):
            entries[slot] = Entry(operation: .upsert, row: Self.own(row))
        case (_, .delete):
            // The key columns are what a delete needs; the row before it has them.
            entries[slot].operation = .delete
        case (.delete, .update):
            break   // an update of a row that is gone changes nothing
        case (_, .update):
            // Unchanged columns keep the value the run already has for them.
            let merged = zip(row.values, before.row.values).map { new, old in new.isUnchanged ? old : new }
            entries[slot].row = Tuple(values: merged)
        }
        bytes += row.bytes.count
        return .added
    }

    /// Copies a row out of the reader's buffer (it is kept past the current record).
    private static func own(_ row: Tuple) -> Tuple { Tuple(bytes: Array(row.bytes)) }

    /// A full-width row carrying the key values, NULL elsewhere.
    private func keyRow(_ values: [Value]) -> Tuple {
        var row = [Value](repeating: .null, count: table.columnCount)
        for (column, value) in zip(table.primaryKey, values) { row[column] = value }
        return Tuple(values: row)
    }

    /// Applies the run: set-wise through the staging table, or entry by entry when it is short.
    mutating func finish(pipeline: PGPipeline) throws {
        defer { entries.removeAll(); slots.removeAll(); bytes = 0 }
        guard entries.count >= Self.threshold else {
            for entry in entries { try table.apply(action(entry)) }
            return
        }
        try pipeline.suspend()
        let connection = pipeline.connection
        try table.createChangeStaging(on: connection)
        try connection.beginCopyIn(table.changeCopySQL)
        var encoder = CopyTextEncoder(capacity: Self.flushBytes + (64 << 10))
        var counts: [Operation: Int] = [:]
        for entry in entries {
            counts[entry.operation, default: 0] += 1
            table.encode(entry.row, operation: entry.operation, into: &encoder)
            if encoder.count >= Self.flushBytes { try Self.send(&encoder, on: connection) }
        }
        try Self.send(&encoder, on: connection)
        try connection.endCopy()
        try pipeline.resume()
        for statement in table.changeStatements(deletes: counts[.delete] != nil, updates: counts[.update] != nil,
                                                upserts: counts[.upsert] != nil) {
            try pipeline.send(statement)
        }
        try pipeline.send("TRUNCATE \(table.changeStagingName)")
    }

    /// Sends the encoded rows of the open staging COPY.
    private static func send(_ encoder: inout CopyTextEncoder, on connection: PGConnection) throws {
        try encoder.buffer.withUnsafeBytes { try connection.putCopyData($0) }
        encoder.removeAll()
        Failpoint.hit("sink.postgres.mid_change_copy")
    }

    /// What one entry does, for the prepared-statement path.
    private func action(_ entry: Entry) -> RowAction {
        let values = entry.row.values
        let match = KeyMatch(columns: table.primaryKey, values: table.primaryKey.map { values[$0] })
        switch entry.operation {
        case .upsert: return .upsert(entry.row)
        case .delete: return .delete(match)
        case .update: return .update(present: values.indices.filter { !values[$0].isUnchanged }, new: values, match: match)
        }
    }
}

extension Tuple {
    /// Whether some column is an unchanged TOASTed value (not sent).
    var hasUnchanged: Bool {
        var found = false
        forEachRaw { _, value in if case .unchanged = value { found = true } }
        return found
    }
}

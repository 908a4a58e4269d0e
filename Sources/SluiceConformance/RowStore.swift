import SluiceKit

/// The rows of one table as a mirroring target must hold them, kept by applying changes the way the
/// contract describes (README, "Target mapping"): upsert and delete by primary key, a key change
/// deletes the old key, a partial update keeps unchanged TOASTed columns, and a keyless REPLICA
/// IDENTITY FULL table changes exactly one row equal to the old one.
///
/// Rows are column name → text form (nil for NULL). Used for the conformance check's expected state
/// and by ``JSONLinesReplay`` to rebuild a table from JSON lines.
struct RowStore {
    typealias Row = [String: String?]

    let relation: RelationSchema
    private(set) var rows: [Row] = []
    private let keyColumns: [String]

    init(relation: RelationSchema) {
        self.relation = relation
        keyColumns = relation.primaryKey.map { relation.columns[$0].name }
    }

    /// Applies one change. `old` holds the old key's columns (or the whole old row), `new` the new row
    /// without its `unchanged` columns.
    mutating func apply(_ operation: ChangeOperation, old: Row?, new: Row?, unchanged: Set<String>) {
        switch operation {
        case .truncate:
            rows.removeAll()
        case .read, .insert:
            guard let new else { return }
            if keyColumns.isEmpty { rows.append(complete(new)) } else { upsert(complete(new)) }
        case .delete:
            guard let old else { return }
            if keyColumns.isEmpty {
                if let index = firstRow(equalTo: old) { rows.remove(at: index) }
            } else {
                remove(key: key(of: old))
            }
        case .update:
            guard let new else { return }
            if keyColumns.isEmpty {
                guard let old else { rows.append(complete(new)); return }
                if let index = firstRow(equalTo: old) { rows[index].merge(new) { $1 } }
            } else if !unchanged.isEmpty {
                // Only the columns sent change, in the row the old key (else the new key) finds.
                let key = self.key(of: old ?? new)
                if let index = rows.firstIndex(where: { self.key(of: $0) == key }) { rows[index].merge(new) { $1 } }
            } else {
                if let old, key(of: old) != key(of: new) {
                    remove(key: key(of: old))
                }
                upsert(complete(new))
            }
        }
    }

    private func key(of row: Row) -> [String?] { Self.key(of: row, columns: keyColumns) }

    private static func key(of row: Row, columns: [String]) -> [String?] { columns.map { row[$0] ?? nil } }

    private mutating func remove(key: [String?]) {
        let columns = keyColumns
        rows.removeAll { Self.key(of: $0, columns: columns) == key }
    }

    private mutating func upsert(_ row: Row) {
        let key = self.key(of: row)
        if let index = rows.firstIndex(where: { self.key(of: $0) == key }) { rows[index] = row } else { rows.append(row) }
    }

    /// The first row equal to `old` on every column `old` carries (NULL equals NULL).
    private func firstRow(equalTo old: Row) -> Int? {
        rows.firstIndex { row in old.allSatisfy { column, value in (row[column] ?? nil) == value } }
    }

    /// Every column of the relation present, NULL where the change had none.
    private func complete(_ row: Row) -> Row {
        var full = row
        for column in relation.columns where full[column.name] == nil { full[column.name] = .some(nil) }
        return full
    }
}

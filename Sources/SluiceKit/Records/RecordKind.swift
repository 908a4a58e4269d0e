/// The kind of a topic record. The byte values are part of the on-disk format (docs/log-format.md).
public enum RecordKind: UInt8, Sendable, CaseIterable {
    /// Opens a source transaction: xid, commit LSN, commit time.
    case begin = 1
    /// A table's schema, written before the first change to that table in each transaction.
    case relation = 2
    /// One row change (read, insert, update, delete) or a table truncation.
    case change = 3
    /// Closes the transaction; only records followed by their commit marker are ever read.
    case commit = 4

    public var name: String {
        switch self {
        case .begin: return "begin"
        case .relation: return "relation"
        case .change: return "change"
        case .commit: return "commit"
        }
    }
}

/// What a change did.
public enum ChangeOperation: UInt8, Sendable, CaseIterable {
    /// A row copied by a snapshot (initial or backfill); applied as an upsert.
    case read = 114       // 'r'
    case insert = 105     // 'i'
    case update = 117     // 'u'
    case delete = 100     // 'd'
    case truncate = 116   // 't'

    public var name: String {
        switch self {
        case .read: return "read"
        case .insert: return "insert"
        case .update: return "update"
        case .delete: return "delete"
        case .truncate: return "truncate"
        }
    }
}

/// Which old values an update or delete carries.
public enum OldValuesKind: UInt8, Sendable {
    case none = 0
    /// The replica-identity columns only (others are null).
    case key = 75         // 'K'
    /// The whole old row (REPLICA IDENTITY FULL).
    case full = 79        // 'O'
}

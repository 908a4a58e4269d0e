import SluiceKit

/// A row that differs between the source and a sink's target, after the sink caught up.
public struct RowDifference: Sendable {
    public enum Kind: String, Sendable {
        /// At the source, not at the target.
        case missing
        /// At the target, not at the source.
        case extra
        /// Under the same key at both, with other values.
        case different
    }

    public var kind: Kind
    /// The primary key's values (text form); nil for a keyless table.
    public var key: [String]?
    public var source: [String?]?
    public var target: [String?]?
    /// For a keyless table: how many copies of the row are missing or extra.
    public var copies: Int
}

/// What verify found for one table at one sink.
public struct TableVerification: Sendable {
    public var sink: String
    public var table: TableName
    /// The table's name at the target.
    public var targetTable: String
    public var columns: [String]
    public var keyColumns: [String]
    public var sourceRows: UInt64 = 0
    public var chunks = 0
    /// The differences found, at most ``Verifier/maxDifferences``; `differenceCount` counts them all.
    public var differences: [RowDifference] = []
    public var differenceCount = 0
    /// The target has no such table at all (every source row is missing).
    public var targetTableMissing = false
    /// Columns the target's table lacks (dropped there by hand): its rows cannot equal the source's.
    public var targetColumnsMissing: [String] = []
    /// The sink's transforms the comparison followed ("rename", "columns", "where"); empty for a plain mirror.
    public var transforms: [String] = []
    /// Why the table was not compared (a transform, an aggregate); nil when it was.
    public var skipped: String?

    public var isEqual: Bool { skipped != nil || (differenceCount == 0 && !targetTableMissing && targetColumnsMissing.isEmpty) }

    /// The target's table must be made whole again (copied whole by `--repair`), not mended row by row.
    public var needsWholeCopy: Bool { targetTableMissing || !targetColumnsMissing.isEmpty }

    public func count(_ kind: RowDifference.Kind) -> Int {
        differences.filter { $0.kind == kind }.reduce(0) { $0 + $1.copies }
    }
}

/// Progress of a running verify, for a terminal.
public protocol VerifyObserver: AnyObject {
    func progress(sink: String, table: TableName, chunks: Int, rows: UInt64)
}

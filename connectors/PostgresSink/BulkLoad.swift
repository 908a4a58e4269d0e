import SluiceKit
import SluiceWire

/// A run of inserts (and snapshot reads) into one table, loaded with COPY once it is long enough.
///
/// The first rows are kept; if the run ends early they go through the pipeline as prepared upserts.
/// Past `threshold` rows the connection leaves pipeline mode and streams the run with COPY: into a
/// temporary staging table merged with one `INSERT … SELECT … ON CONFLICT` for a keyed table, straight
/// into a keyless one. Memory stays bounded: the COPY buffer is sent every megabyte.
struct BulkLoad {
    static let threshold = 256
    static let flushBytes = 1 << 20

    let table: PostgresTable
    private var pending: [Tuple] = []
    private var encoder = CopyTextEncoder()
    private(set) var copying = false
    private var keys: Set<Int> = []

    init(table: PostgresTable) {
        self.table = table
        pending.reserveCapacity(Self.threshold)
    }

    /// Adds a row to the run; false, adding nothing, when its key is already in the run.
    mutating func add(_ tuple: Tuple, pipeline: PGPipeline) throws -> Bool {
        if let key = table.key(of: tuple), !keys.insert(key).inserted { return false }
        if copying {
            table.encode(tuple, into: &encoder)
            if encoder.count >= Self.flushBytes { try flush(pipeline.connection) }
            return true
        }
        // Kept beyond the reader's buffer, so copied.
        pending.append(Tuple(bytes: Array(tuple.bytes)))
        guard pending.count >= Self.threshold else { return true }
        try pipeline.suspend()
        try pipeline.connection.beginCopyIn(table.copySQL)
        copying = true
        for row in pending { table.encode(row, into: &encoder) }
        pending.removeAll()
        try flush(pipeline.connection)
        return true
    }

    private mutating func flush(_ connection: PGConnection) throws {
        try encoder.buffer.withUnsafeBytes { try connection.putCopyData($0) }
        encoder.removeAll()
    }

    /// Ends the run: the rows reach the table, and the pipeline is back.
    mutating func finish(pipeline: PGPipeline) throws {
        if copying {
            try flush(pipeline.connection)
            try pipeline.connection.endCopy()
            if let merge = table.mergeSQL {
                try pipeline.connection.execute(merge)
                try pipeline.connection.execute("TRUNCATE \(table.stagingName)")
            }
            try pipeline.resume()
            copying = false
        } else {
            for row in pending { try table.upsert(row) }
            pending.removeAll()
        }
    }
}

import SluiceKit
import SluiceWire

/// A run of inserts (and snapshot reads) into one table, loaded with COPY once it is long enough.
///
/// The first rows are kept; if the run ends early they go through the pipeline as prepared upserts.
/// Past `threshold` rows the connection leaves pipeline mode and streams the run with COPY:
/// - keyless table: straight into the table;
/// - keyed table: straight into the table too, under a savepoint, keeping the run's bytes. If a key
///   already exists (unique violation), the run is rolled back to the savepoint and replayed into a
///   temporary staging table merged with one `INSERT … SELECT … ON CONFLICT`; from then on that table
///   is always staged (a backfill into a populated table, for example).
///
/// A run ends where a key repeats (one statement cannot write a row twice) and past `maxRunBytes`,
/// which bounds the replay copy and the key set: memory does not grow with transaction size.
struct BulkLoad {
    static let threshold = 256
    static let flushBytes = 1 << 20
    static let maxRunBytes = 16 << 20

    let table: PostgresTable
    private var pending: [Tuple] = []
    private var encoder = CopyTextEncoder()
    private(set) var copying = false
    private var keys: Set<Int> = []
    private var runBytes = 0
    /// COPY into the table itself (not the staging table).
    private let direct: Bool
    /// What a direct COPY of a keyed table sent, to replay through the staging table on a conflict.
    private var replay: [UInt8] = []

    init(table: PostgresTable) {
        self.table = table
        direct = !table.hasKey || !table.prefersStaging
        pending.reserveCapacity(Self.threshold)
    }

    /// Adds a row to the run; false, adding nothing, when the run must end first (its key is already
    /// in the run, or the run is full).
    mutating func add(_ tuple: Tuple, pipeline: PGPipeline) throws -> Bool {
        guard runBytes < Self.maxRunBytes else { return false }
        if let key = table.key(of: tuple), !keys.insert(key).inserted { return false }
        if copying {
            let before = encoder.count
            table.encode(tuple, into: &encoder)
            runBytes += encoder.count - before
            if encoder.count >= Self.flushBytes { try flush(pipeline.connection) }
            return true
        }
        // Kept beyond the reader's buffer, so copied.
        pending.append(Tuple(bytes: Array(tuple.bytes)))
        guard pending.count >= Self.threshold else { return true }
        try pipeline.suspend()
        let connection = pipeline.connection
        if direct && table.hasKey { try connection.execute("SAVEPOINT sluice_bulk") }
        try connection.beginCopyIn(direct ? table.directCopySQL : table.stagingCopySQL)
        copying = true
        for row in pending { table.encode(row, into: &encoder) }
        runBytes = encoder.count
        pending.removeAll()
        try flush(connection)
        return true
    }

    private mutating func flush(_ connection: PGConnection) throws {
        if direct && table.hasKey {
            // Sized once for a whole run: growing by doubling would hold two copies at the switch.
            if replay.capacity == 0 { replay.reserveCapacity(Self.maxRunBytes + 2 * Self.flushBytes) }
            replay.append(contentsOf: encoder.buffer)
        }
        try encoder.buffer.withUnsafeBytes { try connection.putCopyData($0) }
        encoder.removeAll()
        Failpoint.hit("sink.postgres.mid_copy")
    }

    /// Ends the run: the rows reach the table, and the pipeline is back.
    mutating func finish(pipeline: PGPipeline) throws {
        guard copying else {
            for row in pending { try table.upsert(row) }
            pending.removeAll()
            return
        }
        let connection = pipeline.connection
        try flush(connection)
        copying = false
        guard direct && table.hasKey else {
            try connection.endCopy()
            if !direct { try merge(connection) }
            try pipeline.resume()
            return
        }
        do {
            try connection.endCopy()
            try connection.execute("RELEASE SAVEPOINT sluice_bulk")
        } catch let error as PGError where error.sqlState == "23505" {
            // Some keys exist already: replay the run through the staging table's merge.
            try connection.execute("ROLLBACK TO SAVEPOINT sluice_bulk")
            try connection.execute("RELEASE SAVEPOINT sluice_bulk")
            table.prefersStaging = true
            try table.createStaging(on: connection)
            try connection.beginCopyIn(table.stagingCopySQL)
            try replay.withUnsafeBytes { try connection.putCopyData($0) }
            try connection.endCopy()
            try merge(connection)
        }
        replay.removeAll()
        try pipeline.resume()
    }

    private func merge(_ connection: PGConnection) throws {
        try connection.execute(table.mergeSQL)
        try connection.execute("TRUNCATE \(table.stagingName)")
    }
}

import Foundation
import Logging
import PGOutput
import SluiceKit
import SluiceWire

/// Copies tables into the topic in primary-key chunks while the stream flows, in the style of
/// Netflix's DBLog: for each chunk, a low watermark, a SELECT of the next rows by key, a high
/// watermark (logical decoding messages). Rows whose key changes in a transaction the stream delivers
/// between the two watermarks are dropped from the chunk (the stream already carries a newer version);
/// the rest are written as `read` changes right after the high watermark. No locks are taken.
/// A table without a primary key is copied whole instead (``WholeTableCopy``).
final class BackfillDriver {
    struct Chunk {
        let id: String
        let tableIndex: Int
        let schema: RelationSchema
        let keyColumns: [Int]
        var rows: [[UInt8]]
        var index: [String: Int]
        var removed: Set<Int> = []
        /// Requested keys the source does not have (deleted at the sinks), and those the stream changed.
        var absent: [String: [String]] = [:]
        var absentChanged: Set<String> = []
        /// For a copy of given keys: how many of them this chunk covers.
        var keyCount: Int?
        let lastKey: [String]?
        var windowOpen = false
        var highSeen = false
    }

    static let watermarkPrefix = "sluice.watermark"

    let source: PostgresSource
    let sql: PGConnection
    let writer: TransactionWriter
    let context: SourceContext
    private var progress: BackfillProgress?
    /// Progress to persist once the topic holds it durably: (progress, offset it needs, if any).
    private var unsaved: [(progress: BackfillProgress, needs: UInt64?)] = []
    private(set) var chunk: Chunk?
    private var wholeCopy: WholeTableCopy?
    private var lastRequestCheck = DispatchTime(uptimeNanoseconds: 0)
    private var directory: String { context.stateDirectory }

    init(source: PostgresSource, sql: PGConnection, writer: TransactionWriter, context: SourceContext) {
        self.source = source
        self.sql = sql
        self.writer = writer
        self.context = context
        do {
            if let saved = try BackfillFiles.readExisting(BackfillProgress.self, directory: context.stateDirectory,
                                                          name: BackfillProgress.fileName, fix: Self.damagedProgressFix), !saved.isFinished {
                progress = saved
                context.logger.info("resuming backfill", metadata: ["id": "\(saved.id)", "copied_rows": "\(saved.copiedRows)"])
            }
        } catch {
            damaged = error
        }
    }

    /// A damaged progress file, thrown at the first tick: the backfill it held must not vanish silently.
    private var damaged: Error?
    static let damagedProgressFix = "it holds the progress of a backfill, whose remaining rows would otherwise never be copied. "
        + "Delete it, start sluice run again and run sluice backfill for the tables it was copying (the copy starts over)"

    var chunkRelation: UInt32? { chunk.flatMap { $0.windowOpen && !$0.highSeen ? $0.schema.id : nil } }

    // MARK: Called by the stream loop

    /// Between transactions: persist what is durable, adopt requests, and start the next chunk.
    func tick() throws {
        if let damaged { throw damaged }
        persistDurable()
        if FileManager.default.fileExists(atPath: directory + "/" + BackfillRequest.cancelFileName) {
            BackfillFiles.remove(directory: directory, name: BackfillRequest.cancelFileName)
            BackfillFiles.remove(directory: directory, name: BackfillRequest.fileName)
            if progress.map({ !$0.isFinished }) ?? false { stop("cancelled by sluice backfill --cancel", asked: true) }
        }
        let now = DispatchTime.now()
        if now.uptimeNanoseconds - lastRequestCheck.uptimeNanoseconds > 500_000_000 {
            lastRequestCheck = now
            try adoptRequest()
        }
        guard chunk == nil, var current = progress, !current.isFinished else { return }
        if let copy = wholeCopy {
            switch copy.state {
            case .preparing:
                return
            case let .failed(reason):
                wholeCopy = nil
                stop(reason)
            case .ready:
                // A transaction committing after the consistent point: its begin places the copy.
                if !copy.triggered {
                    do {
                        try source.wrap { try emit("whole " + copy.id) }
                    } catch let ConnectorError.fatal(reason) {
                        copy.close()
                        wholeCopy = nil
                        stop(reason)
                    }
                    copy.triggered = true
                }
            }
            return
        }
        guard let tableIndex = current.tables.firstIndex(where: { !$0.done }) else {
            current.finalOffset = writer.lastCommit?.offset
            current.finishedAt = Date()
            progress = current
            unsaved.append((current, current.finalOffset))
            context.logger.info("backfill copied every table", metadata: ["id": "\(current.id)", "rows": "\(current.copiedRows)"])
            persistDurable()
            return
        }
        do {
            try startChunk(&current, tableIndex: tableIndex)
            progress = current
        } catch let ConnectorError.fatal(reason) {
            // A backfill that cannot proceed (no SELECT privilege, a dropped table) fails alone.
            progress = current
            stop(reason)
        }
    }

    /// Before a transaction the stream delivers is written: a whole-table copy whose consistent point
    /// it commits at or after goes first (``WholeTableCopy``).
    func beforeBegin(finalLSN: UInt64, keepAlive: () -> Void) throws {
        guard let copy = wholeCopy else { return }
        if case .preparing = copy.state, finalLSN >= copy.startLSN, !awaitSnapshot(copy, keepAlive: keepAlive) { return }
        guard case let .ready(point) = copy.state, finalLSN >= point, var state = progress else { return }
        wholeCopy = nil
        defer { copy.close() }
        do {
            let rows = try copy.write(to: writer, copySource: { try source.copySource(of: $0, on: $1) }, keepAlive: keepAlive)
            state.tables[copy.tableIndex].copiedRows = rows
            state.tables[copy.tableIndex].done = true
            progress = state
            unsaved.append((state, writer.lastCommit?.offset))
            context.logger.info("backfill copied a table without a primary key whole",
                                metadata: ["table": "\(state.tables[copy.tableIndex].table)", "rows": "\(rows)"])
        } catch {
            if writer.isOpen { try writer.abort() }
            if let error = error as? PGError, error.connectionLost || error.isTransient {
                throw ConnectorError.transient("source '\(source.name)': \(error.message)")
            }
            stop("\(error)")
        }
    }

    /// Waits for the snapshot's consistent point (the stream must not pass it), at most a minute;
    /// false when it gave up (stopping, or a transaction held the slot's creation up).
    private func awaitSnapshot(_ copy: WholeTableCopy, keepAlive: () -> Void) -> Bool {
        let started = DispatchTime.now().uptimeNanoseconds
        var pinged = started
        while case .preparing = copy.state {
            let now = DispatchTime.now().uptimeNanoseconds
            if context.isStopping() {
                wholeCopy = nil  // taken again on the next start
                return false
            }
            if now - started > 60_000_000_000 {
                stop("""
                    no snapshot of \(copy.table) within 60 s: creating its temporary replication slot waits for every \
                    transaction open at the source to end (see pg_stat_activity); run the backfill again
                    """)
                return false
            }
            if now - pinged > 5_000_000_000 {
                keepAlive()
                pinged = now
            }
            usleep(5_000)
        }
        return true
    }

    /// Ends the backfill without copying the rest; streaming goes on. Recorded at once (the
    /// chunks written so far stay valid: each was consistent with the stream).
    private func stop(_ reason: String, asked: Bool = false) {
        guard var current = progress else { return }
        chunk = nil
        wholeCopy?.close()
        wholeCopy = nil
        current.failure = reason
        current.finishedAt = Date()
        progress = current
        unsaved.removeAll()
        try? BackfillFiles.write(current, directory: directory, name: BackfillProgress.fileName)
        // A cancel the user asked for is not an error (log shippers alert on those).
        context.logger.log(level: asked ? .notice : .error, "backfill stopped; streaming goes on",
                           metadata: ["id": "\(current.id)", "reason": "\(reason)"])
    }

    /// A logical decoding message from the stream: opens or closes a chunk's window.
    func observe(_ message: LogicalMessage) {
        guard message.prefix == Self.watermarkPrefix, chunk != nil else { return }
        let text = String(decoding: message.content, as: UTF8.self)
        if text == "low " + chunk!.id { chunk!.windowOpen = true }
        if text == "high " + chunk!.id { chunk!.highSeen = true }
    }

    /// A change to the chunk's table inside the window: its row in the chunk is stale.
    func observe(_ tuple: TupleData) {
        guard let key = Self.key(of: tuple.bytes, columns: chunk!.keyColumns) else { return }
        if let row = chunk!.index[key] { chunk!.removed.insert(row) }
        if chunk!.absent[key] != nil { chunk!.absentChanged.insert(key) }
    }

    /// A TRUNCATE of the chunk's table inside the window: every row read is stale (written after the
    /// high watermark, they would bring back rows the stream emptied), and so is every absent key.
    func observeTruncate() {
        chunk!.removed = Set(chunk!.rows.indices)
        chunk!.absentChanged = Set(chunk!.absent.keys)
    }

    /// After each commit from the stream: once the high watermark's transaction committed, the
    /// chunk is written right here, in stream order.
    func committed(commitLSN: UInt64, endLSN: UInt64) throws {
        guard let current = chunk, current.highSeen, var state = progress else { return }
        let lsn = LSN(commitLSN)
        let now = nowMicros()
        try writer.begin(BeginRecord(xid: 0, commitLSN: lsn, commitTime: now))
        try writer.ensureRelation(current.schema)
        for (index, row) in current.rows.enumerated() where !current.removed.contains(index) {
            try writer.change { body in
                body.u8(ChangeOperation.read.rawValue)
                body.u32(current.schema.id)
                body.u64(lsn.rawValue)
                body.raw(row)
            }
        }
        for (key, values) in current.absent.sorted(by: { $0.key < $1.key }) where !current.absentChanged.contains(key) {
            let old = Self.keyTuple(values, columns: current.keyColumns, width: current.schema.columns.count)
            try writer.change { body in
                old.withUnsafeBytes { ChangeRecord.encode(operation: .delete, relationID: current.schema.id, lsn: lsn,
                                                          oldKind: .key, old: $0, into: &body) }
            }
        }
        try writer.commit(commitLSN: lsn, endLSN: LSN(endLSN), commitTime: now)
        var table = state.tables[current.tableIndex]
        table.copiedRows += UInt64(current.rows.count)
        if let keyCount = current.keyCount {
            table.keysDone = (table.keysDone ?? 0) + keyCount
            table.done = table.keysDone! >= (table.keys?.count ?? 0)
        } else {
            if let last = current.rows.last { table.lastKey = Self.keyValues(of: last, columns: current.keyColumns) }
            table.done = current.rows.count < source.backfillChunkSize
        }
        state.tables[current.tableIndex] = table
        progress = state
        unsaved.append((state, writer.lastCommit?.offset))
        chunk = nil
        // The next chunk starts now, not at the stream loop's next idle tick.
        try tick()
    }

    // MARK: Steps

    private func adoptRequest() throws {
        guard let request = try BackfillFiles.readExisting(BackfillRequest.self, directory: directory, name: BackfillRequest.fileName,
                                                           fix: BackfillRequest.damagedFix)
        else { return }
        if var active = progress, !active.isFinished {
            let known = Set(active.tables.map(\.table))
            for table in request.tables where !known.contains(table) { active.tables.append(.init(table: table, keys: request.keys?[table])) }
            progress = active
            try BackfillFiles.write(active, directory: directory, name: BackfillProgress.fileName)
        } else {
            let fresh = BackfillProgress(id: request.id, tables: request.tables, keys: request.keys)
            progress = fresh
            unsaved.removeAll()
            try BackfillFiles.write(fresh, directory: directory, name: BackfillProgress.fileName)
            context.logger.info("backfill requested", metadata: ["id": "\(request.id)",
                                                                  "tables": "\(request.tables.joined(separator: ","))"])
        }
        BackfillFiles.remove(directory: directory, name: BackfillRequest.fileName)
    }

    private func startChunk(_ state: inout BackfillProgress, tableIndex: Int) throws {
        let table = state.tables[tableIndex].table
        // The publication's row filter and column list: a chunk holds what the stream carries of the table.
        let tableName = (try? TableName.parse(table)) ?? TableName(schema: "public", table: table)
        guard let copy = try source.wrap({ try source.copySource(of: tableName, on: sql) }) else {
            context.logger.warning("backfill skips a table that no longer exists", metadata: ["table": "\(table)"])
            state.tables[tableIndex].done = true
            return
        }
        let schema = copy.schema
        if state.tables[tableIndex].totalRows == nil {
            let count = try source.wrap { try sql.execute("SELECT count(*) FROM \(quoteQualified(table))\(copy.filter)").string(0, 0) }
            state.tables[tableIndex].totalRows = count.flatMap { UInt64($0) }
            try BackfillFiles.write(state, directory: directory, name: BackfillProgress.fileName)
            context.logger.info("backfill copying table", metadata: ["table": "\(table)", "rows": "\(count ?? "?")"])
        }
        let keyColumns = schema.primaryKey
        guard !keyColumns.isEmpty, !context.backfillReplaces(tableName) else {
            // No primary key (or a column list leaving it out), or a table a sink aggregates (its rows
            // must replace the table's contribution, not add to it): copied whole at a known position.
            let start = try source.wrap { try sql.execute("SELECT pg_current_wal_insert_lsn()::text").string(0, 0) }
            wholeCopy = WholeTableCopy(table: tableName, tableIndex: tableIndex, startLSN: start.flatMap { LSN($0)?.rawValue } ?? 0,
                                       url: source.url, slotPrefix: source.slot)
            return
        }
        let id = UUID().uuidString
        let lastKey = state.tables[tableIndex].lastKey
        let columns = copy.selectList
        let key = keyColumns.map { PGConnection.quoteIdentifier(schema.columns[$0].name) }.joined(separator: ", ")
        var query = "SELECT \(columns) FROM \(quoteQualified(table))"
        var conditions = copy.rowFilter.map { ["(\($0))"] } ?? []
        var requested: [[String]]?
        if let keys = state.tables[tableIndex].keys {
            let done = state.tables[tableIndex].keysDone ?? 0
            let batch = Array(keys[min(done, keys.count)..<min(keys.count, done + source.backfillChunkSize)])
            requested = batch
            let values = batch.map { key in
                "(" + zip(keyColumns, key).map { PGConnection.quoteLiteral($1) + "::" + schema.columns[$0].typeName }.joined(separator: ", ") + ")"
            }
            conditions.append(values.isEmpty ? "false" : "(\(key)) IN (VALUES \(values.joined(separator: ", ")))")
        } else if let lastKey {
            let literals = zip(keyColumns, lastKey).map { column, value in
                PGConnection.quoteLiteral(value) + "::" + schema.columns[column].typeName
            }
            conditions.append("(\(key)) > (\(literals.joined(separator: ", ")))")
        }
        if !conditions.isEmpty { query += " WHERE " + conditions.joined(separator: " AND ") }
        query += " ORDER BY \(key) LIMIT \(source.backfillChunkSize)"
        var rows: [[UInt8]] = []
        var index: [String: Int] = [:]
        try source.wrap {
            try emit("low " + id)
            Failpoint.hit("backfill.after_low_watermark")
            try sql.copyOut("COPY (\(query)) TO STDOUT") { line in
                var body = RecordBody()
                try CopyText.appendTuple(line, columns: schema.columns.count, into: &body)
                if let rowKey = body.bytes.withUnsafeBytes({ Self.key(of: $0, columns: keyColumns) }) {
                    index[rowKey] = rows.count
                }
                rows.append(body.bytes)
            }
            Failpoint.hit("backfill.before_high_watermark")
            try emit("high " + id)
        }
        chunk = Chunk(id: id, tableIndex: tableIndex, schema: schema, keyColumns: keyColumns, rows: rows, index: index,
                      lastKey: lastKey)
        if let requested {
            chunk!.keyCount = requested.count
            for key in requested where index[key.joined(separator: "\u{1F}")] == nil {
                chunk!.absent[key.joined(separator: "\u{1F}")] = key
            }
        }
    }

    private func emit(_ watermark: String) throws {
        try sql.execute("SELECT pg_logical_emit_message(true, $1, $2)", [Self.watermarkPrefix, watermark])
    }

    /// Writes the newest progress whose chunks the topic holds durably.
    private func persistDurable() {
        guard !unsaved.isEmpty else { return }
        let durable = writer.writer.topic.durableCommit?.offset
        guard let ready = unsaved.lastIndex(where: { entry in
            entry.needs.map { needed in durable.map { needed <= $0 } ?? false } ?? true
        }) else { return }
        Failpoint.hit("backfill.before_save_progress")
        try? BackfillFiles.write(unsaved[ready].progress, directory: directory, name: BackfillProgress.fileName)
        unsaved.removeFirst(ready + 1)
    }

    // MARK: Keys

    /// A row in the tuple layout holding only the key's values (the old key of a delete).
    static func keyTuple(_ values: [String], columns: [Int], width: Int) -> [UInt8] {
        var bytes: [UInt8] = [UInt8(width >> 8), UInt8(width & 0xFF)]
        for column in 0..<width {
            guard let position = columns.firstIndex(of: column) else {
                bytes.append(UInt8(ascii: "n"))
                continue
            }
            let text = Array(values[position].utf8)
            bytes.append(UInt8(ascii: "t"))
            withUnsafeBytes(of: UInt32(text.count).bigEndian) { bytes.append(contentsOf: $0) }
            bytes += text
        }
        return bytes
    }

    /// The key columns' text values of a row in the tuple layout, joined; nil if one is missing.
    static func key(of tuple: UnsafeRawBufferPointer, columns: [Int]) -> String? {
        keyValues(tuple, columns: columns)?.joined(separator: "\u{1F}")
    }

    static func keyValues(of tuple: [UInt8], columns: [Int]) -> [String]? {
        tuple.withUnsafeBytes { keyValues($0, columns: columns) }
    }

    static func keyValues(_ tuple: UnsafeRawBufferPointer, columns: [Int]) -> [String]? {
        guard tuple.count >= 2 else { return nil }
        let count = Int(UInt16(bigEndian: tuple.loadUnaligned(as: UInt16.self)))
        var values = [String?](repeating: nil, count: count)
        var position = 2
        for column in 0..<count {
            guard position < tuple.count else { return nil }
            let kind = tuple[position]
            position += 1
            guard kind == UInt8(ascii: "t") || kind == UInt8(ascii: "b") else { continue }
            let length = Int(UInt32(bigEndian: tuple.loadUnaligned(fromByteOffset: position, as: UInt32.self)))
            position += 4
            if columns.contains(column) {
                values[column] = String(decoding: UnsafeRawBufferPointer(rebasing: tuple[position..<(position + length)]), as: UTF8.self)
            }
            position += length
        }
        var out: [String] = []
        for column in columns {
            guard column < count, let value = values[column] else { return nil }
            out.append(value)
        }
        return out
    }
}

import Foundation
import SluiceWire

/// Reads catch-up batches ahead of the source, on a thread and a connection of its own, from a
/// temporary copy of the slot (`pg_copy_logical_replication_slot(…, temporary => true)`).
///
/// `pg_logical_slot_peek_binary_changes` materializes a whole batch before it sends the first row, so
/// reading batch after batch on the source's thread leaves the server idle while Sluice writes a batch
/// and Sluice idle while the server decodes the next. The copy is consumed with
/// `pg_logical_slot_get_binary_changes`, so the next batch starts where the last ended without the real
/// slot moving; the real slot is still advanced by the source, and only past what the topic holds
/// durably. The temporary slot is the server's to drop when this connection ends (a crash included).
final class CatchUpPrefetch: @unchecked Sendable {
    enum Item {
        /// Whole CopyData messages of one batch's `COPY … (FORMAT binary)`, concatenated.
        case rows([UInt8])
        /// The batch ended; `rows` counts its messages.
        case batchEnd(rows: Int)
        /// No more batches: the slot copy is within `tail` of the WAL's end, or a batch came back short.
        case finished
        /// The slot could not be copied (e.g. no free slot): catch up without reading ahead.
        case unavailable(Error)
        case failed(Error)
    }

    private let condition = NSCondition()
    private var items: [Item] = []
    private var head = 0
    private var queuedBytes = 0
    private var cancelled = false
    /// Bytes read ahead at most; the reader waits for the source beyond it.
    private let limit: Int
    private static let chunkBytes = 1 << 20

    private init(limit: Int) { self.limit = limit }

    /// Starts reading `slot`'s changes through a temporary copy named after it.
    static func start(url: String, slot: String, publication: String, batch: Int, tail: UInt64,
                      limit: Int = 32 << 20) -> CatchUpPrefetch {
        let prefetch = CatchUpPrefetch(limit: limit)
        let copy = "sluice_catch_up_\(getpid())_\(UInt32.random(in: 0...UInt32.max))"
        let thread = Thread {
            prefetch.read(url: url, slot: slot, copy: copy, publication: publication, batch: batch, tail: tail)
        }
        thread.name = "sluice-catch-up"
        thread.start()
        return prefetch
    }

    /// The next item, or nil when none came within `timeoutMillis` (the caller checks for a stop).
    func next(timeoutMillis: Int) -> Item? {
        condition.lock()
        defer { condition.unlock() }
        let deadline = Date(timeIntervalSinceNow: Double(timeoutMillis) / 1000)
        while head == items.count {
            guard condition.wait(until: deadline) else { return nil }
        }
        let item = items[head]
        head += 1
        if case let .rows(bytes) = item { queuedBytes -= bytes.count }
        if head == items.count {
            items.removeAll(keepingCapacity: true)
            head = 0
        }
        condition.broadcast()
        return item
    }

    /// Stops reading ahead; the thread ends after the batch it is in (its connection and the
    /// temporary slot with it).
    func cancel() {
        condition.lock()
        cancelled = true
        condition.broadcast()
        condition.unlock()
    }

    private struct Cancelled: Error {}

    /// Queues `item`, waiting while the queue is over its limit; false once cancelled.
    @discardableResult
    private func put(_ item: Item) -> Bool {
        condition.lock()
        defer { condition.unlock() }
        if case .rows = item {
            while queuedBytes >= limit && !cancelled { condition.wait() }
        }
        guard !cancelled else { return false }
        if case let .rows(bytes) = item { queuedBytes += bytes.count }
        items.append(item)
        condition.broadcast()
        return true
    }

    private var isCancelled: Bool {
        condition.lock()
        defer { condition.unlock() }
        return cancelled
    }

    private func read(url: String, slot: String, copy: String, publication: String, batch: Int, tail: UInt64) {
        let connection: PGConnection
        do {
            connection = try PGConnection(url: url, applicationName: "sluice-catch-up")
            try connection.execute("SELECT pg_copy_logical_replication_slot($1, $2, true)", [slot, copy])
        } catch {
            put(.unavailable(error))
            return
        }
        let sql = CatchUpReader.batchSQL("pg_logical_slot_get_binary_changes", slot: copy, changes: batch, publication: publication)
        do {
            while !isCancelled {
                var chunk: [UInt8] = []
                chunk.reserveCapacity(Self.chunkBytes + 64 << 10)
                var rows = 0
                try connection.copyOut(sql) { data in
                    // The trailer (a field count of -1) is a message of its own; rows are one each.
                    if data.count != 2 { rows += 1 }
                    chunk.append(contentsOf: data)
                    if chunk.count >= Self.chunkBytes {
                        guard put(.rows(chunk)) else { throw Cancelled() }
                        chunk.removeAll(keepingCapacity: true)
                    }
                }
                if !chunk.isEmpty { guard put(.rows(chunk)) else { return } }
                guard put(.batchEnd(rows: rows)) else { return }
                guard rows >= batch,
                      let behind = try CatchUpReader.behind(slot: copy, on: connection), behind.bytes > tail else { break }
            }
            put(.finished)
            _ = try? connection.execute("SELECT pg_drop_replication_slot($1)", [copy])
        } catch is Cancelled {
            return
        } catch {
            put(.failed(error))
        }
    }
}

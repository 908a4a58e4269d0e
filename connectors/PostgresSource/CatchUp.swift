import Foundation
import PGOutput
import SluiceKit
import SluiceWire

/// Catch-up capture: before streaming, while the slot is more than `catch_up_threshold` of WAL behind,
/// the loop reads batches through ``CatchUpReader`` and hands their messages to the same handling as
/// streamed ones, so the topic gets exactly what streaming would have written. After each batch the
/// topic is flushed, and only then is the slot advanced to the batch's last commit: the slot never
/// confirms what the topic does not hold durably. A crash between the two makes the next peek send
/// the batch again, and the transactions the topic holds are dropped as after any restart. Streaming
/// then starts at the topic's last commit, so the switch has no gap and no duplicate.
extension StreamLoop {
    /// Runs catch-up batches until the slot is within a sixteenth of the threshold or the WAL ends; returns the number
    /// of batches read (0: the slot was close enough, or catch-up is off).
    @discardableResult
    func catchUp() throws -> Int {
        guard let threshold = source.catchUpThreshold else { return 0 }
        guard let first = try source.wrap({ try CatchUpReader.behind(slot: source.slot, on: sql) }),
              first.bytes > threshold else { return 0 }
        context.logger.info("catching up through the SQL decoding interface", metadata: [
            "slot": "\(source.slot)", "behind_bytes": "\(first.bytes)", "from": "\(formatLSN(first.confirmed))",
        ])
        let started = DispatchTime.now().uptimeNanoseconds
        let totalBefore = writer.lastCommit?.commit.totalEvents ?? 0
        // Started above the threshold, it goes on to near the tail: the last stretch reads faster this way too.
        let tail = threshold / 16
        let prefetch = CatchUpPrefetch.start(url: source.url, slot: source.slot, publication: source.publication,
                                             batch: source.catchUpBatch, tail: tail)
        defer { prefetch.cancel() }
        let batches: Int
        if let readAhead = try catchUpReadingAhead(prefetch) {
            batches = readAhead
        } else {
            batches = try catchUpOneBatchAtATime(tail: tail)
        }
        let events = (writer.lastCommit?.commit.totalEvents ?? 0) - totalBefore
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - started) / 1e9
        context.logger.info("caught up; streaming from here", metadata: [
            "batches": "\(batches)", "events": "\(events)", "seconds": "\(String(format: "%.2f", seconds))",
        ])
        return batches
    }

    /// Hands the batches `prefetch` reads ahead to the stream's handling; nil when the slot could not be
    /// copied (no free slot, or no privilege), before anything was read.
    private func catchUpReadingAhead(_ prefetch: CatchUpPrefetch) throws -> Int? {
        var batches = 0
        var rows = BinaryCopyRows()
        var lastEnd: UInt64?
        var unconfirmed = 0
        var confirmedAt = DispatchTime.now().uptimeNanoseconds
        while !context.isStopping() {
            guard let item = prefetch.next(timeoutMillis: 200) else { continue }
            switch item {
            case let .unavailable(error):
                context.logger.warning("catching up without reading ahead: the slot could not be copied", metadata: [
                    "slot": "\(source.slot)", "error": "\(error)",
                ])
                return nil
            case let .failed(error):
                try source.wrap { () throws -> Void in throw error }
                throw ConnectorError.transient("source '\(source.name)': catching up: \(error)")
            case let .rows(bytes):
                try stream {
                    try bytes.withUnsafeBytes { buffer in
                        try rows.parse(buffer) { lsn, payload in try handleCaughtUp(lsn: lsn, payload, lastEnd: &lastEnd) }
                    }
                }
            case .batchEnd:
                guard rows.ended else { throw ConnectorError.transient("source '\(source.name)': the slot's changes ended without COPY's trailer") }
                batches += 1
                unconfirmed += 1
                // Each advance decodes from the slot's restart_lsn again, and so does streaming's start, which
                // confirms the topic's end anyway: advance only now and then, to release WAL and bound a
                // crash's re-read.
                let now = DispatchTime.now().uptimeNanoseconds
                let advance = unconfirmed >= Self.batchesPerAdvance || now - confirmedAt >= Self.advanceIntervalNanos
                try endBatch(through: lastEnd, on: sql, advance: advance)
                if advance { unconfirmed = 0; confirmedAt = now }
                rows = BinaryCopyRows()
                lastEnd = nil
            case .finished:
                return batches
            }
        }
        return batches
    }

    /// One batch after the other on the source's thread: peek, write, flush, advance.
    private func catchUpOneBatchAtATime(tail: UInt64) throws -> Int {
        // Its own connection: the catalog queries `sql` while a batch is arriving.
        let reader = CatchUpReader(connection: try source.connect { try PGConnection(url: source.url, applicationName: "sluice-catch-up") },
                                   slot: source.slot, publication: source.publication)
        var batches = 0
        while !context.isStopping() {
            var lastEnd: UInt64?
            let rows = try stream {
                try reader.read(changes: source.catchUpBatch) { lsn, payload in try handleCaughtUp(lsn: lsn, payload, lastEnd: &lastEnd) }
            }
            batches += 1
            try endBatch(through: lastEnd, on: reader.connection)
            guard lastEnd != nil, rows >= source.catchUpBatch,
                  let now = try source.wrap({ try CatchUpReader.behind(slot: source.slot, on: reader.connection) }), now.bytes > tail else { break }
        }
        return batches
    }

    /// One decoded message of a batch, handled as a streamed one; a commit's end is the batch's end so far.
    private func handleCaughtUp(lsn: UInt64, _ payload: UnsafeRawBufferPointer, lastEnd: inout UInt64?) throws {
        let message = try decoder.decode(payload)
        if case let .commit(commit) = message { lastEnd = commit.endLSN }
        try handle(message, lsn: LSN(lsn))
    }

    static let batchesPerAdvance = 8
    static let advanceIntervalNanos: UInt64 = 10_000_000_000

    /// A batch ended (whole transactions only): flush the topic, then advance the slot to its last commit.
    private func endBatch(through lastEnd: UInt64?, on connection: PGConnection, advance: Bool = true) throws {
        guard !inTransaction else {
            throw ConnectorError.transient("source '\(source.name)': a catch-up batch ended inside a transaction")
        }
        guard let lastEnd else { return }
        try writer.writer.flush()
        if advance { try confirmBatch(through: lastEnd, on: connection) }
    }

    /// Advances the slot to `lastEnd` once the topic holds the batch: to the durable commit marker, or
    /// past it (transactions that captured nothing) after recording that position first, as the
    /// streaming loop does before confirming past the topic.
    private func confirmBatch(through lastEnd: UInt64, on connection: PGConnection) throws {
        let durable = writer.writer.topic.durableCommit
        guard durable?.offset == writer.lastCommit?.offset else {
            throw ConnectorError.transient("source '\(source.name)': the topic did not make the catch-up batch durable")
        }
        var target = lastEnd
        if let end = durable?.commit.endLSN.rawValue, end >= lastEnd {
            target = end
        } else {
            var saved = state
            saved.confirmedBeyond = SourceState.ConfirmedBeyond(offset: durable?.offset, lsn: lastEnd)
            do {
                try saved.save(to: context.stateDirectory)
            } catch {
                // Not recorded, so not confirmed past the topic: the slot keeps the WAL a little longer.
                guard let end = durable?.commit.endLSN.rawValue else { return }
                target = end
                saved = state
            }
            state = saved
            progress.recorded(saved.confirmedBeyond, now: DispatchTime.now().uptimeNanoseconds)
        }
        Failpoint.hit("source.catch_up.before_advance")
        try source.wrap { try CatchUpReader.advance(slot: source.slot, to: target, on: connection) }
    }
}

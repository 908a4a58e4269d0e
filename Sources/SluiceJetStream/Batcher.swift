import SluiceKit

/// Packs a source's records into JetStream messages, without I/O: the writer's decisions, unit-tested.
///
/// Whole transactions collect in the current batch; the writer hands the batch to its publisher when
/// it is big enough, when the publisher is idle, or on flush. A transaction that outgrows a message
/// is handed off in chunks as it arrives (bounded memory) and closed by a batch naming them; the
/// batch holding committed transactions always goes first, so every message gets the next sequence
/// in order and offsets (base sequence, index) are known when a commit marker is appended.
struct Batcher {
    /// A message for the publisher, in order: it gets stream sequence `sequence`.
    struct Outgoing: Equatable {
        var sequence: UInt64
        var kind: MessageBatch.Kind
        var body: [UInt8]
        /// The last commit marker it holds: durable once the server acknowledged the message.
        var lastCommit: CommittedPosition?
    }

    let maxBytes: Int
    /// The sequence the next handed-off message gets.
    private(set) var nextSequence: UInt64
    private(set) var committed = MessageBatch(kind: .batch)
    private var committedLast: CommittedPosition?
    /// The open transaction's records not handed off yet.
    private(set) var open = MessageBatch(kind: .batch)
    /// Chunks of the open transaction already handed off, and how many records they hold.
    private(set) var chunks: ClosedRange<UInt64>?
    private var chunkRecords = 0
    private(set) var outgoing: [Outgoing] = []

    init(nextSequence: UInt64, maxBytes: Int) {
        precondition(maxBytes >= 4096)
        self.nextSequence = nextSequence
        self.maxBytes = maxBytes
    }

    /// Appends a record of the open transaction and returns its offset (exact for commit markers,
    /// which is what positions use; a record that later moves into a chunk is renumbered there).
    mutating func append(kind: RecordKind, body: UnsafeRawBufferPointer) throws -> UInt64 {
        guard open.count + chunkRecords + committed.count < MessageBatch.maxRecords else {
            throw ConnectorError.fatal("a transaction of more than \(MessageBatch.maxRecords) records does not fit the jetstream backend")
        }
        let size = MessageBatch.recordHeaderSize + body.count
        guard MessageBatch.headerSize + size <= maxBytes else {
            throw ConnectorError.fatal("a record of \(body.count) bytes does not fit a JetStream message of at most \(maxBytes) bytes")
        }
        // Hand off first, so the offset computed below is where the record stays.
        if committed.count > 0 && committed.byteCount + open.records.count + size > maxBytes { handOffCommitted() }
        if open.count > 0 && open.byteCount + size > maxBytes { handOffChunk() }
        let offset = chunks.map { MessageBatch.offset(base: $0.lowerBound, index: chunkRecords + open.count) }
            ?? MessageBatch.offset(base: nextSequence, index: committed.count + open.count)
        open.append(kind: kind.rawValue, body: body)
        return offset
    }

    /// The open transaction's commit marker was the last record appended: it joins the batch (or,
    /// after chunks, closes them in a batch of its own).
    mutating func committed(_ commit: CommitRecord, offset: UInt64) {
        let position = CommittedPosition(offset: offset, commit: commit)
        if let range = chunks {
            handOffCommitted()
            var closing = MessageBatch(kind: .batch, chunks: range, chunkRecords: chunkRecords)
            closing.append(encoded: open.records, count: open.count)
            hand(closing, lastCommit: position)
            chunks = nil
            chunkRecords = 0
        } else {
            committed.append(encoded: open.records, count: open.count)
            committedLast = position
        }
        open = MessageBatch(kind: .batch)
    }

    /// Drops the open transaction; chunks already handed off are never named by a batch, so never read.
    mutating func abort() {
        open = MessageBatch(kind: .batch)
        chunks = nil
        chunkRecords = 0
    }

    var hasCommitted: Bool { committed.count > 0 }
    var committedBytes: Int { committed.byteCount }

    /// Hands the batch of whole transactions to the publisher, if it holds any.
    mutating func handOffCommitted() {
        guard committed.count > 0 else { return }
        hand(committed, lastCommit: committedLast)
        committed = MessageBatch(kind: .batch)
        committedLast = nil
    }

    /// Another message took the next sequence (the damage note): only with nothing pending.
    mutating func skipSequence() {
        precondition(outgoing.isEmpty && committed.count == 0 && open.count == 0 && chunks == nil)
        nextSequence += 1
    }

    /// The messages handed off since the last call, in sequence order.
    mutating func takeOutgoing() -> [Outgoing] {
        defer { outgoing.removeAll(keepingCapacity: true) }
        return outgoing
    }

    private mutating func handOffChunk() {
        handOffCommitted()
        var chunk = MessageBatch(kind: .chunk)
        chunk.append(encoded: open.records, count: open.count)
        let sequence = nextSequence
        hand(chunk, lastCommit: nil)
        chunks = (chunks?.lowerBound ?? sequence)...sequence
        chunkRecords += open.count
        open = MessageBatch(kind: .batch)
    }

    private mutating func hand(_ message: MessageBatch, lastCommit: CommittedPosition?) {
        outgoing.append(Outgoing(sequence: nextSequence, kind: message.kind, body: message.encoded(), lastCommit: lastCommit))
        nextSequence += 1
    }
}

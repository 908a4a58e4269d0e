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
    /// The next message: whole transactions (the first `committedCount` records, up to byte
    /// `committedEnd`), then the open transaction's records not handed off yet. One buffer, so a
    /// commit moves a mark and a hand-off moves the buffer, not the bytes.
    private var pending: MessageBatch
    private var committedEnd = MessageBatch.headerSize
    private var committedCount = 0
    private var committedLast: CommittedPosition?
    /// Chunks of the open transaction already handed off, and how many records they hold.
    private(set) var chunks: ClosedRange<UInt64>?
    private var chunkRecords = 0
    private(set) var outgoing: [Outgoing] = []
    /// Where the last record appended starts in `pending`.
    private var lastRecordStart = MessageBatch.headerSize
    /// What a new message buffer reserves: about the last message's size (fewer regrowths).
    private var capacity = 16 * 1024

    init(nextSequence: UInt64, maxBytes: Int) {
        precondition(maxBytes >= 4096)
        self.nextSequence = nextSequence
        self.maxBytes = maxBytes
        pending = MessageBatch(kind: .batch, capacity: capacity)
    }

    private var openCount: Int { pending.count - committedCount }

    /// Appends a record of the open transaction and returns its offset (exact for commit markers,
    /// which is what positions use; a record that later moves into a chunk is renumbered there).
    mutating func append(kind: RecordKind, body: UnsafeRawBufferPointer) throws -> UInt64 {
        try append(kind: kind) { $0.raw(body) }
    }

    /// Appends a record that `encode` writes in place (see ``append(kind:body:)``).
    mutating func append(kind: RecordKind, _ encode: (inout RecordBody) throws -> Void) throws -> UInt64 {
        guard pending.count + chunkRecords < MessageBatch.maxRecords else {
            throw ConnectorError.fatal("a transaction of more than \(MessageBatch.maxRecords) records does not fit the jetstream backend")
        }
        let start = pending.byteCount
        let size = try pending.append(kind: kind.rawValue, encode)
        guard MessageBatch.headerSize + MessageBatch.recordHeaderSize + size <= maxBytes else {
            pending.truncate(to: start, count: pending.count - 1)
            throw ConnectorError.fatal("a record of \(size) bytes does not fit a JetStream message of at most \(maxBytes) bytes")
        }
        let openBefore = openCount - 1
        let overCommitted = committedCount > 0 && pending.byteCount > maxBytes
        let overOpen = openBefore > 0 && MessageBatch.headerSize + (pending.byteCount - committedEnd) > maxBytes
        if overCommitted || overOpen {
            // Rare (once a message is full): the record moves to the next message, so that the
            // offset computed below is where it stays.
            let record = pending.records(from: start)
            pending.truncate(to: start, count: pending.count - 1)
            if overCommitted { handOffCommitted() }
            if overOpen { handOffChunk() }
            lastRecordStart = pending.byteCount
            pending.append(encoded: record, count: 1)
        } else {
            lastRecordStart = start
        }
        let index = openCount - 1
        return chunks.map { MessageBatch.offset(base: $0.lowerBound, index: chunkRecords + index) }
            ?? MessageBatch.offset(base: nextSequence, index: pending.count - 1)
    }

    /// The offset the next record appended would get.
    var nextOffset: UInt64 {
        chunks.map { MessageBatch.offset(base: $0.lowerBound, index: chunkRecords + openCount) }
            ?? MessageBatch.offset(base: nextSequence, index: pending.count)
    }

    /// The open transaction's last record is its commit marker, at `offset`: decodes it and commits.
    mutating func commitLast(offset: UInt64) throws -> CommittedPosition {
        let commit = try pending.withRecord(at: lastRecordStart) { bytes, range in
            var cursor = RecordCursor(bytes, range: range)
            return try CommitRecord.decode(&cursor)
        }
        committed(commit, offset: offset)
        return CommittedPosition(offset: offset, commit: commit)
    }

    /// The open transaction's commit marker was the last record appended: it joins the batch (or,
    /// after chunks, closes them in a batch of its own).
    mutating func committed(_ commit: CommitRecord, offset: UInt64) {
        let position = CommittedPosition(offset: offset, commit: commit)
        if let range = chunks {
            handOffCommitted()
            pending.chunks = range
            pending.chunkRecords = chunkRecords
            hand(lastCommit: position)
            chunks = nil
            chunkRecords = 0
        } else {
            committedEnd = pending.byteCount
            committedCount = pending.count
            committedLast = position
        }
    }

    /// Drops the open transaction; chunks already handed off are never named by a batch, so never read.
    mutating func abort() {
        pending.truncate(to: committedEnd, count: committedCount)
        chunks = nil
        chunkRecords = 0
    }

    var hasCommitted: Bool { committedCount > 0 }
    var hasOutgoing: Bool { !outgoing.isEmpty }
    var committedBytes: Int { committedEnd }

    /// Hands the batch of whole transactions to the publisher, if it holds any.
    mutating func handOffCommitted() {
        guard committedCount > 0 else { return }
        let last = committedLast
        if openCount > 0 {
            // The open transaction's records start the next message.
            var rest = MessageBatch(kind: .batch, capacity: capacity)
            rest.append(encoded: pending.records(from: committedEnd), count: openCount)
            pending.truncate(to: committedEnd, count: committedCount)
            swap(&rest, &pending)
            hand(&rest, lastCommit: last)
        } else {
            hand(lastCommit: last)
        }
        committedEnd = MessageBatch.headerSize
        committedCount = 0
        committedLast = nil
    }

    /// Another message took the next sequence (the damage note): only with nothing pending.
    mutating func skipSequence() {
        precondition(outgoing.isEmpty && pending.count == 0 && chunks == nil)
        nextSequence += 1
    }

    /// The messages handed off since the last call, in sequence order.
    mutating func takeOutgoing() -> [Outgoing] {
        var taken: [Outgoing] = []
        swap(&taken, &outgoing)
        return taken
    }

    private mutating func handOffChunk() {
        handOffCommitted()
        let sequence = nextSequence
        let records = pending.count
        pending.kind = .chunk
        hand(lastCommit: nil)
        chunks = (chunks?.lowerBound ?? sequence)...sequence
        chunkRecords += records
    }

    /// Hands off the pending message and starts an empty one.
    private mutating func hand(lastCommit: CommittedPosition?) {
        var message = MessageBatch(kind: .batch, capacity: capacity)
        swap(&message, &pending)
        hand(&message, lastCommit: lastCommit)
    }

    /// Seals `message` (its buffer moves out, uncopied) as the next sequence's.
    private mutating func hand(_ message: inout MessageBatch, lastCommit: CommittedPosition?) {
        let kind = message.kind
        let body = message.sealed()
        capacity = min(maxBytes, max(16 * 1024, body.count + body.count / 4))
        outgoing.append(Outgoing(sequence: nextSequence, kind: kind, body: body, lastCommit: lastCommit))
        nextSequence += 1
    }
}

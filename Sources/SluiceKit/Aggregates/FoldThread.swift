import Foundation
import Synchronization

/// One aggregate's fold in a box of its own, so the fold thread can change the boxes of event-time
/// aggregates while the sink's thread changes those placed by commit time (they read the store).
final class FoldBox: @unchecked Sendable {
    var fold: AggregateFold
    /// The source table's schema the fold is bound to: read without touching the fold.
    let relation: RelationSchema
    /// `time: commit_time`: folded on the sink's thread, which can read the row times from the store.
    let byCommitTime: Bool

    init(_ fold: AggregateFold) {
        self.fold = fold
        relation = fold.aggregate.schema
        byCommitTime = fold.aggregate.timeColumn == nil
    }

    func folds(_ change: Change) -> Bool {
        relation.id == change.relation.id && relation.table == change.relation.table && relation.schema == change.relation.schema
    }
}

/// Folds the changes of event-time aggregates on a thread of its own while the sink's thread writes
/// the mirrored rows: the fold is pure arithmetic on the change, and its deltas add up, so where they
/// are computed does not change what is written. The sink's thread hands changes over in chunks
/// (a bounded queue), writes the deltas a fold hands back when it is full (``AggregateMaintainer/writeAhead``),
/// and waits for the thread to finish (``drain()``) before anything that reads or replaces the folds:
/// a flush, a new schema, a TRUNCATE, a reset. Nothing commits before that wait, so a failure of the
/// fold thread reaches the sink before its position is stored.
final class FoldThread: @unchecked Sendable {
    /// What a fold reads of a change (not the change: its schema's reference counts would be touched
    /// on both threads), and which boxes fold it (bit i: `boxes[i]`).
    struct Item {
        let operation: ChangeOperation
        let oldKind: OldValuesKind
        let old: Tuple?
        let new: Tuple?
        let commitTime: Int64
        let boxes: UInt64
    }

    /// Aggregates per sink the thread can serve (one bit each in ``Item/boxes``).
    static let maximumBoxes = 64

    /// What the fold thread hands back: deltas of a full fold, and windows of rows skipped as late.
    struct Output {
        var deltas: [(aggregate: BoundAggregate, deltas: [AggregateDelta])] = []
        var late: [(index: Int, starts: [Int64])] = []
        var isEmpty: Bool { deltas.isEmpty && late.isEmpty }
    }

    static let chunkSize = 256
    static let queuedChunks = 4
    /// A queued tuple keeps the whole reader buffer it is a view of alive (the reader then copies on
    /// its next fill): past this many bytes of such buffers a chunk is handed over early, and the
    /// sink waits while the queued chunks hold more than `queuedChunks` times it. Rows of a megabyte
    /// each then cost about 80 MB, not a buffer per queued change.
    static let chunkBufferBytes = 16 << 20

    private let condition = NSCondition()
    // Guarded by `condition`:
    private var queue: [(boxes: [FoldBox?], items: [Item], bytes: Int)] = []
    private var queuedBytes = 0
    private var busy = false
    private var output = Output()
    private var failure: AggregateBindError?
    /// Set with `failure`, read without the lock per change: a fold error fails the batch at the next
    /// change, before a later change's own (perhaps retryable) error could hide it.
    private let failed = Atomic<Bool>(false)
    private var stopping = false
    private var started = false
    // The sink's thread only:
    private var current: [Item] = []
    private var currentBytes = 0
    private var lastBuffer: UnsafeRawPointer?
    private var currentBoxes: [FoldBox?] = []
    private let writeAhead: Int?

    init(writeAhead: Int?) {
        self.writeAhead = writeAhead
        current.reserveCapacity(Self.chunkSize)
    }

    /// Queues a change for the event-time folds among `boxes`; returns what the thread handed back
    /// since, when a chunk went over (nil otherwise, the common case: no lock taken).
    func fold(_ change: Change, commitTime: Int64, boxes: [FoldBox?], mask: UInt64) throws(AggregateBindError) -> Output? {
        if current.isEmpty { currentBoxes = boxes }  // the boxes change only after a drain
        current.append(Item(operation: change.operation, oldKind: change.oldKind, old: change.old, new: change.new,
                            commitTime: commitTime, boxes: mask))
        if let old = change.old { count(old.storage) }
        if let new = change.new { count(new.storage) }
        guard current.count >= Self.chunkSize || currentBytes >= Self.chunkBufferBytes || failed.load(ordering: .relaxed) else { return nil }
        return try push(waitForIdle: false)
    }

    /// Adds a tuple's buffer to the bytes the current chunk keeps alive (consecutive changes share one).
    private func count(_ storage: [UInt8]) {
        let base = storage.withUnsafeBytes { UnsafeRawPointer($0.baseAddress) }
        if base != lastBuffer {
            lastBuffer = base
            currentBytes += storage.count
        }
    }

    /// Waits until every queued change is folded; returns what the thread handed back. After it, and
    /// until the next ``fold(_:commitTime:boxes:)``, the sink's thread may read and replace the folds.
    func drain() throws(AggregateBindError) -> Output {
        try push(waitForIdle: true)
    }

    /// Ends the thread once the queue is folded (the maintainer is going away).
    func stop() {
        condition.lock()
        queue.removeAll()
        queuedBytes = 0
        stopping = true
        condition.broadcast()
        condition.unlock()
    }

    private func push(waitForIdle: Bool) throws(AggregateBindError) -> Output {
        condition.lock()
        defer { condition.unlock() }
        if !current.isEmpty {
            if !started {
                started = true
                let thread = Thread { [self] in run() }
                thread.name = "sluice-aggregate-fold"
                thread.start()
            }
            while (queue.count >= Self.queuedChunks || queuedBytes >= Self.queuedChunks * Self.chunkBufferBytes) && failure == nil {
                condition.wait()
            }
            if failure == nil {
                queue.append((currentBoxes, current, currentBytes))
                queuedBytes += currentBytes
            }
            current = []
            current.reserveCapacity(Self.chunkSize)
            currentBytes = 0
            lastBuffer = nil
            condition.broadcast()
        }
        if waitForIdle {
            while (!queue.isEmpty || busy) && failure == nil { condition.wait() }
        }
        if let failure { throw failure }
        var taken = Output()
        swap(&taken, &output)
        return taken
    }

    /// Forgets a failure and anything queued or handed back (the sink reopens, its batch rolled back).
    func reset() {
        condition.lock()
        queue.removeAll()
        queuedBytes = 0
        while busy { condition.wait() }
        output = Output()
        failure = nil
        failed.store(false, ordering: .relaxed)
        condition.unlock()
        current.removeAll(keepingCapacity: true)
        currentBytes = 0
        lastBuffer = nil
    }

    private func run() {
        condition.lock()
        while true {
            while queue.isEmpty && !stopping { condition.wait() }
            if queue.isEmpty { break }
            let chunk = queue.removeFirst()
            queuedBytes -= chunk.bytes
            busy = true
            condition.broadcast()
            condition.unlock()
            var handed = Output()
            var failed: AggregateBindError?
            do { try fold(chunk, into: &handed) } catch { failed = error }
            condition.lock()
            busy = false
            if let failed {
                failure = failed
                self.failed.store(true, ordering: .relaxed)
                queue.removeAll()
                queuedBytes = 0
            }
            output.deltas += handed.deltas
            output.late += handed.late
            condition.broadcast()
        }
        condition.unlock()
    }

    private func fold(_ chunk: (boxes: [FoldBox?], items: [Item], bytes: Int), into handed: inout Output) throws(AggregateBindError) {
        for item in chunk.items {
            let rows = ChangeRows(old: item.old, new: item.new)
            var mask = item.boxes
            while mask != 0 {
                let index = mask.trailingZeroBitCount
                mask &= mask - 1
                let box = chunk.boxes[index]!
                let late = try box.fold.apply(item.operation, oldKind: item.oldKind, rows: rows, commitTime: item.commitTime)
                if !late.isEmpty { handed.late.append((index, late)) }
                if let writeAhead, box.fold.pendingCount >= writeAhead {
                    let deltas = box.fold.takeDeltas()
                    if !deltas.isEmpty { handed.deltas.append((box.fold.aggregate, deltas)) }
                }
            }
        }
    }
}

import Logging
import Metrics

/// Where a SQL sink keeps its aggregate tables. Every call is part of the sink's open target
/// transaction, so the aggregates commit (or roll back) together with the sink's position.
public protocol AggregateStore: AnyObject {
    /// Creates the aggregate's table (and its state tables) if missing.
    func create(_ aggregate: BoundAggregate) throws
    /// Applies one batch's folded deltas: one upsert per window and group; windows left without rows go.
    func write(_ deltas: [AggregateDelta], of aggregate: BoundAggregate) throws
    /// Empties the aggregate (the source table was truncated).
    func empty(_ aggregate: BoundAggregate) throws
    /// Deletes the windows ending at or before `cutoff` (µs) and stores the watermark.
    func retain(_ aggregate: BoundAggregate, cutoff: Int64?, watermark: Int64?) throws
    /// The stored watermark per aggregate table (`schema.table`), read when the sink opens.
    func watermarks() throws -> [String: Int64]
    /// For `time: commit_time`: the commit time that last wrote the source row with this key.
    func rowTime(_ aggregate: BoundAggregate, key: String) throws -> Int64?
    /// Records (or with nil forgets) the commit time of the source row with this key.
    func setRowTime(_ aggregate: BoundAggregate, key: String, time: Int64?) throws
}

/// Keeps a sink's `aggregates:` up to date from the changes it applies: binds each aggregate when
/// its source table's schema arrives, folds the batch's changes, and writes them at commit.
public final class AggregateMaintainer {
    public let definitions: [AggregateDefinition]
    /// Per definition (same index), once its source table's schema arrived. Replaced only while no
    /// change is being folded on the fold thread (after ``FoldThread/drain()``).
    private var boxes: [FoldBox?]
    /// Row commit times set by this batch (nil: forgotten), written at flush: an insert then costs no
    /// statement of its own, and a bulk load of the mirrored rows is not interrupted.
    private var rowTimes: [Int: [String: Int64?]] = [:]
    private var watermarks: [String: Int64] = [:]
    private var commitTime: Int64 = 0
    private var loggedLate: Set<String> = []
    /// `sluice_sink_aggregate_late_rows_total` per aggregate table, made when the aggregate is bound.
    private var lateRows: [Int: Counter] = [:]
    private let logger: Logger
    private let sink: String
    /// When set, a fold holding this many windows and groups is written at once instead of at
    /// flush: deltas add up, so the result is the same, and a batch's memory stays bounded. Only for a
    /// store that may be written between changes (SQLite; the PostgreSQL sink may have a COPY open).
    /// Set before the first change (the fold thread, once started, keeps the value it started with).
    public var writeAhead: Int? {
        didSet { precondition(thread == nil, "writeAhead is set before the first change") }
    }
    /// Event-time aggregates are folded on a thread of their own (``FoldThread``) unless this is off.
    /// Set before the first change.
    public var foldsOnOwnThread = true {
        didSet { precondition(thread == nil, "foldsOnOwnThread is set before the first change") }
    }
    private var thread: FoldThread?

    public init(definitions: [AggregateDefinition], sink: String, logger: Logger) {
        self.definitions = definitions
        self.sink = sink
        self.logger = logger
        boxes = Array(repeating: nil, count: definitions.count)
    }

    deinit { thread?.stop() }

    public var isEmpty: Bool { definitions.isEmpty }

    /// Forgets the unsaved batch and reloads the watermarks: called when the sink (re)opens.
    public func reset(store: AggregateStore) throws {
        thread?.reset()
        boxes = Array(repeating: nil, count: definitions.count)
        rowTimes.removeAll()
        watermarks = definitions.contains { $0.retain != nil } ? try store.watermarks() : [:]
    }

    public func beginTransaction(commitTime: Int64) { self.commitTime = commitTime }

    /// Binds the aggregates over `relation` (creating their tables); throws
    /// ``ConnectorError/misconfigured(_:)`` naming the aggregate's key when one cannot be kept.
    public func prepare(_ relation: RelationSchema, store: AggregateStore) throws {
        let stale = definitions.indices.filter { index in
            definitions[index].from.schema == relation.schema && definitions[index].from.table == relation.table
                && boxes[index]?.relation != relation
        }
        if stale.isEmpty { return }  // the same schema again: the fold thread goes on
        try drain(store: store)
        for index in stale {
            let definition = definitions[index]
            let bound: BoundAggregate
            do { bound = try BoundAggregate(definition, schema: relation) } catch {
                throw ConnectorError.misconfigured("sink \(sink): \(error)")
            }
            if var fold = boxes[index]?.fold {
                fold.rebind(bound)
                boxes[index] = FoldBox(fold)
            } else {
                try store.create(bound)
                lateRows[index] = Counter(label: "sluice_sink_aggregate_late_rows_total",
                                          dimensions: [("sink", sink), ("aggregate", definition.table.description)])
                lateRows[index]!.increment(by: 0)  // published from the first scrape, at 0
                boxes[index] = FoldBox(AggregateFold(bound, watermark: watermarks[definition.table.description]))
            }
        }
    }

    /// Folds a change into the aggregates over its table. A TRUNCATE empties them at once.
    public func apply(_ change: Change, store: AggregateStore) throws {
        if change.operation == .truncate {
            guard boxes.contains(where: { $0?.folds(change) == true }) else { return }
            try drain(store: store)
        }
        var rows: ChangeRows?
        var threadMask: UInt64 = 0
        for index in boxes.indices {
            guard let box = boxes[index], box.folds(change) else { continue }
            if change.operation == .truncate {
                box.fold.truncate()
                rowTimes[index] = nil
                try store.empty(box.fold.aggregate)
                continue
            }
            if !box.byCommitTime, foldsOnOwnThread, boxes.count <= FoldThread.maximumBoxes {
                threadMask |= 1 << UInt64(index)
                continue
            }
            let late: [Int64]
            if rows == nil { rows = ChangeRows(change) }
            do {
                if box.byCommitTime {
                    late = try applyByCommitTime(change, rows!, index: index, store: store)
                } else {
                    late = try box.fold.apply(change, rows: rows!, commitTime: commitTime)
                }
            } catch let error as AggregateBindError {
                throw ConnectorError.misconfigured("sink \(sink): \(error)")
            }
            if let writeAhead, box.fold.pendingCount >= writeAhead {
                let deltas = box.fold.takeDeltas()
                if !deltas.isEmpty { try store.write(deltas, of: box.fold.aggregate) }
            }
            noteLate(late, index: index)
        }
        if threadMask != 0 {
            if thread == nil { thread = FoldThread(writeAhead: writeAhead) }
            let handed: FoldThread.Output?
            do { handed = try thread!.fold(change, commitTime: commitTime, boxes: boxes, mask: threadMask) } catch {
                throw ConnectorError.misconfigured("sink \(sink): \(error)")
            }
            if let handed { try take(handed, store: store) }
        }
    }

    /// Waits for the fold thread and writes what it handed back.
    private func drain(store: AggregateStore) throws {
        guard let thread else { return }
        let handed: FoldThread.Output
        do { handed = try thread.drain() } catch {
            throw ConnectorError.misconfigured("sink \(sink): \(error)")
        }
        try take(handed, store: store)
    }

    private func take(_ handed: FoldThread.Output, store: AggregateStore) throws {
        for (aggregate, deltas) in handed.deltas { try store.write(deltas, of: aggregate) }
        for (index, starts) in handed.late { noteLate(starts, index: index) }
    }

    private func noteLate(_ late: [Int64], index: Int) {
        if late.isEmpty { return }
        lateRows[index]?.increment(by: late.count)
        for start in late {
            let note = "\(definitions[index].table) \(start)"
            guard loggedLate.count < 10_000, loggedLate.insert(note).inserted else { continue }
            logger.warning("aggregate \(definitions[index].table): a row for the window starting \(EventTime.text(start)) arrived after retain: dropped that window; not applied")
        }
    }

    /// Under `time: commit_time` a row's time is the commit time of the transaction that last wrote it,
    /// which the old row does not carry: the store keeps it per primary key.
    private func applyByCommitTime(_ change: Change, _ rows: ChangeRows, index: Int, store: AggregateStore) throws -> [Int64] {
        let box = boxes[index]!
        let aggregate = box.fold.aggregate
        let key = aggregate.schema.primaryKey
        func rowKey(_ tuple: Tuple?) -> String? {
            guard let values = tuple?.values else { return nil }
            return AggregateFold.groupKey(key.map { $0 < values.count ? values[$0].string : nil })
        }
        let oldKey = change.operation == .update || change.operation == .delete ? rowKey(change.old) : nil
        let newKey = change.operation == .delete ? nil : rowKey(change.new)
        var oldTime: Int64?
        if let oldKey {
            if let pending = rowTimes[index]?[oldKey] { oldTime = pending } else { oldTime = try store.rowTime(aggregate, key: oldKey) }
        }
        let late = try box.fold.apply(change, rows: rows, commitTime: commitTime, oldTime: oldTime)
        if let oldKey, oldKey != newKey { rowTimes[index, default: [:]][oldKey] = .some(nil) }
        if let newKey { rowTimes[index, default: [:]][newKey] = .some(commitTime) }
        return late
    }

    /// Writes every aggregate's pending deltas (called before the sink stores its position).
    public func flush(store: AggregateStore) throws {
        try drain(store: store)
        for index in boxes.indices {
            guard let box = boxes[index] else { continue }
            let deltas = box.fold.takeDeltas()
            let aggregate = box.fold.aggregate
            for (key, time) in (rowTimes.removeValue(forKey: index) ?? [:]).sorted(by: { $0.key < $1.key }) {
                try store.setRowTime(aggregate, key: key, time: time)
            }
            if !deltas.isEmpty { try store.write(deltas, of: aggregate) }
            if aggregate.definition.retain != nil, let watermark = box.fold.watermark,
               watermarks[aggregate.definition.table.description] != watermark {
                try store.retain(aggregate, cutoff: box.fold.retentionCutoff, watermark: watermark)
                watermarks[aggregate.definition.table.description] = watermark
            }
        }
    }
}

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
    /// Per definition (same index), once its source table's schema arrived: an array, so a change
    /// reaches its folds without copying them.
    private var folds: [AggregateFold?]
    /// Per definition, the source relation (id and name) its fold is bound to and whether it is placed
    /// by commit time: read per change without touching the fold.
    private var sources: [(id: UInt32, schema: String, table: String, byCommitTime: Bool)?]
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
    public var writeAhead: Int?

    public init(definitions: [AggregateDefinition], sink: String, logger: Logger) {
        self.definitions = definitions
        self.sink = sink
        self.logger = logger
        folds = Array(repeating: nil, count: definitions.count)
        sources = Array(repeating: nil, count: definitions.count)
    }

    public var isEmpty: Bool { definitions.isEmpty }

    /// Forgets the unsaved batch and reloads the watermarks: called when the sink (re)opens.
    public func reset(store: AggregateStore) throws {
        folds = Array(repeating: nil, count: definitions.count)
        sources = Array(repeating: nil, count: definitions.count)
        rowTimes.removeAll()
        watermarks = definitions.contains { $0.retain != nil } ? try store.watermarks() : [:]
    }

    public func beginTransaction(commitTime: Int64) { self.commitTime = commitTime }

    /// Binds the aggregates over `relation` (creating their tables); throws
    /// ``ConnectorError/misconfigured(_:)`` naming the aggregate's key when one cannot be kept.
    public func prepare(_ relation: RelationSchema, store: AggregateStore) throws {
        for (index, definition) in definitions.enumerated()
        where definition.from.schema == relation.schema && definition.from.table == relation.table {
            if let fold = folds[index], fold.aggregate.schema == relation { continue }
            let bound: BoundAggregate
            do { bound = try BoundAggregate(definition, schema: relation) } catch {
                throw ConnectorError.misconfigured("sink \(sink): \(error)")
            }
            if folds[index] != nil {
                folds[index]!.rebind(bound)
            } else {
                try store.create(bound)
                lateRows[index] = Counter(label: "sluice_sink_aggregate_late_rows_total",
                                          dimensions: [("sink", sink), ("aggregate", definition.table.description)])
                lateRows[index]!.increment(by: 0)  // published from the first scrape, at 0
                folds[index] = AggregateFold(bound, watermark: watermarks[definition.table.description])
            }
            sources[index] = (bound.schema.id, bound.schema.schema, bound.schema.table, bound.timeColumn == nil)
        }
    }

    /// Folds a change into the aggregates over its table. A TRUNCATE empties them at once.
    public func apply(_ change: Change, store: AggregateStore) throws {
        var rows: ChangeRows?
        for index in sources.indices where sources[index]?.id == change.relation.id
            && sources[index]!.table == change.relation.table && sources[index]!.schema == change.relation.schema {
            if change.operation == .truncate {
                folds[index]!.truncate()
                rowTimes[index] = nil
                try store.empty(folds[index]!.aggregate)
                continue
            }
            let late: [Int64]
            if rows == nil { rows = ChangeRows(change) }
            do {
                if sources[index]!.byCommitTime {
                    late = try applyByCommitTime(change, rows!, index: index, store: store)
                } else {
                    late = try folds[index]!.apply(change, rows: rows!, commitTime: commitTime)
                }
            } catch let error as AggregateBindError {
                throw ConnectorError.misconfigured("sink \(sink): \(error)")
            }
            if let writeAhead, folds[index]!.pendingCount >= writeAhead {
                let deltas = folds[index]!.takeDeltas()
                if !deltas.isEmpty { try store.write(deltas, of: folds[index]!.aggregate) }
            }
            if !late.isEmpty { lateRows[index]?.increment(by: late.count) }
            for start in late {
                let note = "\(definitions[index].table) \(start)"
                guard loggedLate.count < 10_000, loggedLate.insert(note).inserted else { continue }
                logger.warning("aggregate \(definitions[index].table): a row for the window starting \(EventTime.text(start)) arrived after retain: dropped that window; not applied")
            }
        }
    }

    /// Under `time: commit_time` a row's time is the commit time of the transaction that last wrote it,
    /// which the old row does not carry: the store keeps it per primary key.
    private func applyByCommitTime(_ change: Change, _ rows: ChangeRows, index: Int, store: AggregateStore) throws -> [Int64] {
        let aggregate = folds[index]!.aggregate
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
        let late = try folds[index]!.apply(change, rows: rows, commitTime: commitTime, oldTime: oldTime)
        if let oldKey, oldKey != newKey { rowTimes[index, default: [:]][oldKey] = .some(nil) }
        if let newKey { rowTimes[index, default: [:]][newKey] = .some(commitTime) }
        return late
    }

    /// Writes every aggregate's pending deltas (called before the sink stores its position).
    public func flush(store: AggregateStore) throws {
        for index in folds.indices where folds[index] != nil {
            let deltas = folds[index]!.takeDeltas()
            let aggregate = folds[index]!.aggregate
            for (key, time) in (rowTimes.removeValue(forKey: index) ?? [:]).sorted(by: { $0.key < $1.key }) {
                try store.setRowTime(aggregate, key: key, time: time)
            }
            if !deltas.isEmpty { try store.write(deltas, of: aggregate) }
            if aggregate.definition.retain != nil, let watermark = folds[index]!.watermark,
               watermarks[aggregate.definition.table.description] != watermark {
                try store.retain(aggregate, cutoff: folds[index]!.retentionCutoff, watermark: watermark)
                watermarks[aggregate.definition.table.description] = watermark
            }
        }
    }

    /// Rows skipped as later than `retain:` since the sink opened.
    public var droppedLate: Int { folds.reduce(0) { $0 + ($1?.droppedLate ?? 0) } }
}

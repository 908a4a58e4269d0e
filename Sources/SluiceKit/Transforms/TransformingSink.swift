import Logging

/// A sink seen through its transform keys: the runtime wraps a sink whose section sets any of
/// ``SinkTransforms/keys`` in one of these, so every connector gets tables, rename, where, columns,
/// deletes, mode and metadata without code of its own. It keeps the ``Sink`` contract of the sink it
/// wraps (same calls, same thread, same batches): tables the sink does not take are never prepared,
/// every other schema is replaced by its target schema, and each change by its transformed change (or
/// none). The sink only has to honour the column sets and keyless tables it is given.
public final class TransformingSink: Sink {
    public static var typeName: String { "transforms" }

    public let inner: any Sink
    public let transforms: SinkTransforms
    private var plans: [String: [UInt32: TableTransform?]] = [:]
    /// What every change reads or writes (the plan of the last relation a change came for, the
    /// transaction, the row buffers), behind a pointer: a class's stored `var` costs a runtime
    /// exclusivity check on each access, the pointee none.
    private let state = UnsafeMutablePointer<ApplyState>.allocate(capacity: 1)
    /// Whether any column the transforms write holds the commit time (else it is never formatted).
    private let writesCommitTime: Bool
    /// Target table → source table, so two tables never land in one.
    private var targets: [TableName: TableName] = [:]
    private var warned: Set<String> = []
    private var logger = Logger(label: "sluice.transforms")

    public init(wrapping inner: any Sink, transforms: SinkTransforms) {
        self.inner = inner
        self.transforms = transforms
        writesCommitTime = transforms.mode == .history || transforms.deletes == .soft || transforms.metadata.contains(.commit_time)
        state.initialize(to: ApplyState())
    }

    deinit {
        state.deinitialize(count: 1)
        state.deallocate()
    }

    private struct ApplyState {
        /// The plan of the last relation a change came for, looked up once per run of its changes.
        var current: (topic: String, id: UInt32, plan: TableTransform?)?
        var transaction = TransactionInfo(xid: 0, commitTime: 0)
        /// Target rows are written here, change after change (nothing allocated per row).
        var buffers = RowBuffers()
    }

    public init(config: ConnectorConfig) throws {
        throw config.error("type", "transforms is not a sink type; the transform keys go on a sink's own section")
    }

    public func open(context: SinkContext) throws -> [String: SinkPosition] {
        logger = context.logger
        return try inner.open(context: context)
    }

    public func beginBatch() throws { try inner.beginBatch() }

    public func beginTransaction(_ begin: BeginRecord, topic: String, offset: UInt64) throws {
        state.pointee.transaction = TransactionInfo(xid: begin.xid, commitTime: begin.commitTime, withText: writesCommitTime)
        try inner.beginTransaction(begin, topic: topic, offset: offset)
    }

    public func prepare(_ relation: RelationSchema, topic: String) throws {
        if case let plan?? = plans[topic]?[relation.id], plan.source == relation {
            return try inner.prepare(plan.target, topic: topic)
        }
        try plan(relation, topic)
    }

    private func plan(_ relation: RelationSchema, _ topic: String) throws {
        state.pointee.current = nil
        guard transforms.includes(name(relation)) else {
            plans[topic, default: [:]][relation.id] = .some(nil)
            return
        }
        // A transform the table's schema makes impossible is a mistake in the file: the sink stops
        // (shown failed, the rest goes on) instead of retrying what cannot succeed.
        let plan: TableTransform
        do { plan = try TableTransform(source: relation, transforms: transforms) } catch let ConnectorError.misconfigured(reason) {
            throw ConnectorError.fatal(reason + Self.stopNote)
        }
        let target = TableName(schema: plan.target.schema, table: plan.target.table)
        if let other = targets[target], other != name(relation) {
            throw ConnectorError.fatal(transforms.error("rename", """
                \(name(relation)) and \(other) would both be written to \(target); rename one of them
                """).description + Self.stopNote)
        }
        targets[target] = name(relation)
        plans[topic, default: [:]][relation.id] = plan
        try inner.prepare(plan.target, topic: topic)
    }

    public func apply(_ change: Change) throws {
        let plan: TableTransform?
        if let current = state.pointee.current, current.id == change.relation.id, current.topic == change.topic {
            plan = current.plan
        } else {
            guard let known = plans[change.topic]?[change.relation.id] else {
                throw ConnectorError.fatal("a change to \(change.relation.qualifiedName) at offset \(change.offset) came before its schema")
            }
            plan = known
            state.pointee.current = (change.topic, change.relation.id, known)
        }
        guard let plan else { return }
        // Under deletes: soft or ignore, a primary-key change is the old key's delete (marked, or kept) and
        // the new key's insert, as Debezium shows it, not a move of the row. A new row lacking an unchanged
        // TOASTed value (no full old row to take it from) cannot be inserted whole: it moves, and says so.
        if plan.rules.mode == .mirror, plan.rules.deletes != .apply, DebeziumEnvelope.changesKey(change) {
            if change.new!.hasUnchanged && change.oldKind != .full {
                warn("""
                    a primary-key change of \(change.relation.qualifiedName) left a TOASTed value unchanged (not sent): \
                    the row moves to its new key instead of a delete and an insert (REPLICA IDENTITY FULL makes this exact)
                    """)
            } else {
                var gone = change
                (gone.operation, gone.new) = (.delete, nil)
                var arrived = change
                (arrived.operation, arrived.old, arrived.oldKind) = (.insert, nil, .none)
                if change.oldKind == .full, let old = change.old, let new = change.new, new.hasUnchanged {
                    arrived.new = Tuple(values: TableTransform.filled(new.values, from: old.values))
                }
                for part in [gone, arrived] {
                    if let out = try transformed(part, plan) { try inner.apply(out) }
                }
                return
            }
        }
        if let out = try transformed(change, plan) { try inner.apply(out) }
    }

    private func transformed(_ change: Change, _ plan: TableTransform) throws -> Change? {
        try plan.transform(change, in: state.pointee.transaction, buffers: &state.pointee.buffers) { message in warn(message) }
    }

    private func warn(_ message: String) {
        if warned.insert(message).inserted { logger.warning("\(message)") }
    }

    public func commitTransaction(_ commit: CommitRecord, position: SinkPosition) throws {
        try inner.commitTransaction(commit, position: position)
    }

    public func commitBatch(positions: [SinkPosition]) throws { try inner.commitBatch(positions: positions) }
    public func rollbackBatch() { inner.rollbackBatch() }
    public func close() { inner.close() }
    public func probe() throws { try inner.probe() }
    public func readPositions() throws -> [String: SinkPosition]? { try inner.readPositions() }
    public func check(logger: Logger) -> [CheckFinding] { inner.check(logger: logger) }

    static let stopNote = ". The sink stopped (the rest goes on): fix the key, then restart sluice"

    /// What `check` and `run` find binding `transforms` to the current `schemas` of a source's tables:
    /// each table's keys, and two tables landing in one.
    public static func problems(_ transforms: SinkTransforms, schemas: [RelationSchema]) -> [String] {
        var problems: [String] = []
        var targets: [TableName: String] = [:]
        for schema in schemas where transforms.includes(TableName(schema: schema.schema, table: schema.table)) {
            do {
                let plan = try TableTransform(source: schema, transforms: transforms)
                let target = TableName(schema: plan.target.schema, table: plan.target.table)
                if let other = targets[target] {
                    problems.append(transforms.error("rename", "\(schema.qualifiedName) and \(other) would both be written to \(target); rename one of them").description)
                }
                targets[target] = schema.qualifiedName
            } catch let ConnectorError.misconfigured(reason) {
                problems.append(reason)
            } catch {
                problems.append("\(error)")
            }
        }
        return problems
    }

    private func name(_ relation: RelationSchema) -> TableName { TableName(schema: relation.schema, table: relation.table) }
}

import Metrics

/// Frames a source's transactions in a topic: begin, the schema of each table at its first change,
/// the changes, and the commit marker with its event counts.
///
/// Sources use this instead of encoding records themselves. Confined to the source's thread.
/// Counts what it commits: `sluice_source_events_total` and `sluice_source_transactions_total`.
public final class TransactionWriter {
    public let writer: any TopicWriter
    private var open: BeginRecord?
    /// The begin record is written with the transaction's first record, so a transaction that
    /// captured nothing (only filtered tables, only logical messages) leaves no trace.
    private var beginWritten = false
    private var eventCount: UInt64 = 0
    private var totalEvents: UInt64
    private var relationsWritten: Set<UInt32> = []

    private let eventsCounter: Counter
    private let transactionsCounter: Counter

    public init(writer: any TopicWriter) {
        self.writer = writer
        totalEvents = writer.lastCommit?.commit.totalEvents ?? 0
        // A source's topic is named after it.
        eventsCounter = Counter(label: "sluice_source_events_total", dimensions: [("source", writer.topic.name)])
        transactionsCounter = Counter(label: "sluice_source_transactions_total", dimensions: [("source", writer.topic.name)])
    }

    /// True between `begin` and `commit`.
    public var isOpen: Bool { open != nil }

    /// The last commit appended: a restarted source resumes after its `endLSN`.
    public var lastCommit: CommittedPosition? { writer.lastCommit }

    public func begin(_ begin: BeginRecord) throws {
        precondition(open == nil, "begin inside an open transaction")
        open = begin
        beginWritten = false
        eventCount = 0
        relationsWritten.removeAll(keepingCapacity: true)
    }

    private func writeBegin() throws {
        guard !beginWritten, let open else { return }
        try writer.append(.begin) { open.encode(into: &$0) }
        beginWritten = true
    }

    /// Writes `relation` unless this transaction already carries it.
    public func ensureRelation(_ relation: RelationSchema) throws {
        guard !relationsWritten.contains(relation.id) else { return }
        try writeBegin()
        try writer.append(.relation) { relation.encode(into: &$0) }
        relationsWritten.insert(relation.id)
    }

    /// Writes `relation` again after a schema change inside the transaction.
    public func relationChanged(_ relation: RelationSchema) throws {
        relationsWritten.remove(relation.id)
        try ensureRelation(relation)
    }

    /// Appends a change; tuples are in the tuple layout (see ``Tuple``). The relation must be written first.
    public func change(_ operation: ChangeOperation, relation: UInt32, lsn: LSN,
                       oldKind: OldValuesKind = .none, old: UnsafeRawBufferPointer? = nil,
                       new: UnsafeRawBufferPointer? = nil, truncateOptions: UInt8 = 0) throws {
        precondition(open != nil, "change outside a transaction")
        precondition(relationsWritten.contains(relation), "change before its relation")
        try writeBegin()
        try writer.append(.change) {
            ChangeRecord.encode(operation: operation, relationID: relation, lsn: lsn, oldKind: oldKind, old: old,
                                new: new, truncateOptions: truncateOptions, into: &$0)
        }
        eventCount += 1
    }

    /// Appends a change built by `encode` (for sources that do not receive pgoutput tuples).
    public func change(_ encode: (inout RecordBody) throws -> Void) throws {
        precondition(open != nil, "change outside a transaction")
        try writeBegin()
        try writer.append(.change, encode)
        eventCount += 1
    }

    /// Closes the transaction. One that wrote nothing is dropped unless `keepEmpty` (a snapshot that
    /// found no rows still marks its place).
    public func commit(commitLSN: LSN, endLSN: LSN, commitTime: Micros, keepEmpty: Bool = false) throws {
        guard let begin = open else { preconditionFailure("commit without begin") }
        if !beginWritten && !keepEmpty {
            open = nil
            return
        }
        try writeBegin()
        totalEvents += eventCount
        let record = CommitRecord(xid: begin.xid, commitLSN: commitLSN, endLSN: endLSN, commitTime: commitTime,
                                  eventCount: eventCount, totalEvents: totalEvents)
        try writer.append(.commit) { record.encode(into: &$0) }
        open = nil
        eventsCounter.increment(by: Int64(eventCount))
        transactionsCounter.increment()
    }

    /// Forgets an interrupted transaction: its records are removed from the topic.
    public func abort() throws {
        open = nil
        beginWritten = false
        eventCount = 0
        relationsWritten.removeAll(keepingCapacity: true)
        try writer.abortTransaction()
        totalEvents = writer.lastCommit?.commit.totalEvents ?? 0
    }
}

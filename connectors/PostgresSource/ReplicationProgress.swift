/// The replication loop's decisions, without I/O or a clock of its own: which transactions the topic
/// already holds (the slot sends them again after a restart), and when to confirm what to the slot.
/// Times are monotonic nanoseconds passed in by the loop.
///
/// Confirming follows two rules. The slot learns a transaction's end LSN only once its commit marker is
/// durable in the topic, promptly but at most every `confirmIntervalNanos` while data flows (each
/// update that moves the slot may make the server save it). And when nothing is open and everything
/// written is durable, the slot may move on to where the server's stream is (keepalives and other
/// tables' traffic carry it), so a quiet slot does not pin WAL — but only past a position first
/// recorded in the source's state (`record`), so that on the next start a slot found further ahead
/// than the topic and that record proves confirmed transactions were lost.
struct ReplicationProgress {
    typealias Beyond = SourceState.ConfirmedBeyond

    /// A status update goes out at least this often, even with nothing new to confirm.
    static let statusIntervalNanos: UInt64 = 10_000_000_000
    /// While data flows, updates are at most this frequent.
    static let confirmIntervalNanos: UInt64 = 100_000_000
    /// Positions past the topic are recorded at most this often, and only after this long without a
    /// captured commit (while captured transactions flow, their commits move the slot).
    static let recordIntervalNanos: UInt64 = 1_000_000_000

    enum Confirm: Equatable {
        case none
        /// Save this record, report it with ``recorded(_:now:)``, then ask again.
        case record(Beyond)
        case send(written: UInt64, flushed: UInt64)
    }

    /// Transactions whose commit record starts before this are already in the topic: the end LSN of
    /// the last commit marker (for the initial snapshot, its consistent point).
    private(set) var resumeLSN: UInt64
    private(set) var serverWALEnd: UInt64 = 0
    private(set) var received: UInt64 = 0
    private(set) var reportedFlush: UInt64
    private(set) var replyRequested = false
    private(set) var inTransaction = false
    /// The transaction being received is already in the topic.
    private(set) var skipping = false
    private(set) var beyond: Beyond?
    private var lastStatus: UInt64
    private var lastCommitWritten: UInt64 = 0
    private var lastRecord: UInt64?

    init(lastCommitEnd: UInt64?, beyond: Beyond?, now: UInt64) {
        resumeLSN = lastCommitEnd ?? 0
        reportedFlush = lastCommitEnd ?? 0
        self.beyond = beyond
        lastStatus = now
    }

    // MARK: Messages

    mutating func keepalive(walEnd: UInt64, replyRequested reply: Bool) {
        serverWALEnd = max(serverWALEnd, walEnd)
        if reply { replyRequested = true }
    }

    mutating func data(walStart: UInt64, walEnd: UInt64) {
        received = max(received, walStart)
        serverWALEnd = max(serverWALEnd, walEnd)
    }

    /// A transaction begins; true when it is to be written (false: the topic already holds it).
    mutating func begin(finalLSN: UInt64) -> Bool {
        inTransaction = true
        skipping = finalLSN < resumeLSN
        return !skipping
    }

    /// The transaction ends; true when it was written (its commit marker is to be appended).
    mutating func commit(endLSN: UInt64, now: UInt64) -> Bool {
        inTransaction = false
        if skipping {
            skipping = false
            return false
        }
        resumeLSN = endLSN
        lastCommitWritten = now
        return true
    }

    // MARK: Confirming

    /// What to tell the slot now. `durable` is the topic's durable commit marker (offset, end LSN);
    /// `allDurable` whether every commit marker written is durable; `idle` whether the stream was quiet.
    mutating func confirm(now: UInt64, durable: (offset: UInt64, endLSN: UInt64)?, allDurable: Bool,
                          idle: Bool, force: Bool = false) -> Confirm {
        var flush = max(reportedFlush, durable?.endLSN ?? 0)
        if !inTransaction && allDurable && serverWALEnd > flush {
            let recorded = beyond.flatMap { $0.offset == durable?.offset ? $0.lsn : nil }
            let quiet = idle || now &- lastCommitWritten >= Self.recordIntervalNanos
            if let recorded, recorded >= serverWALEnd {
                flush = serverWALEnd
            } else if quiet && lastRecord.map({ now &- $0 >= Self.recordIntervalNanos }) ?? true {
                return .record(Beyond(offset: durable?.offset, lsn: serverWALEnd))
            } else if let recorded {
                flush = max(flush, recorded)
            }
        }
        let elapsed = now &- lastStatus
        let news = flush > reportedFlush && (idle || elapsed >= Self.confirmIntervalNanos)
        guard force || news || replyRequested || elapsed >= Self.statusIntervalNanos else { return .none }
        return .send(written: max(received, flush), flushed: flush)
    }

    /// The record asked for was saved (or, nil, could not be: then nothing past the topic is confirmed
    /// beyond the last record until the next try).
    mutating func recorded(_ record: Beyond?, now: UInt64) {
        lastRecord = now
        if let record { beyond = record }
    }

    mutating func sent(flushed: UInt64, now: UInt64) {
        reportedFlush = flushed
        replyRequested = false
        lastStatus = now
    }
}

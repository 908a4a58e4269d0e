/// A record as read from a topic: its offset, kind and body bytes.
///
/// `storage` is the reader's buffer: use the record before asking the reader for the next one,
/// and copy what you keep.
public struct RawRecord: Sendable {
    public let offset: UInt64
    public let kind: UInt8
    public let storage: [UInt8]
    public let body: Range<Int>

    public init(offset: UInt64, kind: UInt8, storage: [UInt8], body: Range<Int>) {
        self.offset = offset
        self.kind = kind
        self.storage = storage
        self.body = body
    }

    public func decode() throws(RecordError) -> TopicRecord {
        try TopicRecord.decode(kind: kind, storage: storage, body: body)
    }
}

/// The position of a commit marker in a topic: where a consumer that applied it resumes after.
public struct CommittedPosition: Sendable, Equatable {
    /// Offset of the commit marker.
    public var offset: UInt64
    public var commit: CommitRecord

    public init(offset: UInt64, commit: CommitRecord) {
        self.offset = offset
        self.commit = commit
    }
}

/// An ordered, durable log of one source's transactions.
///
/// Readers see records only up to the last durable commit marker (read-committed), so they never
/// observe half a transaction or one that a crash could take back.
public protocol Topic: AnyObject, Sendable {
    var name: String { get }
    /// The last durable commit marker, or nil while the topic has none.
    var durableCommit: CommittedPosition? { get }
    /// The first offset still retained.
    var firstOffset: UInt64 { get }
    /// Bytes on disk.
    var sizeBytes: UInt64 { get }
    /// Blocks until a commit marker beyond `offset` is durable, or the timeout passes; true if there is one.
    func waitForCommit(after offset: UInt64?, timeoutMillis: Int) -> Bool
    /// A reader positioned at `offset` (clamped to the first retained offset).
    func makeReader(from offset: UInt64) throws -> any TopicReader
    /// Reads the record at `offset` if it is a commit marker (for lag in events and seconds).
    func commitMarker(at offset: UInt64) throws -> CommitRecord?
    /// The durable record at `offset`, or nil when there is none (not yet written, or deleted).
    func record(at offset: UInt64) throws -> TopicRecord?
    /// Why the topic is known to have lost committed transactions after its last commit marker
    /// (recorded by its source, which refuses to capture over the gap); nil when it is whole.
    /// A sink applies everything before the gap, then stops instead of reporting itself caught up.
    var damage: String? { get }
    /// Throws (a transient error) when the topic's storage cannot be read now, servers unreachable:
    /// an unknown end is then not an empty topic.
    func requireReadable() throws
}

extension Topic {
    public func requireReadable() throws {}
}

/// Reads a topic in order. Confined to one thread.
public protocol TopicReader: AnyObject {
    /// The offset of the record `next` returns.
    var position: UInt64 { get }
    /// The next record with an offset below `limit`, or nil when there is none yet.
    func next(limit: UInt64) throws -> RawRecord?
}

/// Appends a source's transactions to its topic. One writer per topic, confined to the source's thread.
///
/// Records of a transaction become visible to readers, and durable, only once its commit marker is
/// appended and synced; ``durableCommit`` then moves, and a source may confirm the transaction's
/// `endLSN` to its database.
public protocol TopicWriter: AnyObject {
    var topic: any Topic { get }
    /// The offset the next record gets.
    var nextOffset: UInt64 { get }
    /// The last commit marker appended (durable or not yet).
    var lastCommit: CommittedPosition? { get }
    /// Appends one record; `body` writes its bytes. Returns the record's offset.
    @discardableResult
    func append(_ kind: RecordKind, _ body: (inout RecordBody) throws -> Void) throws -> UInt64
    /// Drops the records appended after the last commit marker (an interrupted transaction).
    func abortTransaction() throws
    /// Makes every appended commit durable before returning.
    func flush() throws
    /// Makes what is committed durable and releases the topic; the writer is not used afterwards.
    func close()
    /// Called when the storage is full, with no transaction open: arrange for what every reader has
    /// passed to become deletable by retention (the embedded log starts a new segment).
    func makeRoom() throws
    /// Records that transactions after the last commit marker were lost (nil: no longer, the
    /// files were restored), so readers and `status` say so instead of reporting caught up.
    func recordDamage(_ reason: String?) throws
    /// Throws what keeps appended commits from becoming durable, for a writer that makes them durable
    /// in the background (a broker's acknowledgements): an idle source learns of it without appending.
    func checkHealth() throws
}

extension TopicWriter {
    public func makeRoom() throws {}
    public func checkHealth() throws {}
}

/// The topic's storage ran out of space (ENOSPC, a quota). Nothing durable is lost: the runtime
/// pauses the source until space returns, while sinks drain and retention frees space.
public struct TopicStorageFull: Error, CustomStringConvertible {
    /// The file or directory that could not grow.
    public let path: String

    public init(path: String) { self.path = path }

    public var description: String { "disk full: no space left on the device of \(path)" }
}

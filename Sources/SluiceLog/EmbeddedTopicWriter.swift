import Foundation
import Logging
import Metrics
import SluiceKit

/// Appends to an embedded topic. Confined to the source's thread; a flusher thread makes commits
/// durable in groups (one `fdatasync` covers every commit written while the previous one ran) and
/// then publishes the new durable commit to readers and to the source.
public final class EmbeddedTopicWriter: TopicWriter {
    public var topic: any Topic { embedded }
    let embedded: EmbeddedTopic
    let segmentBytes: UInt64

    private var activeBase: UInt64
    private var fd: Int32
    private var indexFD: Int32
    /// Bytes of the active segment written to the file.
    private var fileSize: UInt64
    /// Records not yet written to the file: a transaction's tail, written at its commit marker.
    private var pending: [UInt8] = []
    private var pendingIndex: [(offset: UInt64, position: UInt64)] = []
    private var lastIndexed: UInt64
    /// End of the last commit marker in the file: where an aborted transaction is cut back to.
    private var commitEnd: UInt64
    public private(set) var nextOffset: UInt64
    public private(set) var lastCommit: CommittedPosition?
    private let flusher: Flusher
    private let bytesCounter: Counter

    /// Bytes buffered before a long transaction is written out ahead of its commit marker.
    static let pendingLimit = 1 << 20

    /// Opens `topic` for appending after recovering its directory.
    public init(topic: EmbeddedTopic, segmentBytes: UInt64 = RetentionPolicy.defaultSegmentBytes) throws {
        embedded = topic
        self.segmentBytes = segmentBytes
        try FileManager.default.createDirectory(atPath: topic.directory, withIntermediateDirectories: true)
        let recovered = try Recovery.recover(directory: topic.directory, logger: topic.logger)
        activeBase = recovered.activeBase
        fileSize = recovered.activeSize
        commitEnd = recovered.activeSize
        nextOffset = recovered.nextOffset
        lastCommit = recovered.lastCommit
        lastIndexed = recovered.index.last?.position ?? 0
        let path = topic.directory + "/" + SegmentFile.name(base: activeBase, suffix: "log")
        fd = open(path, O_WRONLY | O_APPEND | O_CLOEXEC)
        guard fd >= 0 else { throw LogError.errno("cannot open", path) }
        let indexPath = topic.directory + "/" + SegmentFile.name(base: activeBase, suffix: "idx")
        indexFD = open(indexPath, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o644)
        pending.reserveCapacity(Self.pendingLimit + 64 * 1024)
        flusher = Flusher(topic: topic, fd: fd)
        bytesCounter = Counter(label: "sluice_topic_bytes_total", dimensions: [("topic", topic.name)])
        topic.state.lock()
        topic.hasWriter = true
        topic.durable = recovered.lastCommit
        topic.durableBound = recovered.lastCommit.map { _ in
            ReadBound(segmentBase: recovered.activeBase, position: recovered.activeSize)
        }
        topic.state.unlock()
        flusher.start()
    }

    deinit {
        close()
    }

    private var closed = false

    /// Makes everything durable and stops the flusher.
    public func close() {
        guard !closed else { return }
        closed = true
        try? flush()
        flusher.stop()
        Glibc.close(indexFD)
        embedded.state.lock()
        embedded.hasWriter = false
        embedded.state.unlock()
    }

    @discardableResult
    public func append(_ kind: RecordKind, _ encode: (inout RecordBody) throws -> Void) throws -> UInt64 {
        if let failure = flusher.failure { throw failure }
        let start = pending.count
        pending.append(contentsOf: repeatElement(0, count: Frame.headerSize))
        // Swapped in and out, never assigned: a second reference would make every append copy the buffer.
        var body = RecordBody()
        swap(&body.bytes, &pending)
        do {
            try encode(&body)
        } catch {
            swap(&body.bytes, &pending)
            pending.removeSubrange(start...)
            throw error
        }
        swap(&body.bytes, &pending)
        guard pending.count - start - Frame.headerSize <= Frame.maxBodySize else {
            pending.removeSubrange(start...)
            throw LogError("record of \(pending.count - start) bytes exceeds the log's limit")
        }
        let offset = nextOffset
        Frame.seal(&pending, at: start, kind: kind.rawValue, offset: offset)
        let position = fileSize + UInt64(start)
        if position - lastIndexed >= SegmentIndex.interval {
            pendingIndex.append((offset, position))
            lastIndexed = position
        }
        nextOffset += 1
        if kind == .commit {
            let commit = CommittedPosition(offset: offset,
                                           commit: try Self.commitRecord(in: pending, body: (start + Frame.headerSize)..<pending.count))
            try writePending()
            writeCommittedIndex()
            commitEnd = fileSize
            lastCommit = commit
            flusher.written(DurableMark(commit: commit, segmentBase: activeBase, end: fileSize))
            if fileSize >= segmentBytes { try roll() }
        } else if pending.count >= Self.pendingLimit {
            try writePending()
        }
        return offset
    }

    /// Decoded in a function of its own so the cursor's reference to `pending` ends here: one still
    /// alive at `writePending` made `removeAll(keepingCapacity:)` copy the buffer — a fresh allocation
    /// of its whole capacity (a page larger each time) and an munmap per commit.
    private static func commitRecord(in bytes: [UInt8], body: Range<Int>) throws -> CommitRecord {
        var cursor = RecordCursor(bytes, range: body)
        return try CommitRecord.decode(&cursor)
    }

    private func writePending() throws {
        guard !pending.isEmpty else { return }
        let path = embedded.directory
        do {
            try pending.withUnsafeBytes { try SegmentFile.writeAll(fd, $0, path: path) }
        } catch {
            // A short write (a full disk) must not leave bytes the next append would land behind.
            _ = ftruncate(fd, off_t(fileSize))
            throw error
        }
        fileSize += UInt64(pending.count)
        bytesCounter.increment(by: Int64(pending.count))
        pending.removeAll(keepingCapacity: true)
    }

    /// Written at each commit marker, so entries never describe records an abort may cut away.
    private func writeCommittedIndex() {
        guard !pendingIndex.isEmpty, indexFD >= 0 else { return }
        let bytes = SegmentIndex.encode(pendingIndex[...])
        _ = bytes.withUnsafeBytes { write(indexFD, $0.baseAddress, $0.count) }
        pendingIndex.removeAll(keepingCapacity: true)
    }

    private func roll() throws {
        writeCommittedIndex()
        try Recovery.createSegment(directory: embedded.directory, base: nextOffset)
        let path = embedded.directory + "/" + SegmentFile.name(base: nextOffset, suffix: "log")
        let newFD = open(path, O_WRONLY | O_APPEND | O_CLOEXEC)
        guard newFD >= 0 else { throw LogError.io("cannot open", path) }
        flusher.retire(fd, replacement: newFD)
        fd = newFD
        Glibc.close(indexFD)
        indexFD = open(embedded.directory + "/" + SegmentFile.name(base: nextOffset, suffix: "idx"),
                       O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o644)
        activeBase = nextOffset
        fileSize = UInt64(SegmentFile.headerSize)
        commitEnd = fileSize
        lastIndexed = 0
    }

    public func abortTransaction() throws {
        pending.removeAll(keepingCapacity: true)
        pendingIndex.removeAll(keepingCapacity: true)
        if fileSize > commitEnd {
            guard ftruncate(fd, off_t(commitEnd)) == 0 else {
                throw LogError.errno("cannot truncate", embedded.directory)
            }
            fileSize = commitEnd
        }
        lastIndexed = min(lastIndexed, commitEnd)
        nextOffset = lastCommit.map { $0.offset + 1 } ?? activeBase
    }

    public func flush() throws {
        guard let lastCommit else { return }
        try flusher.waitDurable(through: lastCommit.offset)
    }

    public func recordDamage(_ reason: String?) throws {
        let path = embedded.damagePath
        guard let reason else {
            if unlink(path) == 0 { SegmentFile.syncDirectory(embedded.directory) }
            return
        }
        let fd = open(path + ".tmp", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw LogError.io("cannot create", path) }
        defer { Glibc.close(fd) }
        try Array(reason.utf8).withUnsafeBytes { try SegmentFile.writeAll(fd, $0, path: path) }
        guard fsync(fd) == 0, rename(path + ".tmp", path) == 0 else { throw LogError.io("cannot write", path) }
        SegmentFile.syncDirectory(embedded.directory)
    }

    /// Starts a new segment that opens with a copy of the last commit marker (an empty transaction
    /// at the same LSN), so retention may delete every older segment once the sinks have passed it:
    /// it always keeps the segment of the last commit marker, which a restart resumes from.
    public func makeRoom() throws {
        try abortTransaction()
        // Nothing to gain when the active segment holds no more than such a copy.
        guard let last = lastCommit, nextOffset - activeBase > 2 else { return }
        try roll()
        let begin = BeginRecord(xid: last.commit.xid, commitLSN: last.commit.commitLSN, commitTime: last.commit.commitTime)
        try append(.begin) { begin.encode(into: &$0) }
        var checkpoint = last.commit
        checkpoint.eventCount = 0
        try append(.commit) { checkpoint.encode(into: &$0) }
        try flush()
    }
}

/// A commit marker written to a segment file, with the end of its bytes.
struct DurableMark {
    let commit: CommittedPosition
    let segmentBase: UInt64
    let end: UInt64
}

/// The group-commit thread of one topic writer.
final class Flusher: @unchecked Sendable {
    private let topic: EmbeddedTopic
    // Guarded by `topic.state`.
    private var activeFD: Int32
    private var retired: [Int32] = []
    private var written: DurableMark?
    private var stopping = false
    private var thread: Thread?
    // Guarded by `topic.state`.
    private var failed: (any Error)?

    /// Why the flusher stopped, if it did: every later append and flush fails with it.
    var failure: (any Error)? {
        topic.state.lock()
        defer { topic.state.unlock() }
        return failed
    }

    init(topic: EmbeddedTopic, fd: Int32) {
        self.topic = topic
        activeFD = fd
    }

    func start() {
        let thread = Thread { [self] in run() }
        thread.name = "sluice-flush-\(topic.name)"
        thread.start()
        self.thread = thread
    }

    func written(_ mark: DurableMark) {
        topic.state.lock()
        written = mark
        topic.state.broadcast()
        topic.state.unlock()
    }

    func retire(_ fd: Int32, replacement: Int32) {
        topic.state.lock()
        retired.append(fd)
        activeFD = replacement
        topic.state.unlock()
    }

    func waitDurable(through offset: UInt64) throws {
        topic.state.lock()
        defer { topic.state.unlock() }
        while (topic.durable?.offset ?? 0) < offset || topic.durable == nil {
            if let failed { throw failed }
            topic.state.wait()
        }
    }

    func stop() {
        topic.state.lock()
        stopping = true
        topic.state.broadcast()
        while thread != nil { topic.state.wait() }
        topic.state.unlock()
    }

    private func run() {
        topic.state.lock()
        while true {
            while !stopping && (written == nil || written?.commit.offset == topic.durable?.offset) {
                topic.state.wait()
            }
            if stopping && (written == nil || written?.commit.offset == topic.durable?.offset) { break }
            let target = written!
            let toRetire = retired
            retired.removeAll()
            let fd = activeFD
            topic.state.unlock()

            Failpoint.hit("log.before_fsync")
            var error: (any Error)?
            for old in toRetire {
                if error == nil && fdatasync(old) != 0 { error = LogError.io("fdatasync failed in", topic.directory) }
                Glibc.close(old)
            }
            if error == nil && fdatasync(fd) != 0 { error = LogError.io("fdatasync failed in", topic.directory) }
            if !toRetire.isEmpty { SegmentFile.syncDirectory(topic.directory) }
            if error == nil { Failpoint.hit("log.after_fsync") }

            topic.state.lock()
            if let error {
                // The kernel may have dropped the dirty pages: nothing written since the last sync can be
                // trusted, so this writer stops; a new one recovers the files from the last valid commit.
                failed = error
                topic.state.broadcast()
                break
            }
            topic.durable = target.commit
            topic.durableBound = ReadBound(segmentBase: target.segmentBase, position: target.end)
            topic.state.broadcast()
        }
        for old in retired { Glibc.close(old) }
        retired.removeAll()
        Glibc.close(activeFD)
        thread = nil
        topic.state.broadcast()
        topic.state.unlock()
    }
}

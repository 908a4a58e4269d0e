import Foundation
import Logging
import SluiceKit

/// A topic of the embedded log: one directory of segment files.
///
/// In the process that writes it, the durable position is what the writer's flusher last synced.
/// Elsewhere (e.g. `sluice tail` beside a running daemon) it is found by scanning the files for the
/// last valid commit marker.
public final class EmbeddedTopic: Topic, @unchecked Sendable {
    public let name: String
    public let directory: String
    let logger: Logger

    // Guarded by `state`.
    let state = NSCondition()
    var durable: CommittedPosition?
    /// Where the bytes of `durable` end: readers never read past it.
    var durableBound: ReadBound?
    var hasWriter = false
    private var scan = CommitScan()

    init(name: String, directory: String, logger: Logger) {
        self.name = name
        self.directory = directory
        self.logger = logger
    }

    /// Opens the topic in `directory` for reading, creating nothing.
    public static func openForReading(name: String, directory: String, logger: Logger) -> EmbeddedTopic {
        EmbeddedTopic(name: name, directory: directory, logger: logger)
    }

    public var durableCommit: CommittedPosition? {
        state.lock()
        defer { state.unlock() }
        refreshFromDisk()
        return durable
    }

    /// The end of the durable bytes, for readers.
    func readBound() -> ReadBound? {
        state.lock()
        defer { state.unlock() }
        if !hasWriter && durableBound == nil { refreshFromDisk() }
        return durableBound
    }

    /// Without a writer in this process, the files are the truth. Call with `state` locked.
    private func refreshFromDisk() {
        guard !hasWriter else { return }
        let found = scan.lastCommit(in: directory)
        durable = found?.commit
        durableBound = found.map { ReadBound(segmentBase: $0.segmentBase, position: $0.end) }
    }

    public var firstOffset: UInt64 { SegmentFile.list(directory).first ?? 0 }

    public var sizeBytes: UInt64 {
        let files = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        return files.reduce(0) { total, file in
            let attributes = try? FileManager.default.attributesOfItem(atPath: directory + "/" + file)
            return total + ((attributes?[.size] as? NSNumber)?.uint64Value ?? 0)
        }
    }

    public func waitForCommit(after offset: UInt64?, timeoutMillis: Int) -> Bool {
        let deadline = Date(timeIntervalSinceNow: Double(timeoutMillis) / 1000)
        state.lock()
        defer { state.unlock() }
        while true {
            refreshFromDisk()
            if let durable, offset.map({ durable.offset > $0 }) ?? true { return true }
            if hasWriter {
                if !state.wait(until: deadline) { return false }
            } else {
                state.unlock()
                usleep(50_000)
                state.lock()
                if Date() >= deadline { return false }
            }
        }
    }

    func publishDurable(_ position: CommittedPosition) {
        state.lock()
        durable = position
        state.broadcast()
        state.unlock()
    }

    public func makeReader(from offset: UInt64) throws -> any TopicReader {
        try EmbeddedTopicReader(topic: self, from: offset)
    }

    /// `<topic>/DAMAGED`: the reason a source gave for refusing to capture over a gap.
    var damagePath: String { directory + "/DAMAGED" }

    /// The source's note (`DAMAGED`), or, read without a writer in this process, damage found in the middle
    /// of the newest segment (the writer's recovery cuts that back when it opens the topic).
    public var damage: String? {
        if let data = FileManager.default.contents(atPath: damagePath) { return String(decoding: data, as: UTF8.self) }
        state.lock()
        defer { state.unlock() }
        guard !hasWriter else { return nil }
        refreshFromDisk()
        return scan.damage?.description
    }

    public func commitMarker(at offset: UInt64) throws -> CommitRecord? {
        guard case let .commit(commit)? = try record(at: offset) else { return nil }
        return commit
    }

    /// The durable record at `offset`, or nil when there is none (not yet written, or deleted).
    public func record(at offset: UInt64) throws -> TopicRecord? {
        guard let end = durableCommit?.offset, offset <= end else { return nil }
        let reader = try EmbeddedTopicReader(topic: self, from: offset)
        guard reader.position == offset, let raw = try reader.next(limit: offset + 1) else { return nil }
        return try raw.decode()
    }

    /// The segments, oldest first: base offset, bytes, and when it was last written.
    public func segments() -> [(base: UInt64, bytes: UInt64, modified: Date)] {
        SegmentFile.list(directory).map { base in
            let path = directory + "/" + SegmentFile.name(base: base, suffix: "log")
            let attributes = try? FileManager.default.attributesOfItem(atPath: path)
            return (base, (attributes?[.size] as? NSNumber)?.uint64Value ?? 0,
                    attributes?[.modificationDate] as? Date ?? Date())
        }
    }

    /// Deletes whole segments whose records all lie before `offset`. Keeps the segment holding the
    /// last durable commit marker, which a restarted writer resumes from.
    /// Returns the number of segments deleted.
    @discardableResult
    public func deleteSegments(before offset: UInt64) -> Int {
        let bases = SegmentFile.list(directory)
        guard let last = durableCommit?.offset else { return 0 }
        let limit = min(offset, bases.last(where: { $0 <= last }) ?? 0)
        var deleted = 0
        for (i, base) in bases.enumerated() where i + 1 < bases.count && bases[i + 1] <= limit {
            unlink(directory + "/" + SegmentFile.name(base: base, suffix: "log"))
            unlink(directory + "/" + SegmentFile.name(base: base, suffix: "idx"))
            deleted += 1
        }
        if deleted > 0 { SegmentFile.syncDirectory(directory) }
        return deleted
    }
}

/// A file position readers must not read past: the end of the last durable commit marker.
struct ReadBound: Equatable {
    let segmentBase: UInt64
    let position: UInt64
}

/// Finds the last valid commit marker on disk, continuing from where the previous call stopped.
struct CommitScan {
    private var base: UInt64?
    private var position: UInt64 = 0
    private var nextOffset: UInt64 = 0
    private var last: DurableMark?
    /// The first damage found in the middle of a segment, with committed records after it.
    private(set) var damage: SegmentDamage?

    mutating func lastCommit(in directory: String) -> DurableMark? {
        let bases = SegmentFile.list(directory)
        let header = UInt64(SegmentFile.headerSize)
        if let base, bases.contains(base),
           SegmentFile.size(path: directory + "/" + SegmentFile.name(base: base, suffix: "log")) >= position {
            for segment in bases where segment >= base {
                let resumeAt = segment == base ? (position, nextOffset) : (header, segment)
                let result = Self.scanSegment(directory, segment, position: resumeAt.0, expected: resumeAt.1)
                damage = damage ?? result.damage
                if let found = result.last {
                    last = DurableMark(commit: found, segmentBase: segment, end: result.resume)
                    self.base = segment
                    position = result.resume
                    nextOffset = found.offset + 1
                }
            }
            return last
        }
        // First call, or the files changed under us: walk back to the newest segment with a commit marker.
        self = CommitScan()
        for segment in bases.reversed() {
            let result = Self.scanSegment(directory, segment, position: header, expected: segment)
            damage = damage ?? result.damage
            if let found = result.last {
                last = DurableMark(commit: found, segmentBase: segment, end: result.resume)
                base = segment
                position = result.resume
                nextOffset = found.offset + 1
                break
            }
        }
        return last
    }

    /// Scans one segment from `position`; returns its last commit marker and the position just after it.
    /// Bytes that do not frame, followed by valid frames and a commit marker, are damage, not a torn
    /// tail: the scan goes on past them (so readers reach them and fail) and reports them.
    static func scanSegment(_ directory: String, _ base: UInt64, position start: UInt64, expected first: UInt64)
        -> (last: CommittedPosition?, resume: UInt64, damage: SegmentDamage?)
    {
        let path = directory + "/" + SegmentFile.name(base: base, suffix: "log")
        let reader: SegmentReader
        do {
            reader = try SegmentReader(path: path, base: base)
        } catch {
            // Shorter than a header is a creation a crash cut short (recovery writes it again); otherwise damage.
            let damage = SegmentFile.size(path: path) < UInt64(SegmentFile.headerSize) ? nil
                : SegmentDamage(path: path, position: 0, offset: first, reason: "\(error)", header: true)
            return (nil, start, damage)
        }
        reader.seek(to: start)
        var expected = first
        var last: CommittedPosition?
        var resume = start
        var damage: SegmentDamage?
        var suspect: SegmentDamage?
        // Each round after the first resumes past one damaged stretch; a few are enough to report it.
        for _ in 0..<8 {
            var stop: (position: UInt64, reason: String)?
            scanning: while true {
                switch (try? reader.next()) ?? .end {
                case let .frame(kind, offset, body, position, length):
                    guard offset == expected else {
                        stop = (position, "offset \(offset) where \(expected) was expected")
                        break scanning
                    }
                    expected += 1
                    if kind == RecordKind.commit.rawValue,
                       case let .commit(commit)? = try? TopicRecord.decode(kind: kind, storage: reader.buffer, body: body) {
                        last = CommittedPosition(offset: offset, commit: commit)
                        resume = position + UInt64(length)
                        if let found = suspect { damage = damage ?? found }
                    }
                case .end:
                    break scanning
                case let .invalid(position, reason):
                    stop = (position, reason)
                    break scanning
                }
            }
            guard let stop, let next = SegmentDamage.nextFrame(in: path, after: stop.position, minimum: expected) else { break }
            suspect = SegmentDamage(path: path, position: stop.position, offset: expected, reason: stop.reason)
            reader.seek(to: next.position)
            expected = next.offset
        }
        return (last, resume, damage)
    }
}

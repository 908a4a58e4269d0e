import SluiceKit

/// Reads a topic's records in offset order, across segments, never past the durable end.
public final class EmbeddedTopicReader: TopicReader {
    let topic: EmbeddedTopic
    private var directory: String { topic.directory }
    private var segment: SegmentReader?
    public private(set) var position: UInt64

    /// Positions the reader at `offset`, or at the first retained offset if that is later.
    init(topic: EmbeddedTopic, from offset: UInt64) throws {
        self.topic = topic
        position = max(offset, SegmentFile.list(topic.directory).first ?? offset)
    }

    private func segmentPath(_ base: UInt64) -> String { directory + "/" + SegmentFile.name(base: base, suffix: "log") }
    private func indexPath(_ base: UInt64) -> String { directory + "/" + SegmentFile.name(base: base, suffix: "idx") }

    /// Opens the segment holding `position` and moves to it, using the sparse index.
    private func locate() throws {
        let bases = SegmentFile.list(directory)
        guard let base = bases.last(where: { $0 <= position }) else {
            if let first = bases.first, first > position {
                throw LogError("\(directory): offsets \(position)..<\(first) were deleted by retention")
            }
            throw LogError("\(directory): no segment holds offset \(position)")
        }
        let reader = try openSegment(base)
        var current = base
        var rescanned = false
        if let entry = SegmentIndex.load(indexPath(base)).floor(position) {
            reader.seek(to: entry.position)
            current = entry.offset
        }
        while current < position {
            switch try reader.next() {
            case let .frame(_, offset, _, _, _) where offset == current:
                current += 1
            case .frame where current != base && !rescanned, .invalid where current != base && !rescanned:
                // A stale index entry: scan from the segment's start instead (once: damage stops a second scan too).
                reader.seek(to: UInt64(SegmentFile.headerSize))
                current = base
                rescanned = true
            case let .invalid(at, reason):
                // Damage before the offset wanted: the frames after it are checksummed and can still be read.
                guard let next = SegmentDamage.nextFrame(in: reader.path, after: at, minimum: current), next.offset <= position else {
                    throw damaged(reader, at: at, offset: current, reason: reason)
                }
                reader.seek(to: next.position)
                current = next.offset
            default:
                throw LogError("\(segmentPath(base)): cannot find offset \(position)")
            }
        }
        segment = reader
    }

    private func openSegment(_ base: UInt64) throws -> SegmentReader {
        let topic = self.topic
        return try SegmentReader(path: segmentPath(base), base: base) {
            guard let bound = topic.readBound() else { return 0 }
            return bound.segmentBase == base ? bound.position : bound.segmentBase > base ? nil : 0
        }
    }

    /// Bytes below the committed end that are not a record: corruption, never skipped.
    private func damaged(_ reader: SegmentReader, at: UInt64, offset: UInt64, reason: String) -> LogError {
        let newest = topic.readBound().map { $0.segmentBase == reader.base } ?? true
        return LogError("""
            \(reader.path): invalid record at byte \(at) below the committed end (\(reason)): records from offset \(offset) on \
            cannot be read. \(newest ? SegmentDamage.fixForNewestSegment : SegmentDamage.fixForOlderSegment(directory))
            """)
    }

    public func next(limit: UInt64) throws -> RawRecord? {
        guard position < limit else { return nil }
        if segment == nil { try locate() }
        while true {
            switch try segment!.next() {
            case let .frame(kind, offset, body, _, _):
                guard offset == position else {
                    throw LogError("\(segment!.path): expected offset \(position), found \(offset)")
                }
                position += 1
                return RawRecord(offset: offset, kind: kind, storage: segment!.buffer, body: body)
            case .end:
                // This segment is done; the next one starts exactly here.
                let bases = SegmentFile.list(directory)
                guard bases.contains(position) else {
                    if let next = bases.first(where: { $0 > position }) {
                        throw LogError("\(directory): offsets \(position)..<\(next) were deleted by retention")
                    }
                    throw LogError("\(directory): offset \(position) is below the committed end but in no segment")
                }
                segment = try openSegment(position)
            case let .invalid(at, reason):
                throw damaged(segment!, at: at, offset: position, reason: reason)
            }
        }
    }
}

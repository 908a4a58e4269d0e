import SluiceKit

/// Reads a topic's records in offset order, across segments.
public final class EmbeddedTopicReader: TopicReader {
    let directory: String
    private var segment: SegmentReader?
    public private(set) var position: UInt64

    /// Positions the reader at `offset`, or at the first retained offset if that is later.
    public init(directory: String, from offset: UInt64) throws {
        self.directory = directory
        let bases = SegmentFile.list(directory)
        guard let first = bases.first else {
            position = offset
            return
        }
        position = max(offset, first)
        guard let base = bases.last(where: { $0 <= position }) else { return }
        let reader = try SegmentReader(path: segmentPath(base), base: base)
        var current = base
        if let entry = SegmentIndex.load(indexPath(base)).floor(position) {
            reader.seek(to: entry.position)
            current = entry.offset
        }
        // Skip to `position`; a stale index entry falls back to the segment start.
        while current < position {
            switch try reader.next() {
            case let .frame(_, offset, _, _, _) where offset == current:
                current += 1
            case .frame where current != base:
                reader.seek(to: UInt64(SegmentFile.headerSize))
                current = base
            case .end:
                // The segment ends before `position`: start at the next segment, if any.
                segment = nil
                position = current
                return
            default:
                throw LogError("\(segmentPath(base)): cannot find offset \(position)")
            }
        }
        segment = reader
    }

    private func segmentPath(_ base: UInt64) -> String { directory + "/" + SegmentFile.name(base: base, suffix: "log") }
    private func indexPath(_ base: UInt64) -> String { directory + "/" + SegmentFile.name(base: base, suffix: "idx") }

    public func next(limit: UInt64) throws -> RawRecord? {
        guard position < limit else { return nil }
        while true {
            if segment == nil {
                let bases = SegmentFile.list(directory)
                guard bases.contains(position) else {
                    if let first = bases.first, first > position {
                        throw LogError("\(directory): offsets \(position)..<\(first) were deleted by retention")
                    }
                    throw LogError("\(directory): no segment holds offset \(position)")
                }
                segment = try SegmentReader(path: segmentPath(position), base: position)
            }
            switch try segment!.next() {
            case let .frame(kind, offset, body, _, _):
                guard offset == position else {
                    throw LogError("\(segment!.path): expected offset \(position), found \(offset)")
                }
                position += 1
                return RawRecord(offset: offset, kind: kind, storage: segment!.buffer, body: body)
            case .end:
                segment = nil
            case let .invalid(at, reason):
                throw LogError("\(segment!.path): invalid record at byte \(at) below the committed end: \(reason)")
            }
        }
    }
}

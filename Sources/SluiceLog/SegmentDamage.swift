#if canImport(Glibc)
import Glibc
#endif

/// Bytes in the middle of a segment that are not the frame expected there, with valid committed
/// frames after them: damage (a bit flip, an overwritten block), not the torn tail a crash leaves,
/// after which nothing valid follows.
struct SegmentDamage: Equatable {
    let path: String
    /// File position of the first byte that is not the expected frame.
    let position: UInt64
    /// The offset of the first record that cannot be read.
    let offset: UInt64
    let reason: String
    /// The header is not a segment's: recovery refuses the file rather than cut it.
    var header = false

    /// What a reader without the daemon says, and what to do.
    var description: String {
        guard !header else {
            return "\(reason): records from offset \(offset) on cannot be read. Recovery refuses "
                + "such a segment (`sluice run` exits naming it): restore the file from a copy, or re-snapshot the source "
                + "(README: a slot ahead of a damaged topic)"
        }
        return "\(path) is damaged at byte \(position) (\(reason)): records from offset \(offset) on cannot be read, "
            + "though committed records follow. \(Self.fixForNewestSegment)"
    }

    /// Recovery (docs/log-format.md, section 6) cuts the newest segment back to its last good commit marker.
    static let fixForNewestSegment = """
        Starting (or restarting) `sluice run` cuts the segment back to its last commit marker before the damage; \
        the source then captures again what its slot has not confirmed, or stops naming the confirmed transactions \
        that were lost and how to recover them
        """

    /// Older segments are never rewritten by recovery.
    static func fixForOlderSegment(_ directory: String) -> String {
        "Recovery does not rewrite older segments: restore \(directory) from a copy, or re-snapshot the source "
            + "(README: a slot ahead of a damaged topic)"
    }

    /// The position and offset of the first valid frame after `position` whose offset is at least
    /// `minimum`, or nil when none follows (a torn tail). Reads the rest of the file once, in chunks.
    static func nextFrame(in path: String, after position: UInt64, minimum: UInt64) -> (position: UInt64, offset: UInt64)? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        let size = SegmentFile.size(fd)
        let header = Frame.headerSize
        var buffer = [UInt8](repeating: 0, count: 1 << 20)
        var start = position + 1
        while start + UInt64(header) <= size {
            let count = Int(min(UInt64(buffer.count), size - start))
            let got = buffer.withUnsafeMutableBytes { pread(fd, $0.baseAddress, count, off_t(start)) }
            guard got == count else { return nil }
            for index in 0...(count - header) {
                let candidate = buffer.withUnsafeBytes { raw -> UInt64? in
                    let bytes = UnsafeRawBufferPointer(rebasing: raw[index..<count])
                    // Cheap tests first: the version byte and a plausible offset reject almost every position.
                    guard bytes[8] == Frame.version else { return nil }
                    let offset = UInt64(bigEndian: bytes.loadUnaligned(fromByteOffset: 10, as: UInt64.self))
                    guard offset >= minimum, offset - minimum < 1 << 32 else { return nil }
                    switch Frame.check(bytes) {
                    case .valid: return offset
                    case let .incomplete(length?) where start + UInt64(index) + UInt64(length) <= size:
                        return Self.frame(fd, at: start + UInt64(index), length: length) ? offset : nil
                    default: return nil
                    }
                }
                if let candidate { return (start + UInt64(index), candidate) }
            }
            // The last header - 1 positions are tried again at the start of the next chunk.
            start += UInt64(count - header + 1)
        }
        return nil
    }

    /// Whether the `length` bytes at `position` are one valid frame (for a frame longer than a chunk).
    private static func frame(_ fd: Int32, at position: UInt64, length: Int) -> Bool {
        var bytes = [UInt8](repeating: 0, count: length)
        guard bytes.withUnsafeMutableBytes({ pread(fd, $0.baseAddress, length, off_t(position)) }) == length else { return false }
        return bytes.withUnsafeBytes { if case .valid = Frame.check($0) { return true } else { return false } }
    }
}

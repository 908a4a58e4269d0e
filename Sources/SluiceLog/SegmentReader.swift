#if canImport(Glibc)
import Glibc
#endif

/// Reads frames of one segment file sequentially through a buffer, validating each.
final class SegmentReader {
    enum Step {
        case frame(kind: UInt8, offset: UInt64, body: Range<Int>, position: UInt64, length: Int)
        /// The end of the file's bytes, on a frame boundary.
        case end
        /// Bytes that are not a valid frame start at `position`: a torn tail or corruption.
        case invalid(position: UInt64, reason: String)
    }

    let path: String
    let base: UInt64
    private let fd: Int32
    private(set) var buffer: [UInt8]
    private var bufferPosition: UInt64 = 0   // file position of buffer[0]
    private var filled = 0
    private var cursor = 0

    /// The file position reads must not pass (the end of the last durable commit), or nil for none.
    /// Bytes past it may belong to a transaction the writer is about to cut back and rewrite.
    private let bound: () -> UInt64?

    init(path: String, base: UInt64, chunk: Int = 1 << 20, bound: @escaping () -> UInt64? = { nil }) throws {
        self.path = path
        self.base = base
        self.bound = bound
        fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw LogError.errno("cannot open", path) }
        buffer = [UInt8](repeating: 0, count: chunk)
        do {
            try SegmentFile.validateHeader(fd, base: base, path: path)
        } catch {
            close(fd)
            throw error
        }
        bufferPosition = UInt64(SegmentFile.headerSize)
    }

    deinit { close(fd) }

    /// File position of the next frame.
    var position: UInt64 { bufferPosition + UInt64(cursor) }

    func seek(to position: UInt64) {
        bufferPosition = position
        filled = 0
        cursor = 0
    }

    /// Reads at least `count` bytes from the cursor into the buffer; false at end of file.
    private func fill(_ count: Int) throws -> Bool {
        if filled - cursor >= count { return true }
        if cursor > 0 {
            let remaining = filled - cursor
            buffer.withUnsafeMutableBytes { raw in
                raw.baseAddress!.copyMemory(from: raw.baseAddress! + cursor, byteCount: remaining)
            }
            bufferPosition += UInt64(cursor)
            filled = remaining
            cursor = 0
        }
        let end = min(bound() ?? UInt64.max, SegmentFile.size(fd))
        // A frame that claims to run past what is there is torn: do not allocate for it.
        guard bufferPosition + UInt64(count) <= end else { return false }
        if buffer.count < count { buffer.append(contentsOf: repeatElement(0, count: count - buffer.count)) }
        while filled < count {
            let room = min(buffer.count - filled, Int(end - bufferPosition) - filled)
            let got = buffer.withUnsafeMutableBytes { raw in
                pread(fd, raw.baseAddress! + filled, room, off_t(bufferPosition) + off_t(filled))
            }
            if got < 0 {
                if errno == EINTR { continue }
                throw LogError.errno("cannot read", path)
            }
            if got == 0 { return false }
            filled += got
        }
        return true
    }

    func next() throws -> Step {
        guard try fill(4) else {
            return filled == cursor ? .end : .invalid(position: position, reason: "torn frame header")
        }
        while true {
            let check = buffer.withUnsafeBytes { raw in
                Frame.check(UnsafeRawBufferPointer(rebasing: raw[cursor..<filled]))
            }
            switch check {
            case let .valid(kind, offset, length):
                let at = position
                let body = (cursor + Frame.headerSize)..<(cursor + length)
                cursor += length
                return .frame(kind: kind, offset: offset, body: body, position: at, length: length)
            case let .incomplete(length):
                guard try fill(length ?? (filled - cursor + 4)) else {
                    return .invalid(position: position, reason: "torn frame")
                }
            case let .invalid(reason):
                return .invalid(position: position, reason: reason)
            }
        }
    }
}

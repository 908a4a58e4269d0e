/// A bounds-checked cursor over bytes received from the server.
///
/// Every read checks the remaining length and throws ``PGOutputError`` with the byte offset,
/// so malformed input can never read out of bounds.
public struct ByteReader {
    public let bytes: UnsafeRawBufferPointer
    public private(set) var offset: Int

    public init(_ bytes: UnsafeRawBufferPointer, offset: Int = 0) {
        self.bytes = bytes
        self.offset = offset
    }

    public var remaining: Int { bytes.count - offset }
    public var isAtEnd: Bool { offset >= bytes.count }

    @inline(__always)
    mutating func need(_ count: Int, _ what: StaticString) throws(PGOutputError) {
        guard count >= 0, remaining >= count else {
            throw PGOutputError(.truncated(what: "\(what)", needed: count, available: remaining), at: offset)
        }
    }

    @inline(__always)
    public mutating func readUInt8(_ what: StaticString = "byte") throws(PGOutputError) -> UInt8 {
        try need(1, what)
        let value = bytes[offset]
        offset += 1
        return value
    }

    @inline(__always)
    public mutating func readUInt16(_ what: StaticString = "int16") throws(PGOutputError) -> UInt16 {
        try need(2, what)
        let value = UInt16(bigEndian: bytes.loadUnaligned(fromByteOffset: offset, as: UInt16.self))
        offset += 2
        return value
    }

    @inline(__always)
    public mutating func readUInt32(_ what: StaticString = "int32") throws(PGOutputError) -> UInt32 {
        try need(4, what)
        let value = UInt32(bigEndian: bytes.loadUnaligned(fromByteOffset: offset, as: UInt32.self))
        offset += 4
        return value
    }

    @inline(__always)
    public mutating func readInt32(_ what: StaticString = "int32") throws(PGOutputError) -> Int32 {
        Int32(bitPattern: try readUInt32(what))
    }

    @inline(__always)
    public mutating func readUInt64(_ what: StaticString = "int64") throws(PGOutputError) -> UInt64 {
        try need(8, what)
        let value = UInt64(bigEndian: bytes.loadUnaligned(fromByteOffset: offset, as: UInt64.self))
        offset += 8
        return value
    }

    @inline(__always)
    public mutating func readInt64(_ what: StaticString = "int64") throws(PGOutputError) -> Int64 {
        Int64(bitPattern: try readUInt64(what))
    }

    /// A NUL-terminated string, decoded as UTF-8.
    public mutating func readCString(_ what: StaticString = "string") throws(PGOutputError) -> String {
        let start = offset
        var end = start
        while end < bytes.count, bytes[end] != 0 { end += 1 }
        guard end < bytes.count else {
            throw PGOutputError(.unterminatedString(what: "\(what)"), at: start)
        }
        offset = end + 1
        return String(decoding: UnsafeRawBufferPointer(rebasing: bytes[start..<end]), as: UTF8.self)
    }

    /// A view of the next `count` bytes; valid as long as the input is.
    public mutating func readBytes(_ count: Int, _ what: StaticString = "bytes") throws(PGOutputError) -> UnsafeRawBufferPointer {
        try need(count, what)
        let view = UnsafeRawBufferPointer(rebasing: bytes[offset..<(offset + count)])
        offset += count
        return view
    }
}

/// Reads a record body written by ``RecordBody``; every read is bounds-checked.
public struct RecordCursor {
    public let storage: [UInt8]
    public private(set) var position: Int
    public let end: Int

    public init(_ storage: [UInt8], range: Range<Int>) {
        self.storage = storage
        position = range.lowerBound
        end = range.upperBound
    }

    public var isAtEnd: Bool { position >= end }

    @inline(__always)
    mutating func need(_ count: Int) throws(RecordError) {
        guard count >= 0, end - position >= count else { throw RecordError.truncated(at: position) }
    }

    @inline(__always)
    mutating func load<T: FixedWidthInteger>(_ type: T.Type) throws(RecordError) -> T {
        let size = MemoryLayout<T>.size
        try need(size)
        let value = storage.withUnsafeBytes { T(bigEndian: $0.loadUnaligned(fromByteOffset: position, as: T.self)) }
        position += size
        return value
    }

    public mutating func u8() throws(RecordError) -> UInt8 { try load(UInt8.self) }
    public mutating func u16() throws(RecordError) -> UInt16 { try load(UInt16.self) }
    public mutating func u32() throws(RecordError) -> UInt32 { try load(UInt32.self) }
    public mutating func u64() throws(RecordError) -> UInt64 { try load(UInt64.self) }
    public mutating func i32() throws(RecordError) -> Int32 { try load(Int32.self) }
    public mutating func i64() throws(RecordError) -> Int64 { try load(Int64.self) }

    public mutating func string() throws(RecordError) -> String {
        let count = Int(try u16())
        try need(count)
        defer { position += count }
        return String(decoding: storage[position..<(position + count)], as: UTF8.self)
    }

    /// Skips a tuple (count, then per column a kind and maybe a length and bytes) and returns it.
    public mutating func tuple() throws(RecordError) -> Tuple {
        let start = position
        let count = Int(try u16())
        for _ in 0..<count {
            switch try u8() {
            case Tuple.null, Tuple.unchanged: break
            case Tuple.text, Tuple.binary:
                let length = Int(try u32())
                try need(length)
                position += length
            default: throw RecordError.malformed("unknown tuple column kind", at: position - 1)
            }
        }
        return Tuple(storage: storage, range: start..<position, count: count)
    }
}

/// A record body that does not match the format: a bug or a version mismatch, since records are checksummed.
public enum RecordError: Error, CustomStringConvertible, Equatable {
    case truncated(at: Int)
    case malformed(String, at: Int)
    case unknownKind(UInt8)

    public var description: String {
        switch self {
        case let .truncated(at): return "record body truncated at byte \(at)"
        case let .malformed(what, at): return "malformed record body at byte \(at): \(what)"
        case let .unknownKind(kind): return "unknown record kind \(kind)"
        }
    }
}

/// One column value of a row, in PostgreSQL's text form.
public enum Value: Equatable, Sendable {
    case null
    /// An unchanged TOASTed value the source did not send: the target keeps what it has.
    case unchanged
    /// PostgreSQL's text output of the value (UTF-8).
    case text(ArraySlice<UInt8>)
    /// PostgreSQL's binary send format (only when a source asks for it).
    case binary(ArraySlice<UInt8>)

    public var string: String? {
        switch self {
        case let .text(bytes), let .binary(bytes): return String(decoding: bytes, as: UTF8.self)
        case .null, .unchanged: return nil
        }
    }

    public var isNull: Bool { if case .null = self { return true } else { return false } }
    public var isUnchanged: Bool { if case .unchanged = self { return true } else { return false } }
}

/// A row as stored in a topic: pgoutput's tuple layout (a 2-byte column count, then per column a
/// kind byte `n`/`u`/`t`/`b`, and for `t` and `b` a 4-byte length and the bytes).
///
/// It is a view of the record it came from; iterating it allocates nothing.
public struct Tuple: Sequence, Sendable {
    static let null = UInt8(ascii: "n")
    static let unchanged = UInt8(ascii: "u")
    static let text = UInt8(ascii: "t")
    static let binary = UInt8(ascii: "b")

    public let storage: [UInt8]
    public let range: Range<Int>
    public let count: Int

    /// A tuple of its own bytes (a copy kept beyond the reader's buffer).
    public init(bytes: [UInt8]) {
        storage = bytes
        range = 0..<bytes.count
        count = bytes.count >= 2 ? Int(UInt16(bytes[0]) << 8 | UInt16(bytes[1])) : 0
    }

    init(storage: [UInt8], range: Range<Int>, count: Int) {
        self.storage = storage
        self.range = range
        self.count = count
    }

    /// The encoded bytes, ready to be copied into another record.
    public var bytes: ArraySlice<UInt8> { storage[range] }

    public func makeIterator() -> Iterator { Iterator(storage: storage, position: range.lowerBound + 2, remaining: count) }

    public struct Iterator: IteratorProtocol {
        let storage: [UInt8]
        var position: Int
        var remaining: Int

        public mutating func next() -> Value? {
            guard remaining > 0 else { return nil }
            remaining -= 1
            let kind = storage[position]
            position += 1
            switch kind {
            case Tuple.null: return .null
            case Tuple.unchanged: return .unchanged
            default:
                let length = storage.withUnsafeBytes {
                    Int(UInt32(bigEndian: $0.loadUnaligned(fromByteOffset: position, as: UInt32.self)))
                }
                let value = storage[(position + 4)..<(position + 4 + length)]
                position += 4 + length
                return kind == Tuple.text ? .text(value) : .binary(value)
            }
        }
    }

    /// Every value, materialized. Convenient; sinks on the hot path iterate instead.
    public var values: [Value] { Array(self) }

    /// A value as raw bytes, valid only inside ``forEachRaw(_:)``.
    public enum RawValue {
        case null
        case unchanged
        case text(UnsafeRawBufferPointer)
        case binary(UnsafeRawBufferPointer)
    }

    /// Walks the columns over the record's bytes without allocating or reference counting: the fast
    /// path for sinks that copy values out (COPY encoding, parameter buffers, hashing keys).
    @inlinable
    public func forEachRaw(_ body: (_ column: Int, _ value: RawValue) throws -> Void) rethrows {
        try storage.withUnsafeBytes { raw in
            var position = range.lowerBound + 2
            for column in 0..<count {
                let kind = raw[position]
                position += 1
                switch kind {
                case UInt8(ascii: "n"): try body(column, .null)
                case UInt8(ascii: "u"): try body(column, .unchanged)
                default:
                    let length = Int(UInt32(bigEndian: raw.loadUnaligned(fromByteOffset: position, as: UInt32.self)))
                    let value = UnsafeRawBufferPointer(rebasing: raw[(position + 4)..<(position + 4 + length)])
                    position += 4 + length
                    try body(column, kind == UInt8(ascii: "t") ? .text(value) : .binary(value))
                }
            }
        }
    }
}

extension Tuple {
    /// Encodes a row of text values (nil for NULL) in the tuple layout.
    public static func encode(_ values: [String?], into body: inout RecordBody) {
        body.u16(UInt16(values.count))
        for value in values {
            guard let value else { body.u8(Tuple.null); continue }
            var copy = value
            copy.withUTF8 { utf8 in
                body.u8(Tuple.text)
                body.u32(UInt32(utf8.count))
                body.raw(UnsafeRawBufferPointer(utf8))
            }
        }
    }
}

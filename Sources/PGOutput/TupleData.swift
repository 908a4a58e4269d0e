/// One column of a ``TupleData``: a view into the message bytes.
public enum TupleValue: Equatable {
    case null
    /// An unchanged TOASTed value: the server did not send it; the target keeps its value.
    case unchangedToast
    case text(UnsafeRawBufferPointer)
    case binary(UnsafeRawBufferPointer)

    public static func == (lhs: TupleValue, rhs: TupleValue) -> Bool {
        switch (lhs, rhs) {
        case (.null, .null), (.unchangedToast, .unchangedToast): return true
        case let (.text(a), .text(b)), let (.binary(a), .binary(b)): return a.elementsEqual(b)
        default: return false
        }
    }

    /// The text form as a Swift string (nil for null and unchanged values).
    public var string: String? {
        switch self {
        case let .text(bytes), let .binary(bytes): return String(decoding: bytes, as: UTF8.self)
        case .null, .unchangedToast: return nil
        }
    }
}

/// A row as pgoutput sends it: a column count, then per column a kind byte
/// ('n' null, 'u' unchanged TOAST, 't' text, 'b' binary) and, for 't' and 'b', a length and the bytes.
///
/// The tuple is validated when decoded but kept as one view of the input: reading it costs no
/// allocation, and a source can copy ``bytes`` verbatim into its own record.
public struct TupleData {
    /// The whole tuple, column count included, exactly as received.
    public let bytes: UnsafeRawBufferPointer
    public let columnCount: Int

    static func decode(from reader: inout ByteReader) throws(PGOutputError) -> TupleData {
        let start = reader.offset
        let count = Int(try reader.readUInt16("tuple column count"))
        for _ in 0..<count {
            let kindOffset = reader.offset
            let kind = try reader.readUInt8("tuple column kind")
            switch kind {
            case UInt8(ascii: "n"), UInt8(ascii: "u"):
                break
            case UInt8(ascii: "t"), UInt8(ascii: "b"):
                let lengthOffset = reader.offset
                let length = try reader.readInt32("column length")
                guard length >= 0 else { throw PGOutputError(.negativeLength(length), at: lengthOffset) }
                _ = try reader.readBytes(Int(length), "column value")
            default:
                throw PGOutputError(.unknownTupleKind(kind), at: kindOffset)
            }
        }
        let view = UnsafeRawBufferPointer(rebasing: reader.bytes[start..<reader.offset])
        return TupleData(bytes: view, columnCount: count)
    }

    /// The columns in order. The tuple was validated on decode, so walking it cannot fail.
    public var values: Values { Values(bytes: bytes, count: columnCount) }

    public struct Values: Sequence {
        let bytes: UnsafeRawBufferPointer
        let count: Int

        public func makeIterator() -> Iterator { Iterator(bytes: bytes, remaining: count) }

        public struct Iterator: IteratorProtocol {
            let bytes: UnsafeRawBufferPointer
            var remaining: Int
            var offset = 2

            public mutating func next() -> TupleValue? {
                guard remaining > 0 else { return nil }
                remaining -= 1
                let kind = bytes[offset]
                offset += 1
                switch kind {
                case UInt8(ascii: "n"): return .null
                case UInt8(ascii: "u"): return .unchangedToast
                default:
                    let length = Int(UInt32(bigEndian: bytes.loadUnaligned(fromByteOffset: offset, as: UInt32.self)))
                    let value = UnsafeRawBufferPointer(rebasing: bytes[(offset + 4)..<(offset + 4 + length)])
                    offset += 4 + length
                    return kind == UInt8(ascii: "t") ? .text(value) : .binary(value)
                }
            }
        }
    }
}

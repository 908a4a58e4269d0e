/// A malformed or unsupported pgoutput message, with the byte offset where decoding stopped.
public struct PGOutputError: Error, Equatable, CustomStringConvertible {
    public enum Kind: Equatable, Sendable {
        case empty
        case truncated(what: String, needed: Int, available: Int)
        case unterminatedString(what: String)
        case unknownMessageType(UInt8)
        case unknownTupleKind(UInt8)
        case unexpectedByte(expected: String, got: UInt8)
        case negativeLength(Int32)
        case trailingBytes(count: Int)
    }

    public let kind: Kind
    /// Byte offset into the message where the problem was found.
    public let offset: Int

    public init(_ kind: Kind, at offset: Int) {
        self.kind = kind
        self.offset = offset
    }

    public var description: String {
        switch kind {
        case .empty: return "empty pgoutput message"
        case let .truncated(what, needed, available):
            return "truncated pgoutput message at byte \(offset): \(what) needs \(needed) bytes, \(available) left"
        case let .unterminatedString(what):
            return "unterminated \(what) string at byte \(offset)"
        case let .unknownMessageType(byte):
            return "unknown pgoutput message type \(printable(byte)) at byte \(offset)"
        case let .unknownTupleKind(byte):
            return "unknown tuple column kind \(printable(byte)) at byte \(offset)"
        case let .unexpectedByte(expected, got):
            return "expected \(expected) at byte \(offset), got \(printable(got))"
        case let .negativeLength(length):
            return "negative column length \(length) at byte \(offset)"
        case let .trailingBytes(count):
            return "\(count) unexpected trailing bytes at byte \(offset)"
        }
    }
}

func printable(_ byte: UInt8) -> String {
    (0x21...0x7E).contains(byte) ? "'\(Character(Unicode.Scalar(byte)))'" : "0x" + String(byte, radix: 16)
}

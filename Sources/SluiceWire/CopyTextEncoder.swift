/// Builds rows in COPY's text format: tab-separated, `\N` for NULL, backslash escapes for the
/// characters COPY treats specially, a newline per row. Buffered, sent in large pieces.
public struct CopyTextEncoder {
    public private(set) var buffer: [UInt8] = []
    private var fieldsInRow = 0

    public init(capacity: Int = 1 << 20) {
        buffer.reserveCapacity(capacity)
    }

    public var isEmpty: Bool { buffer.isEmpty }
    public var count: Int { buffer.count }

    public mutating func appendNull() {
        separator()
        buffer.append(UInt8(ascii: "\\"))
        buffer.append(UInt8(ascii: "N"))
    }

    public mutating func append(_ text: UnsafeRawBufferPointer) {
        separator()
        // Most values need no escaping: copy them whole.
        guard text.contains(where: { $0 == UInt8(ascii: "\\") || $0 == 9 || $0 == 10 || $0 == 13 }) else {
            buffer.append(contentsOf: text)
            return
        }
        for byte in text {
            switch byte {
            case UInt8(ascii: "\\"): buffer.append(UInt8(ascii: "\\")); buffer.append(UInt8(ascii: "\\"))
            case 9: buffer.append(UInt8(ascii: "\\")); buffer.append(UInt8(ascii: "t"))
            case 10: buffer.append(UInt8(ascii: "\\")); buffer.append(UInt8(ascii: "n"))
            case 13: buffer.append(UInt8(ascii: "\\")); buffer.append(UInt8(ascii: "r"))
            default: buffer.append(byte)
            }
        }
    }

    public mutating func endRow() {
        buffer.append(10)
        fieldsInRow = 0
    }

    public mutating func removeAll() {
        buffer.removeAll(keepingCapacity: true)
        fieldsInRow = 0
    }

    private mutating func separator() {
        if fieldsInRow > 0 { buffer.append(9) }
        fieldsInRow += 1
    }
}

/// Appends a record body in the topic's byte format: big-endian integers,
/// strings as a 2-byte length and UTF-8 bytes.
public struct RecordBody {
    public var bytes: [UInt8]

    public init(reusing bytes: [UInt8] = []) { self.bytes = bytes }

    @inline(__always) public mutating func u8(_ value: UInt8) { bytes.append(value) }
    @inline(__always) public mutating func u16(_ value: UInt16) { append(value.bigEndian) }
    @inline(__always) public mutating func u32(_ value: UInt32) { append(value.bigEndian) }
    @inline(__always) public mutating func u64(_ value: UInt64) { append(value.bigEndian) }
    @inline(__always) public mutating func i32(_ value: Int32) { append(value.bigEndian) }
    @inline(__always) public mutating func i64(_ value: Int64) { append(value.bigEndian) }

    @inline(__always) mutating func append<T: FixedWidthInteger>(_ value: T) {
        withUnsafeBytes(of: value) { bytes.append(contentsOf: $0) }
    }

    public mutating func string(_ value: String) {
        var value = value
        value.withUTF8 { utf8 in
            let count = min(utf8.count, Int(UInt16.max))
            u16(UInt16(count))
            bytes.append(contentsOf: UnsafeRawBufferPointer(rebasing: UnsafeRawBufferPointer(utf8)[0..<count]))
        }
    }

    public mutating func raw(_ value: UnsafeRawBufferPointer) { bytes.append(contentsOf: value) }
    public mutating func raw(_ value: some Collection<UInt8>) { bytes.append(contentsOf: value) }
}

import CSluiceSupport

/// The frame around every record body (docs/log-format.md):
///
///     size     u32  bytes after this field
///     crc      u32  CRC32C of the bytes after this field
///     version  u8   1
///     kind     u8   RecordKind
///     offset   u64  the record's offset in the topic
///     body     size - 14 bytes
///
/// All integers are big-endian.
enum Frame {
    static let version: UInt8 = 1
    static let headerSize = 18
    /// Bytes after `size` that are not body: crc, version, kind, offset.
    static let overhead = 14
    /// A body larger than this is refused (PostgreSQL's own field limit is 1 GiB).
    static let maxBodySize = 1 << 31 - 64

    /// Fills in the header of a frame whose body has been appended after `start + headerSize`.
    static func seal(_ buffer: inout [UInt8], at start: Int, kind: UInt8, offset: UInt64) {
        let size = UInt32(buffer.count - start - 4)
        buffer.withUnsafeMutableBytes { raw in
            raw.storeBytes(of: size.bigEndian, toByteOffset: start, as: UInt32.self)
            raw[start + 8] = version
            raw[start + 9] = kind
            raw.storeBytes(of: offset.bigEndian, toByteOffset: start + 10, as: UInt64.self)
            let crc = sluice_crc32c(0, raw.baseAddress! + start + 8, Int(size) - 4)
            raw.storeBytes(of: crc.bigEndian, toByteOffset: start + 4, as: UInt32.self)
        }
    }

    enum Check {
        /// A whole, valid frame of `length` bytes.
        case valid(kind: UInt8, offset: UInt64, length: Int)
        /// More bytes are needed to tell (`length` bytes in all, when known).
        case incomplete(length: Int?)
        /// Not a valid frame: a torn write or corruption.
        case invalid(String)
    }

    /// Checks the frame at the start of `bytes`.
    static func check(_ bytes: UnsafeRawBufferPointer) -> Check {
        guard bytes.count >= 4 else { return .incomplete(length: nil) }
        let size = Int(UInt32(bigEndian: bytes.loadUnaligned(as: UInt32.self)))
        guard size >= overhead, size - overhead <= maxBodySize else { return .invalid("frame size \(size)") }
        guard bytes.count >= 4 + size else { return .incomplete(length: 4 + size) }
        let stored = UInt32(bigEndian: bytes.loadUnaligned(fromByteOffset: 4, as: UInt32.self))
        let actual = sluice_crc32c(0, bytes.baseAddress! + 8, size - 4)
        guard stored == actual else { return .invalid("checksum mismatch") }
        guard bytes[8] == version else { return .invalid("record format version \(bytes[8])") }
        let offset = UInt64(bigEndian: bytes.loadUnaligned(fromByteOffset: 10, as: UInt64.self))
        return .valid(kind: bytes[9], offset: offset, length: 4 + size)
    }
}

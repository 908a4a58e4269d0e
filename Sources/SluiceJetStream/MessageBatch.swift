import CSluiceSupport
import SluiceKit

/// Topic records packed into one JetStream message body (the format is in docs/jetstream-format.md).
///
/// Two kinds of message share a topic's stream. A *batch* (subject `<prefix>.<topic>.m`) holds only
/// whole transactions, so a reader of batches sees committed data only. A transaction too large for
/// one message goes out first as *chunks* (subject `<prefix>.<topic>.s`) and is closed by a batch
/// whose header names the chunks' sequence range; chunks no batch names (a crash or an abort left
/// them) are never read.
///
/// Layout, big-endian: magic `SLJS` (4), version u8 = 1, kind u8 (1 batch, 2 chunk), reserved u16,
/// record count u32, records in the closed chunks u32, first and last chunk sequence u64 each (0 when
/// none), CRC32C u32 of every byte after this field; then per record: kind u8, body length u32, body.
struct MessageBatch: Equatable {
    enum Kind: UInt8 { case batch = 1, chunk = 2 }

    static let magic: [UInt8] = Array("SLJS".utf8)
    static let version: UInt8 = 1
    static let headerSize = 36
    static let recordHeaderSize = 5
    /// Records per message at most: offsets keep the index in their low bits.
    static let indexBits: UInt64 = 28
    static let maxRecords = Int(1 << indexBits) - 1

    /// A record's topic offset: the base sequence of its message (or of its transaction's first
    /// chunk) in the high bits, its index below. Increasing, not dense.
    static func offset(base: UInt64, index: Int) -> UInt64 { base << indexBits | UInt64(index) }
    static func base(of offset: UInt64) -> UInt64 { offset >> indexBits }
    static func index(of offset: UInt64) -> Int { Int(offset & ((1 << indexBits) - 1)) }

    var kind: Kind
    /// The chunks this batch closes (a large transaction's first records), if any.
    var chunks: ClosedRange<UInt64>?
    /// Records in those chunks: this batch's own records are numbered after them.
    var chunkRecords: Int
    var count: Int
    /// The message as it goes out: room for the header (written by ``sealed()``), then the records,
    /// each as kind, length, body. One buffer from the first record to the publisher: no copies.
    private(set) var bytes: [UInt8]

    /// An empty message to append records to.
    init(kind: Kind, chunks: ClosedRange<UInt64>? = nil, chunkRecords: Int = 0, capacity: Int = 0) {
        self.kind = kind
        self.chunks = chunks
        self.chunkRecords = chunkRecords
        count = 0
        bytes = []
        bytes.reserveCapacity(max(capacity, Self.headerSize))
        bytes.append(contentsOf: repeatElement(0, count: Self.headerSize))
    }

    var byteCount: Int { bytes.count }

    mutating func append(kind: UInt8, body: UnsafeRawBufferPointer) {
        bytes.append(kind)
        withUnsafeBytes(of: UInt32(body.count).bigEndian) { bytes.append(contentsOf: $0) }
        bytes.append(contentsOf: body)
        count += 1
    }

    /// Appends a record that `encode` writes straight into this message (swapped in and out, never
    /// assigned: a second reference would make every append copy the buffer). Returns the body's size;
    /// on a throw nothing was appended.
    mutating func append(kind: UInt8, _ encode: (inout RecordBody) throws -> Void) throws -> Int {
        let start = bytes.count
        bytes.append(kind)
        bytes.append(contentsOf: repeatElement(0, count: 4))
        var body = RecordBody()
        swap(&body.bytes, &bytes)
        do {
            try encode(&body)
        } catch {
            swap(&body.bytes, &bytes)
            bytes.removeSubrange(start...)
            throw error
        }
        swap(&body.bytes, &bytes)
        let size = bytes.count - start - Self.recordHeaderSize
        withUnsafeBytes(of: UInt32(truncatingIfNeeded: size).bigEndian) { length in
            for i in 0..<4 { bytes[start + 1 + i] = length[i] }
        }
        count += 1
        return size
    }

    /// Appends records already in this layout (moved between messages).
    mutating func append(encoded: ArraySlice<UInt8>, count: Int) {
        bytes.append(contentsOf: encoded)
        self.count += count
    }

    /// Drops the records from byte `end` on, leaving `count` records.
    mutating func truncate(to end: Int, count: Int) {
        bytes.removeSubrange(end...)
        self.count = count
    }

    /// The records from byte `start` on (a copy).
    func records(from start: Int) -> ArraySlice<UInt8> { bytes[start...] }

    /// The body of the record at byte `start`, in place.
    func withRecord<T>(at start: Int, _ body: ([UInt8], Range<Int>) throws -> T) rethrows -> T {
        let length = bytes.withUnsafeBytes { Int(UInt32(bigEndian: $0.loadUnaligned(fromByteOffset: start + 1, as: UInt32.self))) }
        let from = start + Self.recordHeaderSize
        return try body(bytes, from..<(from + length))
    }

    /// The message as sent, header written in place; the batch is left empty (its buffer moved out).
    mutating func sealed() -> [UInt8] {
        var out: [UInt8] = []
        swap(&out, &bytes)
        out.withUnsafeMutableBytes { raw in
            for (i, byte) in Self.magic.enumerated() { raw[i] = byte }
            raw[4] = Self.version
            raw[5] = kind.rawValue
            raw.storeBytes(of: 0, toByteOffset: 6, as: UInt16.self)
            raw.storeBytes(of: UInt32(count).bigEndian, toByteOffset: 8, as: UInt32.self)
            raw.storeBytes(of: UInt32(chunkRecords).bigEndian, toByteOffset: 12, as: UInt32.self)
            raw.storeBytes(of: (chunks?.lowerBound ?? 0).bigEndian, toByteOffset: 16, as: UInt64.self)
            raw.storeBytes(of: (chunks?.upperBound ?? 0).bigEndian, toByteOffset: 24, as: UInt64.self)
            let crc = sluice_crc32c(0, raw.baseAddress! + Self.headerSize, raw.count - Self.headerSize)
            raw.storeBytes(of: crc.bigEndian, toByteOffset: 32, as: UInt32.self)
        }
        count = 0
        return out
    }

    /// The message as sent (a copy; the batch is unchanged).
    func encoded() -> [UInt8] {
        var copy = self
        return copy.sealed()
    }

    struct DecodeError: Error, Equatable, CustomStringConvertible {
        let reason: String
        var description: String { "not a Sluice topic message: \(reason)" }
    }

    /// Checks a received body and returns its header; the records are read with ``Records``.
    struct Header: Equatable {
        var kind: Kind
        var chunks: ClosedRange<UInt64>?
        var chunkRecords: Int
        var count: Int
    }

    static func decodeHeader(_ bytes: UnsafeRawBufferPointer) throws(DecodeError) -> Header {
        guard bytes.count >= headerSize else { throw DecodeError(reason: "\(bytes.count) bytes, shorter than its header") }
        guard Array(bytes[0..<4]) == magic else { throw DecodeError(reason: "bad magic") }
        guard bytes[4] == version else { throw DecodeError(reason: "format version \(bytes[4]), this Sluice reads \(version)") }
        guard let kind = Kind(rawValue: bytes[5]) else { throw DecodeError(reason: "unknown message kind \(bytes[5])") }
        let count = Int(UInt32(bigEndian: bytes.loadUnaligned(fromByteOffset: 8, as: UInt32.self)))
        let chunkRecords = Int(UInt32(bigEndian: bytes.loadUnaligned(fromByteOffset: 12, as: UInt32.self)))
        let first = UInt64(bigEndian: bytes.loadUnaligned(fromByteOffset: 16, as: UInt64.self))
        let last = UInt64(bigEndian: bytes.loadUnaligned(fromByteOffset: 24, as: UInt64.self))
        let stored = UInt32(bigEndian: bytes.loadUnaligned(fromByteOffset: 32, as: UInt32.self))
        let actual = sluice_crc32c(0, bytes.baseAddress! + headerSize, bytes.count - headerSize)
        guard stored == actual else { throw DecodeError(reason: "checksum mismatch") }
        guard first <= last, (first == 0) == (last == 0), (first == 0) == (chunkRecords == 0) || first != 0,
              kind == .batch || first == 0 else { throw DecodeError(reason: "chunk range \(first)-\(last)") }
        return Header(kind: kind, chunks: first == 0 ? nil : first...last, chunkRecords: chunkRecords, count: count)
    }

    /// Walks the records of a checked body: (kind, body range within `bytes`).
    struct Records: Sequence, IteratorProtocol {
        let bytes: [UInt8]
        var position = MessageBatch.headerSize
        private(set) var remaining: Int
        private(set) var failure: DecodeError?

        init(_ bytes: [UInt8], count: Int) {
            self.bytes = bytes
            remaining = bytes.count >= MessageBatch.headerSize ? count : 0
        }

        mutating func next() -> (kind: UInt8, body: Range<Int>)? {
            guard remaining > 0 else {
                if position != bytes.count && bytes.count >= MessageBatch.headerSize && failure == nil {
                    failure = DecodeError(reason: "trailing bytes after the last record")
                }
                return nil
            }
            guard position + MessageBatch.recordHeaderSize <= bytes.count else {
                failure = DecodeError(reason: "record header past the end")
                remaining = 0
                return nil
            }
            let kind = bytes[position]
            let length = bytes.withUnsafeBytes { Int(UInt32(bigEndian: $0.loadUnaligned(fromByteOffset: position + 1, as: UInt32.self))) }
            let start = position + MessageBatch.recordHeaderSize
            guard length <= bytes.count - start else {
                failure = DecodeError(reason: "record body past the end")
                remaining = 0
                return nil
            }
            position = start + length
            remaining -= 1
            return (kind, start..<(start + length))
        }
    }
}

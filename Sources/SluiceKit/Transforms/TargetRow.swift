/// What the target gets of one source column, decided once per table schema.
enum ColumnPlan: UInt8, Sendable {
    case drop, copy, redact, hash, keep
}

/// The buffers one sink's transforms write target rows into, reused from change to change so the
/// per-row path allocates nothing. Each is kept at least as long as the longest row written (a row
/// is the prefix a ``Tuple``'s range names); a row the sink still holds when the next is written is
/// left to it (the buffer is copied on write), so reuse is always safe.
public struct RowBuffers {
    var new: [UInt8] = []
    var old: [UInt8] = []

    public init() {}
}

/// Writes a row through a raw pointer into room checked once per row: no capacity or uniqueness
/// check per byte, unlike appends to an array.
struct RowWriter {
    let base: UnsafeMutableRawPointer
    var offset = 0

    @inline(__always)
    mutating func byte(_ value: UInt8) {
        base.storeBytes(of: value, toByteOffset: offset, as: UInt8.self)
        offset += 1
    }

    @inline(__always)
    mutating func bytes(_ source: UnsafeRawBufferPointer) {
        guard let from = source.baseAddress, !source.isEmpty else { return }
        (base + offset).copyMemory(from: from, byteCount: source.count)
        offset += source.count
    }

    @inline(__always)
    mutating func bytes(_ source: [UInt8]) { source.withUnsafeBytes { bytes($0) } }

    @inline(__always)
    mutating func repeated(_ value: UInt8, _ count: Int) {
        guard count > 0 else { return }
        (base + offset).initializeMemory(as: UInt8.self, repeating: value, count: count)
        offset += count
    }

    @inline(__always)
    mutating func length(_ value: Int) { length(UInt32(value), at: offset); offset += 4 }

    @inline(__always)
    func length(_ value: UInt32, at position: Int) {
        base.storeBytes(of: value.bigEndian, toByteOffset: position, as: UInt32.self)
    }
}

extension TableTransform {
    /// Which target row to write from a source tuple.
    enum RowShape {
        /// The new row of a mirrored change: kept columns, metadata, `_sluice_deleted = false`.
        case mirrored(ChangeOperation)
        /// An old key or row: kept columns, added columns NULL (unchanged at a keyless target).
        case old
        /// The new row of a soft delete: kept columns unchanged, metadata, the delete mark.
        case softDeleted
        /// A history row: the four history columns, then the kept columns (unchanged ones NULL).
        case history(ChangeOperation)
    }

    /// The target row of `tuple` (nil: every source column NULL), written straight from its bytes
    /// into `buffer`: runs of copied columns in one copy each, masks applied in place, then the
    /// added columns. No `Value` is built, nothing is allocated once the buffer is long enough.
    func targetRow(_ tuple: Tuple?, _ shape: RowShape, lsn: LSN, _ transaction: TransactionInfo,
                   into buffer: inout [UInt8]) -> Tuple {
        let bound = (tuple?.range.count ?? 0) + rowSlack + 2 * transaction.commitTimeText.count
        if buffer.count < bound { buffer = [UInt8](repeating: 0, count: max(bound, 2 * buffer.count, 512)) }
        let written = buffer.withUnsafeMutableBytes { room -> Int in
            var out = RowWriter(base: room.baseAddress!)
            let count = UInt16(target.columns.count)
            out.byte(UInt8(count >> 8))
            out.byte(UInt8(count & 0xFF))
            switch shape {
            case let .mirrored(operation):
                appendColumns(tuple, unchangedAsNull: false, to: &out)
                appendMetadata(rules.metadata, operation, lsn, transaction, to: &out)
                if rules.deletes == .soft { out.bytes(Self.notDeleted) }
            case .old:
                appendColumns(tuple, unchangedAsNull: false, to: &out)
                out.repeated(oldRowAddedValue, target.columns.count - kept.count)
            case .softDeleted:
                out.repeated(Tuple.unchanged, kept.count)
                appendMetadata(rules.metadata, .delete, lsn, transaction, to: &out)
                out.bytes(Self.deleted)
                out.length(transaction.commitTimeText.count)
                out.bytes(transaction.commitTimeText)
            case let .history(operation):
                appendMetadata(Self.historyColumns, operation, lsn, transaction, to: &out)
                appendColumns(tuple, unchangedAsNull: true, to: &out)
            }
            return out.offset
        }
        precondition(written <= bound, "a target row outgrew its bound")
        return Tuple(storage: buffer, range: 0..<written, count: target.columns.count)
    }

    static let historyColumns: [SinkTransforms.Metadata] = [.op, .lsn, .xid, .commit_time]
    /// `_sluice_deleted = 'f'`, `_sluice_deleted_at = NULL`.
    private static let notDeleted: [UInt8] = [Tuple.text, 0, 0, 0, 1, UInt8(ascii: "f"), Tuple.null]
    /// `_sluice_deleted = 't'`, then the kind of `_sluice_deleted_at` (text; its length and the time follow).
    private static let deleted: [UInt8] = [Tuple.text, 0, 0, 0, 1, UInt8(ascii: "t"), Tuple.text]

    /// The kept columns of `tuple`, masked. Source columns the tuple lacks are NULL.
    private func appendColumns(_ tuple: Tuple?, unchangedAsNull: Bool, to out: inout RowWriter) {
        let present = min(tuple?.count ?? 0, columnPlans.count)
        columnPlans.withUnsafeBufferPointer { plans in
            if let tuple, present > 0 {
                tuple.storage.withUnsafeBytes { raw in
                    var position = tuple.range.lowerBound + 2
                    var run = position  // the start of copied columns not yet appended
                    for column in 0..<present {
                        let start = position
                        let kind = raw[position]
                        position += 1
                        if kind == Tuple.text || kind == Tuple.binary {
                            position += 4 + Int(UInt32(bigEndian: raw.loadUnaligned(fromByteOffset: position, as: UInt32.self)))
                        }
                        let plan = plans[column]
                        if plan == .copy, !unchangedAsNull || kind != Tuple.unchanged { continue }
                        if run < start { out.bytes(UnsafeRawBufferPointer(rebasing: raw[run..<start])) }
                        run = position
                        switch (plan, kind) {
                        case (.drop, _): break
                        case (.hash, Tuple.text), (.hash, Tuple.binary):
                            out.byte(Tuple.text)
                            out.length(64)
                            hmac!.writeHex(of: UnsafeRawBufferPointer(rebasing: raw[(start + 5)..<position]), to: out.base + out.offset)
                            out.offset += 64
                        case (.keep, Tuple.text), (.keep, Tuple.binary):
                            // The first N characters: UTF-8 bytes up to the N+1th lead byte.
                            let value = UnsafeRawBufferPointer(rebasing: raw[(start + 5)..<position])
                            var end = 0, characters = 0
                            while end < value.count {
                                if value[end] & 0xC0 != 0x80 {
                                    if characters == keptCharacters[column] { break }
                                    characters += 1
                                }
                                end += 1
                            }
                            out.byte(Tuple.text)
                            out.length(end)
                            out.bytes(UnsafeRawBufferPointer(rebasing: value[0..<end]))
                        case (.hash, Tuple.unchanged) where !unchangedAsNull, (.keep, Tuple.unchanged) where !unchangedAsNull:
                            out.byte(Tuple.unchanged)
                        default: out.byte(Tuple.null)  // redacted, NULL, or not sent in a history row
                        }
                    }
                    if run < position { out.bytes(UnsafeRawBufferPointer(rebasing: raw[run..<position])) }
                }
            }
            for column in present..<plans.count where plans[column] != .drop { out.byte(Tuple.null) }
        }
    }

    private func appendMetadata(_ items: [SinkTransforms.Metadata], _ operation: ChangeOperation, _ lsn: LSN,
                                _ transaction: TransactionInfo, to out: inout RowWriter) {
        for item in items {
            out.byte(Tuple.text)
            let start = out.offset
            out.offset += 4
            switch item {
            case .lsn:
                Self.appendHex(lsn.rawValue >> 32, to: &out)
                out.byte(UInt8(ascii: "/"))
                Self.appendHex(lsn.rawValue & 0xFFFF_FFFF, to: &out)
            case .commit_time: out.bytes(transaction.commitTimeText)
            case .op:
                let name = Self.name(of: operation)
                out.bytes(UnsafeRawBufferPointer(start: name.utf8Start, count: name.utf8CodeUnitCount))
            case .xid: Self.appendDecimal(UInt64(transaction.xid), to: &out)
            }
            out.length(UInt32(out.offset - start - 4), at: start)
        }
    }

    /// ``ChangeOperation/name`` without a String.
    private static func name(of operation: ChangeOperation) -> StaticString {
        switch operation {
        case .read: return "read"
        case .insert: return "insert"
        case .update: return "update"
        case .delete: return "delete"
        case .truncate: return "truncate"
        }
    }

    /// Uppercase hexadecimal without leading zeros, as an LSN's halves print.
    static func appendHex(_ value: UInt64, to out: inout RowWriter) {
        let digits: StaticString = "0123456789ABCDEF"
        let count = value == 0 ? 1 : (67 - value.leadingZeroBitCount) / 4
        var rest = value
        for index in stride(from: count - 1, through: 0, by: -1) {
            out.base.storeBytes(of: digits.utf8Start[Int(rest & 15)], toByteOffset: out.offset + index, as: UInt8.self)
            rest >>= 4
        }
        out.offset += count
    }

    static func appendDecimal(_ value: UInt64, to out: inout RowWriter) {
        var divisor: UInt64 = 1
        while value / divisor >= 10 { divisor *= 10 }
        while divisor > 0 {
            out.byte(UInt8(ascii: "0") + UInt8((value / divisor) % 10))
            divisor /= 10
        }
    }
}

extension Tuple {
    /// Whether some column is an unchanged TOASTed value (not sent).
    var hasUnchanged: Bool {
        var found = false
        forEachRaw { _, value in if case .unchanged = value { found = true } }
        return found
    }
}

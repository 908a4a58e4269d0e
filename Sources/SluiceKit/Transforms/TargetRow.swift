/// What the target gets of one source column, decided once per table schema.
enum ColumnPlan: UInt8, Sendable {
    case drop, copy, redact, hash
}

/// The buffers one sink's transforms write target rows into, reused from change to change so the
/// per-row path allocates nothing. A row the sink still holds when the next is written is left to
/// it (the buffer is copied on write), so reuse is always safe.
public struct RowBuffers {
    var new: [UInt8] = []
    var old: [UInt8] = []

    public init() {}
}

extension TableTransform {
    /// Which target row to write from a source tuple.
    enum RowShape {
        /// The new row of a mirrored change: kept columns, metadata, `_sluice_deleted = false`.
        case mirrored(ChangeOperation)
        /// An old key or row: kept columns, added columns NULL.
        case old
        /// The new row of a soft delete: kept columns unchanged, metadata, the delete mark.
        case softDeleted
        /// A history row: the four history columns, then the kept columns (unchanged ones NULL).
        case history(ChangeOperation)
    }

    /// The target row of `tuple` (nil: every source column NULL), written straight from its bytes
    /// into `buffer`: runs of copied columns in one copy each, masks applied in place, then the
    /// added columns. No `Value` is built.
    func targetRow(_ tuple: Tuple?, _ shape: RowShape, lsn: LSN, _ transaction: TransactionInfo,
                   into buffer: inout [UInt8]) -> Tuple {
        buffer.removeAll(keepingCapacity: true)
        buffer.reserveCapacity((tuple?.range.count ?? 0) + 69 * hashedColumns + 112)
        let count = UInt16(target.columns.count)
        buffer.append(UInt8(count >> 8))
        buffer.append(UInt8(count & 0xFF))
        switch shape {
        case let .mirrored(operation):
            appendColumns(tuple, unchangedAsNull: false, to: &buffer)
            appendMetadata(rules.metadata, operation, lsn, transaction, to: &buffer)
            if rules.deletes == .soft { buffer.append(contentsOf: Self.notDeleted) }
        case .old:
            appendColumns(tuple, unchangedAsNull: false, to: &buffer)
            buffer.append(contentsOf: repeatElement(Tuple.null, count: target.columns.count - kept.count))
        case .softDeleted:
            buffer.append(contentsOf: repeatElement(Tuple.unchanged, count: kept.count))
            appendMetadata(rules.metadata, .delete, lsn, transaction, to: &buffer)
            buffer.append(contentsOf: Self.deleted)
            Self.appendLength(transaction.commitTimeText.count, to: &buffer)
            buffer.append(contentsOf: transaction.commitTimeText)
        case let .history(operation):
            appendMetadata(Self.historyColumns, operation, lsn, transaction, to: &buffer)
            appendColumns(tuple, unchangedAsNull: true, to: &buffer)
        }
        return Tuple(bytes: buffer)
    }

    static let historyColumns: [SinkTransforms.Metadata] = [.op, .lsn, .xid, .commit_time]
    /// `_sluice_deleted = 'f'`, `_sluice_deleted_at = NULL`.
    private static let notDeleted: [UInt8] = [Tuple.text, 0, 0, 0, 1, UInt8(ascii: "f"), Tuple.null]
    /// `_sluice_deleted = 't'`, then the kind of `_sluice_deleted_at` (text; its length and the time follow).
    private static let deleted: [UInt8] = [Tuple.text, 0, 0, 0, 1, UInt8(ascii: "t"), Tuple.text]

    /// The kept columns of `tuple`, masked. Source columns the tuple lacks are NULL.
    private func appendColumns(_ tuple: Tuple?, unchangedAsNull: Bool, to out: inout [UInt8]) {
        let plans = columnPlans
        let present = min(tuple?.count ?? 0, plans.count)
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
                    if run < start { out.append(contentsOf: UnsafeRawBufferPointer(rebasing: raw[run..<start])) }
                    run = position
                    switch (plan, kind) {
                    case (.drop, _): break
                    case (.hash, Tuple.text), (.hash, Tuple.binary):
                        out.append(Tuple.text)
                        Self.appendLength(64, to: &out)
                        hmac!.appendHex(of: UnsafeRawBufferPointer(rebasing: raw[(start + 5)..<position]), to: &out)
                    case (.hash, Tuple.unchanged) where !unchangedAsNull: out.append(Tuple.unchanged)
                    default: out.append(Tuple.null)  // redacted, NULL, or not sent in a history row
                    }
                }
                if run < position { out.append(contentsOf: UnsafeRawBufferPointer(rebasing: raw[run..<position])) }
            }
        }
        for column in present..<plans.count where plans[column] != .drop { out.append(Tuple.null) }
    }

    private func appendMetadata(_ items: [SinkTransforms.Metadata], _ operation: ChangeOperation, _ lsn: LSN,
                                _ transaction: TransactionInfo, to bytes: inout [UInt8]) {
        for item in items {
            bytes.append(Tuple.text)
            let start = bytes.count
            Self.appendLength(0, to: &bytes)
            switch item {
            case .lsn:
                Self.appendHex(lsn.rawValue >> 32, to: &bytes)
                bytes.append(UInt8(ascii: "/"))
                Self.appendHex(lsn.rawValue & 0xFFFF_FFFF, to: &bytes)
            case .commit_time: bytes.append(contentsOf: transaction.commitTimeText)
            case .op: bytes.append(contentsOf: operation.name.utf8)
            case .xid: Self.appendDecimal(UInt64(transaction.xid), to: &bytes)
            }
            let length = UInt32(bytes.count - start - 4)
            withUnsafeBytes(of: length.bigEndian) { raw in
                for index in 0..<4 { bytes[start + index] = raw[index] }
            }
        }
    }

    @inline(__always)
    static func appendLength(_ length: Int, to bytes: inout [UInt8]) {
        withUnsafeBytes(of: UInt32(length).bigEndian) { bytes.append(contentsOf: $0) }
    }

    /// Uppercase hexadecimal without leading zeros, as an LSN's halves print.
    static func appendHex(_ value: UInt64, to bytes: inout [UInt8]) {
        let digits: StaticString = "0123456789ABCDEF"
        let count = value == 0 ? 1 : (67 - value.leadingZeroBitCount) / 4
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 16) { scratch in
            var rest = value
            for index in stride(from: count - 1, through: 0, by: -1) {
                scratch[index] = digits.utf8Start[Int(rest & 15)]
                rest >>= 4
            }
            bytes.append(contentsOf: UnsafeBufferPointer(rebasing: scratch[0..<count]))
        }
    }

    static func appendDecimal(_ value: UInt64, to bytes: inout [UInt8]) {
        var divisor: UInt64 = 1
        while value / divisor >= 10 { divisor *= 10 }
        while divisor > 0 {
            bytes.append(UInt8(ascii: "0") + UInt8((value / divisor) % 10))
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

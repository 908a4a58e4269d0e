/// What the target gets of one source column, decided once per table schema.
enum ColumnPlan: UInt8, Sendable {
    case drop, copy, redact, hash
}

extension TableTransform {
    /// The target row of a mirrored change, written straight from the source tuple's bytes: kept
    /// columns copied, masks applied, then the metadata and soft-delete columns. The same bytes as
    /// `Tuple(values: row(…))`, without materializing values (the per-row hot path).
    func mirroredRow(_ tuple: Tuple, _ operation: ChangeOperation, lsn: LSN, _ transaction: TransactionInfo) -> Tuple {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(tuple.range.count + 72 * hashedColumns + 48)
        let count = UInt16(target.columns.count)
        bytes.append(UInt8(count >> 8))
        bytes.append(UInt8(count & 0xFF))
        let plans = columnPlans
        tuple.forEachRaw { column, value in
            let plan = column < plans.count ? plans[column] : .drop
            switch (plan, value) {
            case (.drop, _): return
            case (.redact, _), (_, .null): bytes.append(Tuple.null)
            case (_, .unchanged): bytes.append(Tuple.unchanged)
            case let (.copy, .text(raw)): Self.append(Tuple.text, raw, to: &bytes)
            case let (.copy, .binary(raw)): Self.append(Tuple.binary, raw, to: &bytes)
            case let (.hash, .text(raw)), let (.hash, .binary(raw)):
                bytes.append(Tuple.text)
                Self.appendLength(64, to: &bytes)
                hmac!.appendHex(of: raw, to: &bytes)
            }
        }
        for item in rules.metadata {
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
        if rules.deletes == .soft {
            bytes.append(Tuple.text)
            Self.appendLength(1, to: &bytes)
            bytes.append(UInt8(ascii: "f"))
            bytes.append(Tuple.null)
        }
        return Tuple(bytes: bytes)
    }

    /// Whether ``mirroredRow(_:_:lsn:_:)`` makes the target row of this change: a new row that needs
    /// nothing from the old one.
    func writesRowDirectly(_ change: Change) -> Bool {
        rules.mode == .mirror && change.new?.count == source.columns.count && (change.operation == .insert || change.operation == .read
                                  || (change.operation == .update && change.oldKind != .full))
    }

    @inline(__always)
    static func append(_ kind: UInt8, _ raw: UnsafeRawBufferPointer, to bytes: inout [UInt8]) {
        bytes.append(kind)
        appendLength(raw.count, to: &bytes)
        bytes.append(contentsOf: raw)
    }

    @inline(__always)
    static func appendLength(_ length: Int, to bytes: inout [UInt8]) {
        withUnsafeBytes(of: UInt32(length).bigEndian) { bytes.append(contentsOf: $0) }
    }

    /// Uppercase hexadecimal without leading zeros, as an LSN's halves print.
    static func appendHex(_ value: UInt64, to bytes: inout [UInt8]) {
        let digits: StaticString = "0123456789ABCDEF"
        var shift = 60
        while shift > 0 && (value >> UInt64(shift)) & 15 == 0 { shift -= 4 }
        while shift >= 0 {
            bytes.append(digits.utf8Start[Int((value >> UInt64(shift)) & 15)])
            shift -= 4
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

/// What a batch does to one window and group of an aggregate.
public struct AggregateDelta: Sendable, Equatable {
    public let windowStart: Int64
    public let windowEnd: Int64
    /// The group's key (``AggregateFold/groupKey(_:)``), which holds its values.
    public let groupKey: String
    /// The group values' text forms (nil for NULL), in `group_by` order: read from the key when
    /// written (not kept per window and group while folding).
    public var group: [String?] { AggregateFold.groupValues(groupKey) }
    /// Rows added minus rows retracted: `count(*)` and whether the window remains.
    public var rows: Int64 = 0
    public let measures: MeasureDeltas

    init(windowStart: Int64, windowEnd: Int64, groupKey: String, measures: MeasureDeltas) {
        self.windowStart = windowStart
        self.windowEnd = windowEnd
        self.groupKey = groupKey
        self.measures = measures
    }

    public var isEmpty: Bool { rows == 0 && measures.allSatisfy(\.isEmpty) }

    mutating func add(_ row: MeasureValues, sign: Int64) {
        rows += sign
        for index in row.cells.indices {
            if case .null = row.cells[index] { continue }  // NULL is skipped
            measures.update(index) { measure in
                switch row.cells[index] {
                case .null, .present: break
                case let .scaled(value, scale): measure.addScaled(sign > 0 ? value : -value, scale: scale)
                case let .exact(value): if let value { measure.overflowSum = measure.overflowSum + (sign > 0 ? value : -value) }
                case let .float(value): measure.floatSum += value * Double(sign)
                case let .text(text): measure.addValue(text, sign)
                }
                measure.count += sign
            }
        }
    }
}

/// One row's measured values, read from its cells once: per measure NULL, or the number (sum,
/// avg) or text (min, max) it needs.
struct MeasureValues {
    enum Cell {
        /// `value × 10^-scale`: a decimal of at most 18 digits, added without ``ExactDecimal``.
        case scaled(Int64, Int)
        case null, present, exact(ExactDecimal?), float(Double), text(String)
    }

    /// How each measure reads its column: the measures' parts a row needs, without their names
    /// (a measure copied per row would retain them).
    enum Reading {
        case present, count(Int), float(Int), number(Int), text(Int)
    }

    let readings: [Reading]
    /// The current row's cell per measure.
    private(set) var cells: [Cell]

    init(_ bound: [BoundAggregate.BoundMeasure]) {
        readings = bound.map { measure in
            guard let column = measure.column else { return .present }
            switch measure.function {
            case .countRows, .count: return .count(column)
            case .sum, .avg: return measure.valueClass == .float ? .float(column) : .number(column)
            case .min, .max: return .text(column)
            }
        }
        cells = Array(repeating: .null, count: bound.count)
    }

    /// Reads another row into the same buffer (no allocation).
    mutating func read(_ row: UnsafeBufferPointer<Tuple.RawValue>) {
        for index in readings.indices { cells[index] = Self.cell(row, readings[index]) }
    }

    private static func cell(_ row: UnsafeBufferPointer<Tuple.RawValue>, _ reading: Reading) -> Cell {
        let column: Int
        switch reading {
        case .present: return .present
        case let .count(index), let .float(index), let .number(index), let .text(index): column = index
        }
        guard column < row.count, case let .text(bytes) = row[column] else { return .null }
        switch reading {
        case .present, .count: return .present
        case .float: return .float(Double(String(decoding: bytes, as: UTF8.self)) ?? 0)
        case .number:
            if let (value, scale) = Self.scaled(bytes) { return .scaled(value, scale) }
            return .exact(ExactDecimal(text: bytes))
        case .text: return .text(String(decoding: bytes, as: UTF8.self))
        }
    }
}

extension MeasureValues {
    /// `-12.50` as (-1250, 2); nil for more than 18 digits, exponents, NaN and infinities.
    static func scaled<Bytes: Collection>(_ bytes: Bytes) -> (Int64, Int)? where Bytes.Element == UInt8 {
        var value: Int64 = 0
        var digits = 0, scale = 0
        var seenPoint = false, negative = false
        for (offset, byte) in bytes.enumerated() {
            if byte >= 48, byte <= 57 {
                // A 19th digit could overflow Int64: such values take the exact decimal path.
                if digits == 18 { return nil }
                value = value * 10 + Int64(byte - 48)
                digits += 1
                if seenPoint { scale += 1 }
            } else if byte == UInt8(ascii: "."), !seenPoint {
                seenPoint = true
            } else if offset == 0, byte == UInt8(ascii: "-") || byte == UInt8(ascii: "+") {
                negative = byte == UInt8(ascii: "-")
            } else {
                return nil
            }
        }
        guard digits > 0 else { return nil }
        return (negative ? -value : value, scale)
    }
}

/// An ``AggregateDelta``'s measures, kept in its fold's ``MeasureStore``: a window and group new to
/// the batch allocates nothing of its own for them.
public struct MeasureDeltas: RandomAccessCollection, Sendable, Equatable {
    let store: MeasureStore
    let offset: Int
    public let endIndex: Int
    public var startIndex: Int { 0 }

    public subscript(position: Int) -> MeasureDelta { store.measures[offset + position] }

    /// Changes one measure in the store (only its fold does, before it hands its deltas over).
    func update(_ position: Int, _ body: (inout MeasureDelta) -> Void) { body(&store.measures[offset + position]) }

    public static func == (a: MeasureDeltas, b: MeasureDeltas) -> Bool { a.elementsEqual(b) }
}

/// The measures of one batch's deltas, in one array. Written only by the fold that made it, until
/// ``AggregateFold/takeDeltas()`` hands the deltas over (the fold then starts a new store); read only after.
final class MeasureStore: @unchecked Sendable {
    /// Accessed once or more per row: without the dynamic exclusivity check (one fold, one thread).
    @exclusivity(unchecked) var measures: [MeasureDelta] = []

    init(capacity: Int = 0) { measures.reserveCapacity(capacity) }

    func make(_ count: Int) -> MeasureDeltas {
        let offset = measures.count
        for _ in 0..<count { measures.append(MeasureDelta()) }
        return MeasureDeltas(store: self, offset: offset, endIndex: count)
    }
}

/// One measure's part of an ``AggregateDelta``.
public struct MeasureDelta: Sendable, Equatable {
    /// Non-NULL values added minus retracted (rows, for `count(*)`).
    public var count: Int64 = 0
    /// The change of the sum, for integer and numeric columns: `scaled × 10^-scale` while it fits
    /// 18 digits, plus `overflowSum` (values that did not).
    var scaled: Int64 = 0
    var scale = 0
    var overflowSum = MeasureDelta.zero
    static let zero = ExactDecimal(0)
    /// The change of the sum, for integer and numeric columns, exact.
    public var exactSum: ExactDecimal {
        let small = ExactDecimal(kind: .finite, negative: scaled < 0, digits: String(scaled.magnitude).utf8.map { $0 - 48 }, scale: scale)
        return overflowSum.isZero ? small : overflowSum + small
    }

    /// The text of `exactSum` (PostgreSQL's form, keeping the scale), without building it when it fits.
    public var exactSumText: String {
        guard overflowSum.isZero else { return exactSum.description }
        var digits = String(scaled.magnitude)
        if scale > 0 {
            if digits.utf8.count <= scale { digits = String(repeating: "0", count: scale - digits.utf8.count + 1) + digits }
            digits.insert(".", at: digits.index(digits.endIndex, offsetBy: -scale))
        }
        return scaled < 0 ? "-" + digits : digits
    }

    /// The change of the sum as `value × 10^-scale` while it fits 18 digits.
    public var smallSum: (value: Int64, scale: Int)? { overflowSum.isZero ? (scaled, scale) : nil }

    /// The text of `exactSum` written into a stack buffer for `body` (no String); false, without
    /// calling it, when the sum went beyond 18 digits (then ``exactSumText``). Not generic: called per
    /// aggregate row from the sinks, a generic one instantiated its type metadata each time.
    public func withExactSumText(_ body: (UnsafeRawBufferPointer) throws -> Void) rethrows -> Bool {
        guard overflowSum.isZero, scale <= 18 else { return false }
        return try withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 48) { buffer in
            // Digits from the right: the fraction, the point, the integer part (at least "0"), the sign.
            var position = 48, magnitude = scaled.magnitude
            func put(_ byte: UInt8) { position -= 1; buffer[position] = byte }
            if scale > 0 {
                for _ in 0..<scale { put(UInt8(48 + magnitude % 10)); magnitude /= 10 }
                put(UInt8(ascii: "."))
            }
            repeat { put(UInt8(48 + magnitude % 10)); magnitude /= 10 } while magnitude > 0
            if scaled < 0 { put(UInt8(ascii: "-")) }
            try body(UnsafeRawBufferPointer(rebasing: UnsafeMutableRawBufferPointer(buffer)[position...]))
            return true
        }
    }

    mutating func addScaled(_ value: Int64, scale valueScale: Int) {
        var (sum, sumScale, added) = (scaled, scale, value)
        var fits = true
        while sumScale < valueScale, fits {
            let (next, overflow) = sum.multipliedReportingOverflow(by: 10)
            (sum, sumScale, fits) = (next, sumScale + 1, !overflow)
        }
        var addedScale = valueScale
        while addedScale < sumScale, fits {
            let (next, overflow) = added.multipliedReportingOverflow(by: 10)
            (added, addedScale, fits) = (next, addedScale + 1, !overflow)
        }
        if fits {
            let (total, overflow) = sum.addingReportingOverflow(added)
            if !overflow, total.magnitude < 1_000_000_000_000_000_000 {
                (scaled, scale) = (total, sumScale)
                return
            }
        }
        // Too wide for 18 digits: carried exactly from here on.
        let wide = ExactDecimal(kind: .finite, negative: value < 0, digits: String(value.magnitude).utf8.map { $0 - 48 }, scale: valueScale)
        overflowSum = overflowSum + wide
    }
    /// The change of the sum, for float columns (not exact under retraction: floats round).
    public var floatSum = 0.0
    /// For min and max: the first value seen and its count, inline (a fine-grained window and group
    /// often holds one value); further distinct values in `moreValues`.
    var firstValue: String?
    var firstCount: Int64 = 0
    var moreValues: [String: Int64]?

    /// For min and max: each value's text with how many rows holding it were added minus retracted.
    public var values: [String: Int64] {
        var all = moreValues ?? [:]
        if let firstValue { all[firstValue] = firstCount }
        return all
    }

    mutating func addValue(_ text: String, _ sign: Int64) {
        guard let first = firstValue else { (firstValue, firstCount) = (text, sign); return }
        if first == text { firstCount += sign; return }
        if moreValues == nil { moreValues = [text: sign] } else { moreValues![text, default: 0] += sign }
    }

    /// Whether any value's count changed (min and max).
    public var hasValues: Bool { firstValue != nil }
    /// Each value with its count (zero counts included), without building a dictionary.
    public func forEachValue(_ body: (String, Int64) throws -> Void) rethrows {
        guard let firstValue else { return }
        try body(firstValue, firstCount)
        if let moreValues { for (value, count) in moreValues { try body(value, count) } }
    }
    /// How many values gained rows.
    public var addedValueCount: Int {
        (firstCount > 0 ? 1 : 0) + (moreValues?.values.reduce(0) { $0 + ($1 > 0 ? 1 : 0) } ?? 0)
    }
    /// Whether some value lost rows.
    public var retractsValue: Bool { firstCount < 0 || (moreValues?.values.contains { $0 < 0 } ?? false) }
    /// The extreme of the values that gained rows (nil if none did).
    public func addedExtreme(largest: Bool, valueClass: BoundAggregate.ValueClass) -> String? {
        var best = firstCount > 0 ? firstValue : nil
        for (value, count) in moreValues ?? [:] where count > 0 {
            guard let current = best else { best = value; continue }
            let order = ExtremeValue.compare(value, current, valueClass)
            if largest ? order > 0 : order < 0 { best = value }
        }
        return best
    }

    /// Whether no value's count changed (none listed, or all back to zero).
    public var valuesUnchanged: Bool { firstCount == 0 && (moreValues?.values.allSatisfy { $0 == 0 } ?? true) }

    public var isEmpty: Bool { count == 0 && scaled == 0 && overflowSum.isZero && floatSum == 0 && valuesUnchanged }

    public static func == (a: MeasureDelta, b: MeasureDelta) -> Bool {
        a.count == b.count && a.scaled == b.scaled && a.scale == b.scale && a.overflowSum == b.overflowSum
            && a.floatSum == b.floatSum && a.values == b.values
    }
}


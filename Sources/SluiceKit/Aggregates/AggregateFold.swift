/// The changes of one aggregate folded per window and group: what a batch of source transactions
/// does to the aggregate table, applied by the sink as one upsert per window and group, in the same
/// target transaction as its position.
///
/// An insert adds the row to each window holding its time; a delete retracts the old row; an update
/// retracts the old row and adds the new one, so a row that changes its window, group or predicate
/// moves. Rows whose time is NULL (or not a finite time) are in no window. Retraction needs the whole
/// old row: the source table must have REPLICA IDENTITY FULL (``BoundAggregate`` refuses otherwise).
public struct AggregateFold: Sendable {
    public private(set) var aggregate: BoundAggregate
    /// The latest event time seen (µs), for `retain:`; the sink stores it with its position.
    public var watermark: Int64?
    /// Rows skipped because their window was already dropped by `retain:`, since the fold was made.
    public private(set) var droppedLate = 0
    /// The batch's deltas in order of first change, and where each key's delta is: one array, so
    /// `takeDeltas` hands it over without a copy.
    private var deltas: [AggregateDelta] = []
    private var index: [Key: Int] = [:]
    /// The previous row's windows (first and last start), group key and their deltas' positions:
    /// consecutive rows of a time-ordered stream often share them, and then skip the lookups.
    private var recent: (first: Int64, last: Int64, group: String)?
    private var recentPositions: [Int] = []
    /// The current row's measured values: one buffer reused for every row.
    private var values = MeasureValues()

    struct Key: Hashable {
        let windowStart: Int64
        let group: String
    }

    public init(_ aggregate: BoundAggregate, watermark: Int64? = nil) {
        self.aggregate = aggregate
        self.watermark = watermark
    }

    /// Uses a new schema of the source table; pending deltas keep their meaning (same measures).
    public mutating func rebind(_ aggregate: BoundAggregate) { self.aggregate = aggregate }

    public var isEmpty: Bool { deltas.isEmpty }
    /// Windows and groups pending.
    public var pendingCount: Int { deltas.count }

    /// Folds one change. `commitTime` is its transaction's (for `time: commit_time`, where `oldTime`
    /// is the commit time that last wrote the old row). Returns the windows of rows skipped as late.
    @discardableResult
    public mutating func apply(_ change: Change, commitTime: Int64, oldTime: Int64? = nil) throws(AggregateBindError) -> [Int64] {
        try apply(change, rows: ChangeRows(change), commitTime: commitTime, oldTime: oldTime)
    }

    /// The same with the change's rows already read (once for all the folds over its table).
    @discardableResult
    public mutating func apply(_ change: Change, rows: ChangeRows, commitTime: Int64,
                               oldTime: Int64? = nil) throws(AggregateBindError) -> [Int64] {
        var late: [Int64] = []
        switch change.operation {
        case .insert, .read:
            guard let new = rows.new else { return [] }
            late += add(new, sign: 1, time: commitTime)
        case .delete:
            late += add(try oldRow(change, rows), sign: -1, time: oldTime)
        case .update:
            let old = try oldRow(change, rows)
            guard var row = rows.new else { return [] }
            for index in row.indices where row[index].isUnchanged && index < old.count { row[index] = old[index] }
            late += add(old, sign: -1, time: oldTime)
            late += add(row, sign: 1, time: commitTime)
        case .truncate:
            truncate()
        }
        return late
    }

    private func oldRow(_ change: Change, _ rows: ChangeRows) throws(AggregateBindError) -> [Value] {
        guard change.oldKind == .full, let old = rows.old else {
            throw AggregateBindError(key: aggregate.definition.key, message: """
                a \(change.operation.name) of \(change.relation.qualifiedName) came without its old row, which the aggregate needs \
                to retract it: ALTER TABLE \(BoundAggregate.quoted(change.relation)) REPLICA IDENTITY FULL on the source
                """)
        }
        return old
    }

    /// Drops what is pending: a TRUNCATE of the source empties the aggregate anyway.
    public mutating func truncate() {
        deltas.removeAll()
        index.removeAll()
        recent = nil
    }

    /// The folded deltas in order of first change, and an empty fold.
    public mutating func takeDeltas() -> [AggregateDelta] {
        var taken: [AggregateDelta] = []
        swap(&taken, &deltas)
        index.removeAll(keepingCapacity: true)  // the next batch is likely as large: no regrowing
        recent = nil
        deltas.reserveCapacity(taken.count)
        taken.removeAll { $0.isEmpty }
        return taken
    }

    /// Windows whose end is at or before this (µs) are dropped by `retain:`; nil without it.
    public var retentionCutoff: Int64? {
        guard let retain = aggregate.definition.retain, let watermark else { return nil }
        return watermark - retain
    }

    private mutating func add(_ row: [Value], sign: Int64, time commitTime: Int64?) -> [Int64] {
        // Per row: fields of `aggregate` are read in place (a copy of it would retain all its parts),
        // the group's key is built once, and the group values only for a window and group new to the batch.
        if let predicate = aggregate.predicate, predicate.evaluate(row) != .true { return [] }
        let time: Int64
        if let column = aggregate.timeColumn {
            guard column < row.count, case let .text(bytes) = row[column], let micros = EventTime.micros(bytes) else { return [] }
            time = micros
        } else {
            guard let commitTime else { return [] }
            time = commitTime
        }
        let window = aggregate.definition.window
        if sign > 0, aggregate.definition.retain != nil { watermark = max(watermark ?? time, time) }
        let groupKey = Self.groupKey(row, aggregate.groupColumns)
        // The row's measured values are read once, then added to each of its windows.
        values.read(row, aggregate.measures)
        let cutoff = retentionCutoff
        let first = window.firstStart(containing: time), last = AggregateWindow.floor(time, window.every)
        if let recent, recent.first == first, recent.last == last, recent.group == groupKey, cutoff.map({ first + window.size > $0 }) ?? true {
            for position in recentPositions { deltas[position].add(values, sign: sign, measures: aggregate.measures) }
            return []
        }
        recent = nil
        recentPositions.removeAll(keepingCapacity: true)
        var late: [Int64] = []
        var start = first
        while start <= last {
            defer { start += window.every }
            if let cutoff, start + window.size <= cutoff {
                droppedLate += 1
                late.append(start)
                continue
            }
            let key = Key(windowStart: start, group: groupKey)
            let position: Int
            if let known = index[key] {
                position = known
            } else {
                position = deltas.count
                index[key] = position
                let group = aggregate.groupColumns.map { index -> String? in index < row.count ? row[index].string : nil }
                deltas.append(AggregateDelta(windowStart: start, windowEnd: start + window.size, group: group,
                                             groupKey: groupKey, measureCount: aggregate.measures.count))
            }
            deltas[position].add(values, sign: sign, measures: aggregate.measures)
            recentPositions.append(position)
        }
        if late.isEmpty { recent = (first, last, groupKey) }
        return late
    }

    /// ``groupKey(_:)`` of a row's group columns, built without the intermediate arrays.
    static func groupKey(_ row: [Value], _ columns: [Int]) -> String {
        var key = ""
        for (position, index) in columns.enumerated() {
            if position > 0 { key.append(",") }
            if index < row.count, let text = row[index].string {
                key.append(String(text.utf8.count))
                key.append(":")
                key.append(text)
            } else {
                key.append("n")
            }
        }
        return key
    }

    /// One text per group: `n` for NULL, else the value's length, `:` and its text; joined by `,`.
    /// Unambiguous, so equal keys are equal groups (the aggregate table's key column `_sluice_group`).
    public static func groupKey(_ values: [String?]) -> String {
        values.map { value in value.map { "\($0.utf8.count):\($0)" } ?? "n" }.joined(separator: ",")
    }
}

/// A change's old and new rows as values, read from their tuples once per change.
public struct ChangeRows: Sendable {
    public let old: [Value]?
    public let new: [Value]?

    public init(_ change: Change) {
        old = change.old?.values
        new = change.new?.values
    }
}

/// What a batch does to one window and group of an aggregate.
public struct AggregateDelta: Sendable, Equatable {
    public let windowStart: Int64
    public let windowEnd: Int64
    /// The group values' text forms (nil for NULL), in `group_by` order.
    public let group: [String?]
    public let groupKey: String
    /// Rows added minus rows retracted: `count(*)` and whether the window remains.
    public var rows: Int64 = 0
    public var measures: [MeasureDelta]

    init(windowStart: Int64, windowEnd: Int64, group: [String?], groupKey: String, measureCount: Int) {
        self.windowStart = windowStart
        self.windowEnd = windowEnd
        self.group = group
        self.groupKey = groupKey
        measures = Array(repeating: MeasureDelta(), count: measureCount)
    }

    public var isEmpty: Bool { rows == 0 && measures.allSatisfy(\.isEmpty) }

    mutating func add(_ row: MeasureValues, sign: Int64, measures bound: [BoundAggregate.BoundMeasure]) {
        rows += sign
        for index in bound.indices {
            switch row.cells[index] {
            case .null: continue  // NULL is skipped
            case .present: break
            case let .scaled(value, scale): measures[index].addScaled(sign > 0 ? value : -value, scale: scale)
            case let .exact(value):
                if let value { measures[index].overflowSum = measures[index].overflowSum + (sign > 0 ? value : -value) }
            case let .float(value): measures[index].floatSum += value * Double(sign)
            case let .text(text): measures[index].addValue(text, sign)
            }
            measures[index].count += sign
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

    var cells: [Cell] = []

    /// Reads another row into the same buffer (no allocation once it has the measures' capacity).
    mutating func read(_ row: [Value], _ bound: [BoundAggregate.BoundMeasure]) {
        cells.removeAll(keepingCapacity: true)
        for measure in bound { cells.append(Self.cell(row, measure)) }
    }

    private static func cell(_ row: [Value], _ measure: BoundAggregate.BoundMeasure) -> Cell {
        guard let column = measure.column else { return .present }
        guard column < row.count, case let .text(bytes) = row[column] else { return .null }
        switch measure.function {
        case .countRows, .count: return .present
        case .sum, .avg:
            if measure.valueClass == .float { return .float(Double(String(decoding: bytes, as: UTF8.self)) ?? 0) }
            if let (value, scale) = Self.scaled(bytes) { return .scaled(value, scale) }
            return .exact(ExactDecimal(text: bytes))
        case .min, .max: return .text(String(decoding: bytes, as: UTF8.self))
        }
    }
}

extension MeasureValues {
    /// `-12.50` as (-1250, 2); nil for more than 18 digits, exponents, NaN and infinities.
    static func scaled(_ bytes: ArraySlice<UInt8>) -> (Int64, Int)? {
        var value: Int64 = 0
        var digits = 0, scale = 0
        var seenPoint = false, negative = false
        for (offset, byte) in bytes.enumerated() {
            if byte >= 48, byte <= 57 {
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
            if digits > 18 { return nil }
        }
        guard digits > 0 else { return nil }
        return (negative ? -value : value, scale)
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

    /// The text of `exactSum` written into a stack buffer for `body` (no String); nil when the sum
    /// went beyond 18 digits (then ``exactSumText``).
    public func withExactSumText<T>(_ body: (UnsafeRawBufferPointer) throws -> T) rethrows -> T? {
        guard overflowSum.isZero, scale <= 18 else { return nil }
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
            return try body(UnsafeRawBufferPointer(rebasing: UnsafeMutableRawBufferPointer(buffer)[position...]))
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

/// An aggregate that cannot be applied, with the configuration key it concerns.
public typealias AggregateBindError = BoundAggregate.BindError

/// Picks min or max among values' text forms, compared as their column compares them.
public enum ExtremeValue {
    public static func pick(_ values: [String], largest: Bool, valueClass: BoundAggregate.ValueClass) -> String? {
        var best: String?
        for value in values {
            guard let current = best else { best = value; continue }
            let order = compare(value, current, valueClass)
            if largest ? order > 0 : order < 0 { best = value }
        }
        return best
    }

    /// -1, 0, 1; PostgreSQL's float order (NaN above every number).
    public static func compare(_ left: String, _ right: String, _ valueClass: BoundAggregate.ValueClass) -> Int {
        switch valueClass {
        case .exact:
            guard let a = ExactDecimal(left), let b = ExactDecimal(right) else { return left < right ? -1 : (left == right ? 0 : 1) }
            return a == b ? 0 : (a < b ? -1 : 1)
        case .float:
            let a = Double(left) ?? .nan, b = Double(right) ?? .nan
            if a.isNaN || b.isNaN { return a.isNaN == b.isNaN ? 0 : (a.isNaN ? 1 : -1) }
            return a == b ? 0 : (a < b ? -1 : 1)
        case .text:
            return left.utf8.elementsEqual(right.utf8) ? 0 : (left.utf8.lexicographicallyPrecedes(right.utf8) ? -1 : 1)
        }
    }
}

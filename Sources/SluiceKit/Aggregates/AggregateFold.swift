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
    /// The measures of `deltas`.
    private var store = MeasureStore()
    /// The previous row's windows (first and last start), group key and their deltas' positions:
    /// consecutive rows of a time-ordered stream often share them, and then skip the lookups.
    private var recent: (first: Int64, last: Int64, group: String)?
    private var recentPositions: [Int] = []
    /// The current row's measured values: one buffer reused for every row.
    private var values: MeasureValues

    struct Key: Hashable {
        let windowStart: Int64
        let group: String
    }

    public init(_ aggregate: BoundAggregate, watermark: Int64? = nil) {
        self.aggregate = aggregate
        self.watermark = watermark
        values = MeasureValues(aggregate.measures)
    }

    /// Uses a new schema of the source table; pending deltas keep their meaning (same measures).
    public mutating func rebind(_ aggregate: BoundAggregate) {
        self.aggregate = aggregate
        values = MeasureValues(aggregate.measures)
    }

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
        try apply(change.operation, oldKind: change.oldKind, rows: rows, commitTime: commitTime, oldTime: oldTime)
    }

    /// The same from a change's operation, kind of old row and rows (the fold thread gets no more).
    @discardableResult
    mutating func apply(_ operation: ChangeOperation, oldKind: OldValuesKind, rows: ChangeRows, commitTime: Int64,
                        oldTime: Int64? = nil) throws(AggregateBindError) -> [Int64] {
        var late: [Int64] = []
        switch operation {
        case .insert, .read:
            guard let new = rows.new else { return [] }
            late += add(new, sign: 1, time: commitTime)
        case .delete:
            late += add(try oldRow(operation, oldKind, rows), sign: -1, time: oldTime)
        case .update:
            let old = try oldRow(operation, oldKind, rows)
            guard let row = rows.new else { return [] }
            late += add(old, sign: -1, time: oldTime)
            late += add(row, sign: 1, time: commitTime)
        case .truncate:
            truncate()
        }
        return late
    }

    private func oldRow(_ operation: ChangeOperation, _ oldKind: OldValuesKind, _ rows: ChangeRows) throws(AggregateBindError) -> Tuple {
        guard oldKind == .full, let old = rows.old else {
            let relation = aggregate.schema
            throw AggregateBindError(key: aggregate.definition.key, message: """
                a \(operation.name) of \(relation.qualifiedName) came without its old row, which the aggregate needs \
                to retract it: ALTER TABLE \(BoundAggregate.quoted(relation)) REPLICA IDENTITY FULL on the source
                """)
        }
        return old
    }

    /// Drops what is pending: a TRUNCATE of the source empties the aggregate anyway.
    public mutating func truncate() {
        deltas.removeAll()
        store = MeasureStore()
        index.removeAll()
        recent = nil
    }

    /// The folded deltas in order of first change, and an empty fold.
    public mutating func takeDeltas() -> [AggregateDelta] {
        var taken: [AggregateDelta] = []
        swap(&taken, &deltas)
        store = MeasureStore(capacity: store.measures.count)  // the taken deltas keep theirs
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

    private mutating func add(_ row: Tuple, sign: Int64, time commitTime: Int64?) -> [Int64] {
        if let predicate = aggregate.predicate, predicate.evaluate(row) != .true { return [] }
        return row.withRawColumns { columns in add(columns, sign: sign, time: commitTime) }
    }

    private mutating func add(_ row: UnsafeBufferPointer<Tuple.RawValue>, sign: Int64, time commitTime: Int64?) -> [Int64] {
        // Per row: the columns are read from the tuple's bytes, fields of `aggregate` in place (a copy
        // of it would retain all its parts), and the group's key is built once.
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
        values.read(row)
        let cutoff = retentionCutoff
        let first = window.firstStart(containing: time), last = AggregateWindow.floor(time, window.every)
        if let recent, recent.first == first, recent.last == last, recent.group == groupKey, cutoff.map({ first + window.size > $0 }) ?? true {
            for position in recentPositions { deltas[position].add(values, sign: sign) }
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
                deltas.append(AggregateDelta(windowStart: start, windowEnd: start + window.size,
                                             groupKey: groupKey, measures: store.make(aggregate.measures.count)))
            }
            deltas[position].add(values, sign: sign)
            recentPositions.append(position)
        }
        if late.isEmpty { recent = (first, last, groupKey) }
        return late
    }

    /// ``groupKey(_:)`` of a row's group columns, built without the intermediate arrays.
    static func groupKey(_ row: UnsafeBufferPointer<Tuple.RawValue>, _ columns: [Int]) -> String {
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

    /// The values a ``groupKey(_:)`` was made of.
    public static func groupValues(_ key: String) -> [String?] {
        var values: [String?] = []
        var key = key
        key.withUTF8 { bytes in
            var position = 0
            while position < bytes.count {
                if bytes[position] == UInt8(ascii: "n") {
                    values.append(nil)
                    position += 1
                } else {
                    var length = 0
                    while bytes[position] != UInt8(ascii: ":") {
                        length = length * 10 + Int(bytes[position] - 48)
                        position += 1
                    }
                    values.append(String(decoding: UnsafeBufferPointer(rebasing: bytes[(position + 1)..<(position + 1 + length)]), as: UTF8.self))
                    position += 1 + length
                }
                position += 1  // the `,` between values
            }
        }
        return values
    }
}

/// A change's old and new rows, read once per change for all the folds over its table: the new row
/// with its unchanged (TOASTed, not sent) columns taken from the old one, as an update's retraction
/// and addition need the same values.
public struct ChangeRows: Sendable {
    public let old: Tuple?
    public let new: Tuple?

    public init(_ change: Change) { self.init(old: change.old, new: change.new) }

    init(old: Tuple?, new: Tuple?) {
        self.old = old
        self.new = new.map { Self.filled($0, from: old) }
    }

    /// `new` with each unchanged column replaced by the old row's value (itself when none is unchanged).
    static func filled(_ new: Tuple, from old: Tuple?) -> Tuple {
        guard let old else { return new }
        var unchanged = false
        new.forEachRaw { _, value in if case .unchanged = value { unchanged = true } }
        guard unchanged else { return new }
        let oldValues = old.values
        var body = RecordBody()
        body.u16(UInt16(new.count))
        func put(_ kind: UInt8, _ bytes: ArraySlice<UInt8>) {
            body.u8(kind)
            body.u32(UInt32(bytes.count))
            bytes.withUnsafeBytes { body.raw($0) }
        }
        for (index, value) in new.enumerated() {
            switch value.isUnchanged && index < oldValues.count ? oldValues[index] : value {
            case .null: body.u8(Tuple.null)
            case .unchanged: body.u8(Tuple.unchanged)
            case let .text(bytes): put(Tuple.text, bytes)
            case let .binary(bytes): put(Tuple.binary, bytes)
            }
        }
        return Tuple(bytes: body.bytes)
    }
}

extension Tuple {
    /// Every column's raw bytes in one stack buffer, valid only inside `body`: a row read without
    /// materializing its values.
    func withRawColumns<R>(_ body: (UnsafeBufferPointer<RawValue>) throws -> R) rethrows -> R {
        try storage.withUnsafeBytes { raw in
            try withUnsafeTemporaryAllocation(of: RawValue.self, capacity: Swift.max(count, 1)) { columns in
                var position = range.lowerBound + 2
                for column in 0..<count {
                    let kind = raw[position]
                    position += 1
                    switch kind {
                    case Tuple.null: columns.initializeElement(at: column, to: .null)
                    case Tuple.unchanged: columns.initializeElement(at: column, to: .unchanged)
                    default:
                        let length = Int(UInt32(bigEndian: raw.loadUnaligned(fromByteOffset: position, as: UInt32.self)))
                        let value = UnsafeRawBufferPointer(rebasing: raw[(position + 4)..<(position + 4 + length)])
                        position += 4 + length
                        columns.initializeElement(at: column, to: kind == Tuple.text ? .text(value) : .binary(value))
                    }
                }
                return try body(UnsafeBufferPointer(rebasing: columns[0..<count]))
            }
        }
    }
}

extension Tuple.RawValue {
    /// The text form (text or binary), as ``Value/string``.
    var string: String? {
        switch self {
        case let .text(bytes), let .binary(bytes): return String(decoding: bytes, as: UTF8.self)
        case .null, .unchanged: return nil
        }
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

import SluiceKit
import SluiceWire

/// Writing one batch's folded deltas. Windows the table holds no group of yet (the common case: time
/// moves on) are inserted in multi-row INSERTs of ``insertChunk`` rows, their state computed from
/// nothing; a new group of a stored window costs one `INSERT … ON CONFLICT DO NOTHING`; only a window
/// and group already stored is read, updated in Swift (SQLite has no exact decimal) and written back,
/// or deleted when no row is left.
///
/// min/max value counts: a window and group not listed in the value table holds one distinct value
/// (its extreme, `_sluice_<m>_n` times) — most windows and groups of a fine-grained aggregate, at no
/// cost per row. The first batch leaving it two or more lists every value's count; from then on each
/// changed value is one upsert, and the extreme is recomputed from the list only when the batch
/// retracted the current one.
extension SQLiteAggregates {
    /// The stored state of one window and group: rows, and per measure its count and sum or extreme text.
    private struct Row {
        var rows: Int64 = 0
        var counts: [Int64]
        var texts: [String?]

        init(measures: Int) {
            counts = Array(repeating: 0, count: measures)
            texts = Array(repeating: nil, count: measures)
        }
    }

    /// The statements of one aggregate's batch, prepared once per sink and aggregate.
    private struct Statements {
        let read, insert, replace, remove: SQLiteStatement
        /// Whether the table holds any group of a window; plain INSERTs of one and of ``insertChunk`` windows and groups.
        let stored, fresh, freshChunk: SQLiteStatement
        /// Parameters per window and group.
        let width: Int
        /// Per min/max measure (by index): its value table's upsert, prune, read, clear and whether it lists a window and group.
        let values: [Int: ValueStatements]
        /// How each group column and each measure's visible value is stored (decided once, not per bind).
        let groupStorage: [Storage]
        let measureStorage: [Storage]
        /// Which state columns the table has (``SQLiteAggregates/stateColumns(_:)``): `_sluice_rows`,
        /// and per measure its `_n` and `_s`.
        let writesRows: Bool
        let writesCount, writesText: [Bool]
    }

    enum Storage {
        case integer, real, text
    }

    private struct ValueStatements {
        let adjust, prune, all, clear, listed: SQLiteStatement
    }

    /// Rows per multi-row INSERT of new windows and groups.
    static let insertChunk = 32

    private func statements(_ aggregate: BoundAggregate) throws -> Statements {
        let table = quote(name(aggregate))
        let present: Set<String>
        if let known = layouts[name(aggregate)] { present = known } else {
            present = Set(try database.query("SELECT name FROM pragma_table_info(?)", [name(aggregate)]).compactMap { $0[0] })
            layouts[name(aggregate)] = present
        }
        // The state is read from the state columns the table has (a table made before they were
        // narrowed has them all), else from the visible column that holds the same value.
        func missing(_ column: String) -> ConnectorError {
            .misconfigured("sink \(sink): the aggregate table \(name(aggregate)) has no column \(column) and no measure that holds its value: it was not made by Sluice for this aggregate; drop it (it is rebuilt from the topic) or rename the aggregate's table")
        }
        let measures = aggregate.measures
        let writesRows = present.contains("_sluice_rows")
        guard let rowsColumn = writesRows ? "_sluice_rows" : measures.first(where: { $0.function == .countRows }).map({ quote($0.name) }) else {
            throw missing("_sluice_rows")
        }
        var stateColumns = [rowsColumn]
        var columns = ["window_start", "window_end", "_sluice_group"] + aggregate.groupColumns.map { quote(aggregate.schema.columns[$0].name) }
        if writesRows { columns.append("_sluice_rows") }
        var writesCount: [Bool] = [], writesText: [Bool] = []
        for (index, measure) in measures.enumerated() {
            columns.append(quote(measure.name))
            let count = "_sluice_\(measure.name)_n", text = "_sluice_\(measure.name)_s"
            writesCount.append(measure.function != .count && measure.column != nil && present.contains(count))
            writesText.append(measure.function != .count && measure.column != nil && present.contains(text))
            if writesCount[index] { columns.append(quote(count)) }
            if writesText[index] { columns.append(quote(text)) }
            guard let column = measure.column, measure.function != .count else {
                stateColumns += [quote(measure.name), "NULL"]
                continue
            }
            // The column's non-NULL count: its own, a count(column), or another measure's of the column.
            let sameColumn = measures.indices.filter { measures[$0].column == column }
            let countColumn = writesCount[index] ? quote(count)
                : sameColumn.lazy.compactMap { other -> String? in
                    if measures[other].function == .count { return self.quote(measures[other].name) }
                    return measures[other].function != .countRows && present.contains("_sluice_\(measures[other].name)_n")
                        ? self.quote("_sluice_\(measures[other].name)_n") : nil
                }.first
            guard let countColumn else { throw missing(count) }
            let textColumn = writesText[index] ? quote(text)
                : (measure.function != .avg && Self.measureStorage(aggregate, index) == .text ? quote(measure.name) : nil)
            guard let textColumn else { throw missing(text) }
            stateColumns += [countColumn, textColumn]
        }
        // A NOT NULL column no measure writes (one of measures: since removed) would fail every insert.
        let written = Set(["window_start", "window_end", "_sluice_group"] + aggregate.groupColumns.map { aggregate.schema.columns[$0].name }
                          + (writesRows ? ["_sluice_rows"] : []) + measures.indices.flatMap { index in
                              [measures[index].name] + (writesCount[index] ? ["_sluice_\(measures[index].name)_n"] : [])
                                  + (writesText[index] ? ["_sluice_\(measures[index].name)_s"] : [])
                          })
        let stale = layoutChecked.contains(name(aggregate)) ? []
            : try database.query("SELECT name FROM pragma_table_info(?) WHERE \"notnull\"", [name(aggregate)]).compactMap { $0[0] }
                .filter { !written.contains($0) }
        if stale.isEmpty { layoutChecked.insert(name(aggregate)) } else {
            throw ConnectorError.misconfigured("""
                sink \(sink): the aggregate table \(name(aggregate)) has columns \(stale.joined(separator: ", ")) that none of its measures \
                writes (were measures: changed?): an aggregate's table is not migrated. Drop \(name(aggregate)) and its \
                _sluice_\(name(aggregate))_* tables, restart, then sluice backfill --table \(aggregate.definition.from) rebuilds it; \
                or restore the measures
                """)
        }
        func rows(_ count: Int) -> String {
            (0..<count).map { row in
                "(" + (1...columns.count).map { "?\(row * columns.count + $0)" }.joined(separator: ", ") + ")"
            }.joined(separator: ", ")
        }
        let into = "INSERT INTO \(table) (\(columns.joined(separator: ", "))) VALUES "
        var values: [Int: ValueStatements] = [:]
        for (index, measure) in aggregate.measures.enumerated() where measure.function == .min || measure.function == .max {
            let state = valuesTable(aggregate, measure)
            let group = "WHERE window_start = ?1 AND _sluice_group = ?2"
            values[index] = ValueStatements(
                adjust: try statement("""
                    INSERT INTO \(state) (window_start, _sluice_group, value, n) VALUES (?1, ?2, ?3, ?4)
                    ON CONFLICT (window_start, _sluice_group, value) DO UPDATE SET n = n + excluded.n
                    """),
                prune: try statement("DELETE FROM \(state) \(group) AND n <= 0"),
                all: try statement("SELECT value FROM \(state) \(group)"), clear: try statement("DELETE FROM \(state) \(group)"),
                listed: try statement("SELECT 1 FROM \(state) \(group) LIMIT 1"))
        }
        return Statements(
            read: try statement("SELECT \(stateColumns.joined(separator: ", ")) FROM \(table) WHERE window_start = ?1 AND _sluice_group = ?2"),
            insert: try statement(into + rows(1) + " ON CONFLICT (window_start, _sluice_group) DO NOTHING"),
            replace: try statement("INSERT OR REPLACE INTO \(table) (\(columns.joined(separator: ", "))) VALUES " + rows(1)),
            remove: try statement("DELETE FROM \(table) WHERE window_start = ?1 AND _sluice_group = ?2"),
            stored: try statement("SELECT 1 FROM \(table) WHERE window_start = ?1 LIMIT 1"),
            fresh: try statement(into + rows(1)), freshChunk: try statement(into + rows(Self.insertChunk)), width: columns.count,
            values: values, groupStorage: aggregate.groupColumns.map { Self.storage(storageClass(aggregate.schema.columns[$0])) },
            measureStorage: measures.indices.map { Self.measureStorage(aggregate, $0) },
            writesRows: writesRows, writesCount: writesCount, writesText: writesText)
    }

    func write(_ deltas: [AggregateDelta], of aggregate: BoundAggregate) throws {
        let statements = try self.statements(aggregate)
        var times: [Int64: String] = [:]  // a window's start is shared by its groups, and by the next window's end
        func text(_ micros: Int64) -> String {
            if let known = times[micros] { return known }
            if times.count > 10_000 { times.removeAll(keepingCapacity: true) }
            let made = EventTime.text(micros)
            times[micros] = made
            return made
        }
        var extremes = [String?](repeating: nil, count: aggregate.measures.count)  // reused: no allocation per delta
        let nothing = Row(measures: aggregate.measures.count)
        /// The new extremes of a window and group new to the table: from its added values.
        func addedExtremes(_ delta: AggregateDelta) {
            for index in statements.values.keys {
                let measure = aggregate.measures[index]
                extremes[index] = delta.measures[index].addedExtreme(largest: measure.function == .max, valueClass: measure.valueClass)
            }
        }
        /// Lists the values of a window and group new to the table that holds two or more.
        func listValues(_ delta: AggregateDelta, start: String) throws {
            for (index, value) in statements.values where delta.measures[index].addedValueCount > 1 {
                try adjust(value.adjust, delta.measures[index], start: start, group: delta.groupKey)
            }
        }
        // Deltas of windows the table holds no group of: nothing to read or conflict with (a batch has
        // one delta per window and group), inserted together.
        var stored: [Int64: Bool] = [:]
        var fresh: [Int] = []
        fresh.reserveCapacity(Self.insertChunk)
        func insertFresh() throws {
            if fresh.count == Self.insertChunk {
                for (row, position) in fresh.enumerated() {
                    addedExtremes(deltas[position])
                    bind(statements.freshChunk, deltas[position], nothing, extremes: extremes, start: text(deltas[position].windowStart),
                         end: text(deltas[position].windowEnd), of: aggregate, layout: statements, first: row * statements.width + 1)
                }
                try runBound(statements.freshChunk)
            } else {
                for position in fresh {
                    addedExtremes(deltas[position])
                    bind(statements.fresh, deltas[position], nothing, extremes: extremes, start: text(deltas[position].windowStart),
                         end: text(deltas[position].windowEnd), of: aggregate, layout: statements)
                    try runBound(statements.fresh)
                }
            }
            for position in fresh { try listValues(deltas[position], start: text(deltas[position].windowStart)) }
            fresh.removeAll(keepingCapacity: true)
        }
        for (position, delta) in deltas.enumerated() {
            let start = text(delta.windowStart)
            // New to the table (nothing retracted): insert its state computed from nothing.
            if delta.rows > 0, !delta.measures.contains(where: \.retractsValue) {
                let held: Bool
                if let known = stored[delta.windowStart] {
                    held = known
                } else {
                    statements.stored.bind(1, text: start)
                    held = try statements.stored.step()
                    statements.stored.reset()
                    stored[delta.windowStart] = held
                }
                if !held {
                    fresh.append(position)
                    if fresh.count == Self.insertChunk { try insertFresh() }
                    continue
                }
                addedExtremes(delta)
                bind(statements.insert, delta, nothing, extremes: extremes, start: start, end: text(delta.windowEnd), of: aggregate, layout: statements)
                try runBound(statements.insert)
                if database.changes > 0 {
                    try listValues(delta, start: start)
                    continue
                }
            }
            var row = Row(measures: aggregate.measures.count)
            statements.read.bind(1, text: start)
            statements.read.bind(2, text: delta.groupKey)
            if try statements.read.step() {
                row.rows = statements.read.int64(0)
                for index in aggregate.measures.indices {
                    row.counts[index] = statements.read.int64(1 + 2 * index)
                    row.texts[index] = statements.read.text(2 + 2 * index)
                }
            }
            statements.read.reset()
            if row.rows + delta.rows <= 0 {
                for statement in [statements.remove] + statements.values.values.map(\.clear) {
                    statement.bind(1, text: start)
                    statement.bind(2, text: delta.groupKey)
                    try statement.run()
                }
                continue
            }
            for (index, value) in statements.values {
                // The value counts change even when no value is left (the last ones became NULL):
                // stale counts would come back as extremes after a later retraction.
                let measure = aggregate.measures[index]
                let picked = try extreme(measure, delta.measures[index], current: row.texts[index], held: row.counts[index], value,
                                         start: start, group: delta.groupKey)
                extremes[index] = row.counts[index] + delta.measures[index].count <= 0 ? nil : picked
            }
            bind(statements.replace, delta, row, extremes: extremes, start: start, end: text(delta.windowEnd), of: aggregate, layout: statements)
            try runBound(statements.replace)
        }
        try insertFresh()
    }

    /// Binds a window and group's new state: the stored `row` plus `delta`; min/max from `extremes`.
    private func bind(_ statement: SQLiteStatement, _ delta: AggregateDelta, _ row: Row, extremes: [String?],
                      start: String, end: String, of aggregate: BoundAggregate, layout: Statements, first: Int = 1) {
        var parameter = first
        func bind(_ text: String?) {
            if let text { statement.bind(parameter, text: text, in: bindArena) } else { statement.bindNull(parameter) }
            parameter += 1
        }
        func bind(_ value: Int64) {
            statement.bind(parameter, int64: value)
            parameter += 1
        }
        bind(start)
        bind(end)
        bind(delta.groupKey)
        let group = aggregate.groupColumns.isEmpty ? [] : delta.group  // read from the key once
        for (position, index) in aggregate.groupColumns.enumerated() {
            let value = group[position]
            if aggregate.schema.columns[index].typeClass == .boolean, let value {
                bind(value == "t" ? 1 : 0)
            } else {
                bindTyped(statement, &parameter, value, layout.groupStorage[position])
            }
        }
        if layout.writesRows { bind(row.rows + delta.rows) }
        for (index, measure) in aggregate.measures.enumerated() {
            let writesCount = layout.writesCount[index], writesText = layout.writesText[index]
            let change = delta.measures[index]
            let count = row.counts[index] + change.count
            switch measure.function {
            case .countRows, .count:
                bind(count)
            case .sum, .avg:
                // A window and group new to the table, its sum within 18 digits: bound from a stack buffer.
                if measure.function == .sum, measure.valueClass == .exact, row.texts[index] == nil, count > 0,
                   let (scaled, scale) = change.smallSum,
                   change.withExactSumText({ (text: UnsafeRawBufferPointer) -> Void in
                       if layout.measureStorage[index] == .integer, scale == 0 {
                           statement.bind(parameter, int64: scaled)
                       } else {
                           statement.bind(parameter, text: text, in: bindArena)
                       }
                       if writesCount { statement.bind(parameter + 1, int64: count) }
                       if writesText { statement.bind(parameter + (writesCount ? 2 : 1), text: text, in: bindArena) }
                   }) {
                    parameter += 1 + (writesCount ? 1 : 0) + (writesText ? 1 : 0)
                    continue
                }
                let sum = Self.add(row.texts[index], change, float: measure.valueClass == .float)
                let visible: String?
                if count <= 0 {
                    visible = nil
                } else if measure.function == .sum {
                    visible = sum
                } else if measure.valueClass == .float {
                    visible = Double(sum).map { "\($0 / Double(count))" }
                } else {
                    visible = ExactDecimal(sum).flatMap { $0 / ExactDecimal(count) }?.description
                }
                bindTyped(statement, &parameter, visible, layout.measureStorage[index])
                if writesCount { bind(count) }
                if writesText { bind(count <= 0 ? nil : sum) }
            case .min, .max:
                let extreme = count <= 0 ? nil : extremes[index]
                bindTyped(statement, &parameter, extreme, layout.measureStorage[index])
                if writesCount { bind(count) }
                if writesText { bind(extreme) }
            }
        }
    }

    /// Adds the batch's value counts of one window and group; true when some count went down.
    @discardableResult
    private func adjust(_ upsert: SQLiteStatement, _ change: MeasureDelta, start: String, group: String) throws -> Bool {
        var retracted = false
        try change.forEachValue { value, count in
            guard count != 0 else { return }
            upsert.bind(1, text: start)
            upsert.bind(2, text: group)
            upsert.bind(3, text: value)
            upsert.bind(4, int64: count)
            try upsert.run()
            retracted = retracted || count < 0
        }
        return retracted
    }

    /// Adjusts the value counts and returns the new extreme. A window and group not listed in the value
    /// table holds one value (`current`, `held` times): listed once the batch leaves two or more.
    /// A listed one's extreme comes from the current one and the added values unless the batch
    /// retracted the current one, else from every value left in this window and group.
    private func extreme(_ measure: BoundAggregate.BoundMeasure, _ change: MeasureDelta, current: String?, held: Int64,
                         _ statements: ValueStatements, start: String, group: String) throws -> String? {
        let largest = measure.function == .max
        if change.valuesUnchanged { return current }
        statements.listed.bind(1, text: start)
        statements.listed.bind(2, text: group)
        let listed = try statements.listed.step()
        statements.listed.reset()
        guard listed else {
            var counts = change.values
            if let current, held > 0 { counts[current, default: 0] += held }
            let left = counts.filter { $0.value > 0 }
            if left.count > 1 {
                for (value, count) in left.sorted(by: { $0.key < $1.key }) {
                    statements.adjust.bind(1, text: start)
                    statements.adjust.bind(2, text: group)
                    statements.adjust.bind(3, text: value)
                    statements.adjust.bind(4, int64: count)
                    try statements.adjust.run()
                }
            }
            return ExtremeValue.pick(Array(left.keys), largest: largest, valueClass: measure.valueClass)
        }
        var candidates = current.map { [$0] } ?? []
        candidates += change.values.compactMap { $0.value > 0 ? $0.key : nil }
        if try adjust(statements.adjust, change, start: start, group: group) {
            statements.prune.bind(1, text: start)
            statements.prune.bind(2, text: group)
            try statements.prune.run()
            if current == nil || (change.values[current!] ?? 0) < 0 {
                statements.all.bind(1, text: start)
                statements.all.bind(2, text: group)
                candidates = []
                while try statements.all.step() { if let value = statements.all.text(0) { candidates.append(value) } }
                statements.all.reset()
            }
        }
        return ExtremeValue.pick(candidates, largest: largest, valueClass: measure.valueClass)
    }
}

extension SQLiteAggregates {
    static func storage(_ storageClass: String) -> Storage {
        storageClass == "INTEGER" ? .integer : (storageClass == "REAL" ? .real : .text)
    }

    func bindTyped(_ statement: SQLiteStatement, _ parameter: inout Int, _ value: String?, _ storage: Storage) {
        defer { parameter += 1 }
        guard let value else { statement.bindNull(parameter); return }
        if storage == .integer, let number = Int64(value) { statement.bind(parameter, int64: number); return }
        if storage == .real, let number = Double(value) { statement.bind(parameter, double: number); return }
        statement.bind(parameter, text: value, in: bindArena)
    }

    /// Runs a statement bound by ``bind(_:_:_:extremes:start:end:of:layout:first:)``, then frees its arena.
    private func runBound(_ statement: SQLiteStatement) throws {
        defer { bindArena.reset() }
        try statement.run()
    }

    /// The stored sum text plus the batch's change, in the column's arithmetic.
    static func add(_ stored: String?, _ change: MeasureDelta, float: Bool) -> String {
        if float { return "\((stored.flatMap(Double.init) ?? 0) + change.floatSum)" }
        guard let base = stored.flatMap({ ExactDecimal($0) }) else { return change.exactSumText }
        return (base + change.exactSum).description
    }
}

import SluiceKit
import SluiceWire

/// The SQLite tables of a sink's aggregates, inside the sink's batch transaction. SQLite has no exact
/// decimal type, so the arithmetic runs here (``ExactDecimal``) and numeric sums, averages and
/// extremes are stored as text; integers as INTEGER, floats as REAL.
///
/// Each window and group touched by a batch is read, updated and written once. Beside the visible
/// columns the table keeps `_sluice_group` (the group's key: NULL values are one group),
/// `_sluice_rows`, and per measure `_sluice_<m>_n` (non-NULL values) and `_sluice_<m>_s` (the exact
/// sum as text, or for min/max the current extreme as text). min and max keep, per window, group and
/// value, how many rows hold the value in `_sluice_<table>_<measure>`; when a batch retracts values
/// the extreme is recomputed from that table (reading that window and group's distinct values).
final class SQLiteAggregates: AggregateStore {
    private let database: SQLiteDatabase
    private let sink: String
    private var statements: [String: SQLiteStatement] = [:]

    init(database: SQLiteDatabase, sink: String) {
        self.database = database
        self.sink = sink
    }

    static func createStateTable(_ database: SQLiteDatabase) throws {
        try database.execute("""
            CREATE TABLE IF NOT EXISTS sluice_aggregates (
                sink TEXT NOT NULL, "table" TEXT NOT NULL, watermark INTEGER, PRIMARY KEY (sink, "table"))
            """)
    }

    private func quote(_ name: String) -> String { SQLiteDatabase.quoteIdentifier(name) }
    private func name(_ aggregate: BoundAggregate) -> String {
        let table = aggregate.definition.table
        return table.schema == "public" ? table.table : "\(table.schema)_\(table.table)"
    }
    private func valuesTable(_ aggregate: BoundAggregate, _ measure: BoundAggregate.BoundMeasure) -> String {
        quote("_sluice_\(name(aggregate))_\(measure.name)")
    }

    private func rowsTable(_ aggregate: BoundAggregate) -> String { quote("_sluice_\(name(aggregate))_rows") }

    private func statement(_ sql: String) throws -> SQLiteStatement {
        if let statement = statements[sql] { return statement }
        let statement = try database.prepare(sql)
        statements[sql] = statement
        return statement
    }

    private func storageClass(_ column: RelationSchema.Column) -> String {
        switch column.typeClass {
        case .integer, .boolean: return "INTEGER"
        case .float: return "REAL"
        default: return "TEXT"
        }
    }

    func create(_ aggregate: BoundAggregate) throws {
        var columns = ["window_start TEXT NOT NULL", "window_end TEXT NOT NULL"]
        for index in aggregate.groupColumns {
            columns.append("\(quote(aggregate.schema.columns[index].name)) \(storageClass(aggregate.schema.columns[index]))")
        }
        for measure in aggregate.measures {
            switch measure.function {
            case .countRows, .count: columns.append("\(quote(measure.name)) INTEGER NOT NULL")
            case .sum, .min, .max, .avg:
                let type = measure.valueClass == .float ? "REAL" : (measure.function != .avg && measure.valueClass == .exact
                    && aggregate.schema.columns[measure.column!].typeClass == .integer ? "INTEGER" : "TEXT")
                columns.append("\(quote(measure.name)) \(type)")
            }
        }
        columns += ["_sluice_group TEXT NOT NULL", "_sluice_rows INTEGER NOT NULL"]
        for measure in aggregate.measures where measure.column != nil && measure.function != .count {
            columns += ["\(quote("_sluice_\(measure.name)_n")) INTEGER NOT NULL", "\(quote("_sluice_\(measure.name)_s")) TEXT"]
        }
        try database.execute("CREATE TABLE IF NOT EXISTS \(quote(name(aggregate))) (\(columns.joined(separator: ", ")), PRIMARY KEY (window_start, _sluice_group))")
        if aggregate.timeColumn == nil {
            try database.execute("CREATE TABLE IF NOT EXISTS \(rowsTable(aggregate)) (key TEXT PRIMARY KEY, commit_time INTEGER NOT NULL)")
        }
        for measure in aggregate.measures where measure.function == .min || measure.function == .max {
            try database.execute("""
                CREATE TABLE IF NOT EXISTS \(valuesTable(aggregate, measure)) (window_start TEXT NOT NULL, _sluice_group TEXT NOT NULL,
                    value TEXT NOT NULL, n INTEGER NOT NULL, PRIMARY KEY (window_start, _sluice_group, value))
                """)
        }
    }

    /// The stored state of one window and group: rows, and per measure its count and sum or extreme text.
    private struct Row {
        var rows: Int64 = 0
        var counts: [Int64]
        var texts: [String?]
    }

    func write(_ deltas: [AggregateDelta], of aggregate: BoundAggregate) throws {
        let table = quote(name(aggregate))
        var stateColumns = ["_sluice_rows"]
        for measure in aggregate.measures {
            if measure.column == nil || measure.function == .count {
                stateColumns += [quote(measure.name), "NULL"]
            } else {
                stateColumns += [quote("_sluice_\(measure.name)_n"), quote("_sluice_\(measure.name)_s")]
            }
        }
        let read = try statement("SELECT \(stateColumns.joined(separator: ", ")) FROM \(table) WHERE window_start = ?1 AND _sluice_group = ?2")
        var columns = ["window_start", "window_end", "_sluice_group"] + aggregate.groupColumns.map { quote(aggregate.schema.columns[$0].name) }
        columns.append("_sluice_rows")
        for measure in aggregate.measures {
            columns.append(quote(measure.name))
            if measure.column != nil && measure.function != .count {
                columns += [quote("_sluice_\(measure.name)_n"), quote("_sluice_\(measure.name)_s")]
            }
        }
        let upsert = try statement("INSERT OR REPLACE INTO \(table) (\(columns.joined(separator: ", "))) VALUES ("
                                   + (1...columns.count).map { "?\($0)" }.joined(separator: ", ") + ")")
        let remove = try statement("DELETE FROM \(table) WHERE window_start = ?1 AND _sluice_group = ?2")
        for delta in deltas {
            let start = EventTime.text(delta.windowStart)
            read.bind(1, text: start)
            read.bind(2, text: delta.groupKey)
            var row = Row(counts: Array(repeating: 0, count: aggregate.measures.count), texts: Array(repeating: nil, count: aggregate.measures.count))
            if try read.step() {
                row.rows = read.int64(0)
                for index in aggregate.measures.indices {
                    row.counts[index] = read.int64(1 + 2 * index)
                    row.texts[index] = read.text(2 + 2 * index)
                }
            }
            read.reset()
            row.rows += delta.rows
            if row.rows <= 0 {
                remove.bind(1, text: start)
                remove.bind(2, text: delta.groupKey)
                try remove.run()
                for measure in aggregate.measures where measure.function == .min || measure.function == .max {
                    let clear = try statement("DELETE FROM \(valuesTable(aggregate, measure)) WHERE window_start = ?1 AND _sluice_group = ?2")
                    clear.bind(1, text: start)
                    clear.bind(2, text: delta.groupKey)
                    try clear.run()
                }
                continue
            }
            var parameter = 1
            func bind(_ text: String?) {
                if let text { upsert.bind(parameter, text: text) } else { upsert.bindNull(parameter) }
                parameter += 1
            }
            func bind(_ value: Int64) {
                upsert.bind(parameter, int64: value)
                parameter += 1
            }
            bind(start)
            bind(EventTime.text(delta.windowEnd))
            bind(delta.groupKey)
            for (position, index) in aggregate.groupColumns.enumerated() {
                let value = delta.group[position]
                if aggregate.schema.columns[index].typeClass == .boolean, let value {
                    bind(value == "t" ? 1 : 0)
                } else {
                    bindTyped(upsert, &parameter, value, storageClass(aggregate.schema.columns[index]))
                }
            }
            bind(row.rows)
            for (index, measure) in aggregate.measures.enumerated() {
                let change = delta.measures[index]
                let count = row.counts[index] + change.count
                switch measure.function {
                case .countRows, .count:
                    bind(count)
                    continue
                case .sum, .avg:
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
                    bindVisible(upsert, &parameter, visible, measure, aggregate)
                    bind(count)
                    bind(count <= 0 ? nil : sum)
                case .min, .max:
                    // The value counts change even when no value is left (the last ones became NULL):
                    // stale counts would come back as extremes after a later retraction.
                    let picked = try self.extreme(measure, change, current: row.texts[index], aggregate: aggregate, start: start,
                                                  group: delta.groupKey)
                    let extreme = count <= 0 ? nil : picked
                    bindVisible(upsert, &parameter, extreme, measure, aggregate)
                    bind(count)
                    bind(extreme)
                }
            }
            try upsert.run()
        }
    }

    private func bindTyped(_ statement: SQLiteStatement, _ parameter: inout Int, _ value: String?, _ storage: String) {
        defer { parameter += 1 }
        guard let value else { statement.bindNull(parameter); return }
        if storage == "INTEGER", let number = Int64(value) { statement.bind(parameter, int64: number); return }
        if storage == "REAL", let number = Double(value) { statement.bind(parameter, double: number); return }
        statement.bind(parameter, text: value)
    }

    private func bindVisible(_ statement: SQLiteStatement, _ parameter: inout Int, _ value: String?,
                             _ measure: BoundAggregate.BoundMeasure, _ aggregate: BoundAggregate) {
        let storage = measure.valueClass == .float ? "REAL"
            : (measure.function != .avg && aggregate.schema.columns[measure.column!].typeClass == .integer ? "INTEGER" : "TEXT")
        bindTyped(statement, &parameter, value, storage)
    }

    /// The stored sum text plus the batch's change, in the column's arithmetic.
    static func add(_ stored: String?, _ change: MeasureDelta, float: Bool) -> String {
        if float { return "\((stored.flatMap(Double.init) ?? 0) + change.floatSum)" }
        return ((stored.flatMap { ExactDecimal($0) } ?? ExactDecimal(0)) + change.exactSum).description
    }

    /// Adjusts the value counts and returns the new extreme: from the current one and the added
    /// values when nothing was retracted, else from every value left in this window and group.
    private func extreme(_ measure: BoundAggregate.BoundMeasure, _ change: MeasureDelta, current: String?,
                         aggregate: BoundAggregate, start: String, group: String) throws -> String? {
        let table = valuesTable(aggregate, measure)
        let adjust = try statement("""
            INSERT INTO \(table) (window_start, _sluice_group, value, n) VALUES (?1, ?2, ?3, ?4)
            ON CONFLICT (window_start, _sluice_group, value) DO UPDATE SET n = n + excluded.n
            """)
        var retracted = false
        var candidates = current.map { [$0] } ?? []
        for (value, count) in change.values where count != 0 {
            adjust.bind(1, text: start)
            adjust.bind(2, text: group)
            adjust.bind(3, text: value)
            adjust.bind(4, int64: count)
            try adjust.run()
            if count < 0 { retracted = true } else { candidates.append(value) }
        }
        if retracted {
            let prune = try statement("DELETE FROM \(table) WHERE window_start = ?1 AND _sluice_group = ?2 AND n <= 0")
            prune.bind(1, text: start)
            prune.bind(2, text: group)
            try prune.run()
            let all = try statement("SELECT value FROM \(table) WHERE window_start = ?1 AND _sluice_group = ?2")
            all.bind(1, text: start)
            all.bind(2, text: group)
            candidates = []
            while try all.step() { if let value = all.text(0) { candidates.append(value) } }
            all.reset()
        }
        return ExtremeValue.pick(candidates, largest: measure.function == .max, valueClass: measure.valueClass)
    }

    func empty(_ aggregate: BoundAggregate) throws {
        try database.execute("DELETE FROM \(quote(name(aggregate)))")
        if aggregate.timeColumn == nil { try database.execute("DELETE FROM \(rowsTable(aggregate))") }
        for measure in aggregate.measures where measure.function == .min || measure.function == .max {
            try database.execute("DELETE FROM \(valuesTable(aggregate, measure))")
        }
    }

    func retain(_ aggregate: BoundAggregate, cutoff: Int64?, watermark: Int64?) throws {
        if let cutoff {
            let drop = try statement("DELETE FROM \(quote(name(aggregate))) WHERE window_end <= ?1")
            drop.bind(1, text: EventTime.text(cutoff))
            try drop.run()
            for measure in aggregate.measures where measure.function == .min || measure.function == .max {
                let clear = try statement("DELETE FROM \(valuesTable(aggregate, measure)) WHERE window_start <= ?1")
                clear.bind(1, text: EventTime.text(cutoff - aggregate.definition.window.size))
                try clear.run()
            }
        }
        let save = try statement("""
            INSERT INTO sluice_aggregates (sink, "table", watermark) VALUES (?1, ?2, ?3)
            ON CONFLICT (sink, "table") DO UPDATE SET watermark = excluded.watermark
            """)
        save.bind(1, text: sink)
        save.bind(2, text: aggregate.definition.table.description)
        if let watermark { save.bind(3, int64: watermark) } else { save.bindNull(3) }
        try save.run()
    }

    func watermarks() throws -> [String: Int64] {
        var marks: [String: Int64] = [:]
        for row in try database.query("SELECT \"table\", watermark FROM sluice_aggregates WHERE sink = ?", [sink]) {
            if let table = row[0], let mark = row[1].flatMap({ Int64($0) }) { marks[table] = mark }
        }
        return marks
    }

    func rowTime(_ aggregate: BoundAggregate, key: String) throws -> Int64? {
        let read = try statement("SELECT commit_time FROM \(rowsTable(aggregate)) WHERE key = ?1")
        defer { read.reset() }
        read.bind(1, text: key)
        return try read.step() ? read.int64(0) : nil
    }

    func setRowTime(_ aggregate: BoundAggregate, key: String, time: Int64?) throws {
        guard let time else {
            let forget = try statement("DELETE FROM \(rowsTable(aggregate)) WHERE key = ?1")
            forget.bind(1, text: key)
            try forget.run()
            return
        }
        let remember = try statement("INSERT OR REPLACE INTO \(rowsTable(aggregate)) (key, commit_time) VALUES (?1, ?2)")
        remember.bind(1, text: key)
        remember.bind(2, int64: time)
        try remember.run()
    }
}

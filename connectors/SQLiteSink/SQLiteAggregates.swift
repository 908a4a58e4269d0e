import SluiceKit
import SluiceWire

/// The SQLite tables of a sink's aggregates, inside the sink's batch transaction. SQLite has no exact
/// decimal type, so the arithmetic runs here (``ExactDecimal``) and numeric sums, averages and
/// extremes are stored as text; integers as INTEGER, floats as REAL.
///
/// Each window and group touched by a batch is written once (``write(_:of:)``). Beside the visible
/// columns the table keeps `_sluice_group` (the group's key: NULL values are one group),
/// `_sluice_rows`, and per measure `_sluice_<m>_n` (non-NULL values) and `_sluice_<m>_s` (the exact
/// sum as text, or for min/max the current extreme as text). min and max keep, per window, group and
/// value, how many rows hold the value in `_sluice_<table>_<measure>` once the window and group has
/// held two distinct values (before, its one value is the extreme); when a batch retracts the extreme
/// it is recomputed from that table (reading that window and group's distinct values).
final class SQLiteAggregates: AggregateStore {
    let database: SQLiteDatabase
    private let sink: String
    private var statements: [String: SQLiteStatement] = [:]
    /// The text values of the aggregate rows being written (``SQLiteBindArena``).
    let bindArena = SQLiteBindArena()

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

    func quote(_ name: String) -> String { SQLiteDatabase.quoteIdentifier(name) }
    func name(_ aggregate: BoundAggregate) -> String {
        let table = aggregate.definition.table
        return table.schema == "public" ? table.table : "\(table.schema)_\(table.table)"
    }
    func valuesTable(_ aggregate: BoundAggregate, _ measure: BoundAggregate.BoundMeasure) -> String {
        quote("_sluice_\(name(aggregate))_\(measure.name)")
    }

    private func rowsTable(_ aggregate: BoundAggregate) -> String { quote("_sluice_\(name(aggregate))_rows") }

    func statement(_ sql: String) throws -> SQLiteStatement {
        if let statement = statements[sql] { return statement }
        let statement = try database.prepare(sql)
        statements[sql] = statement
        return statement
    }

    func storageClass(_ column: RelationSchema.Column) -> String {
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
        try database.execute("CREATE TABLE IF NOT EXISTS \(quote(name(aggregate))) (\(columns.joined(separator: ", ")), PRIMARY KEY (window_start, _sluice_group)) WITHOUT ROWID")
        if aggregate.timeColumn == nil {
            try database.execute("CREATE TABLE IF NOT EXISTS \(rowsTable(aggregate)) (key TEXT PRIMARY KEY, commit_time INTEGER NOT NULL) WITHOUT ROWID")
        }
        for measure in aggregate.measures where measure.function == .min || measure.function == .max {
            try database.execute("""
                CREATE TABLE IF NOT EXISTS \(valuesTable(aggregate, measure)) (window_start TEXT NOT NULL, _sluice_group TEXT NOT NULL,
                    value TEXT NOT NULL, n INTEGER NOT NULL, PRIMARY KEY (window_start, _sluice_group, value)) WITHOUT ROWID
                """)
        }
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

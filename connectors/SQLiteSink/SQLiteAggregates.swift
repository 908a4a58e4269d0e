import SluiceKit
import SluiceWire

/// The SQLite tables of a sink's aggregates, inside the sink's batch transaction. SQLite has no exact
/// decimal type, so the arithmetic runs here (``ExactDecimal``) and numeric sums, averages and
/// extremes are stored as text; integers as INTEGER, floats as REAL.
///
/// Each window and group touched by a batch is written once (``write(_:of:)``). Beside the visible
/// columns the table keeps `_sluice_group` (the group's key: NULL values are one group) and only the
/// state no visible column already holds (``stateColumns(_:)``): `_sluice_rows` without a `count(*)`,
/// per column measured `_sluice_<m>_n` (non-NULL values) without a `count(column)`, and
/// `_sluice_<m>_s` (the exact sum as text) where the visible value is not that text (integer, float
/// and avg columns). min and max keep, per window, group and
/// value, how many rows hold the value in `_sluice_<table>_<measure>` once the window and group has
/// held two distinct values (before, its one value is the extreme); when a batch retracts the extreme
/// it is recomputed from that table (reading that window and group's distinct values).
final class SQLiteAggregates: AggregateStore {
    let database: SQLiteDatabase
    let sink: String
    private var statements: [String: SQLiteStatement] = [:]
    /// The text values of the aggregate rows being written (``SQLiteBindArena``).
    let bindArena = SQLiteBindArena()
    /// Per aggregate table, the columns it has (read once): which state columns are written.
    var layouts: [String: Set<String>] = [:]
    /// Aggregate tables found to have no NOT NULL column their measures leave unwritten.
    var layoutChecked: Set<String> = []

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
        for (index, measure) in aggregate.measures.enumerated() {
            switch measure.function {
            case .countRows, .count: columns.append("\(quote(measure.name)) INTEGER NOT NULL")
            case .sum, .min, .max, .avg:
                let storage = Self.measureStorage(aggregate, index)
                // An integer sum can outgrow INTEGER, whose affinity would turn it into a REAL: the
                // column has no declared type, so a sum is an INTEGER while it fits and exact text beyond.
                let type = storage == .integer && measure.function == .sum
                    ? "" : ["INTEGER", "REAL", "TEXT"][[Storage.integer, .real, .text].firstIndex(of: storage)!]
                columns.append("\(quote(measure.name)) \(type)")
            }
        }
        columns.append("_sluice_group TEXT NOT NULL")
        let state = Self.stateColumns(aggregate)
        if state.rows { columns.append("_sluice_rows INTEGER NOT NULL") }
        for (index, measure) in aggregate.measures.enumerated() {
            if state.counts.contains(index) { columns.append("\(quote("_sluice_\(measure.name)_n")) INTEGER NOT NULL") }
            if state.texts.contains(index) { columns.append("\(quote("_sluice_\(measure.name)_s")) TEXT") }
        }
        layouts[name(aggregate)] = nil
        layoutChecked.remove(name(aggregate))
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

extension SQLiteAggregates {
    /// How a measure's visible value is stored (the column's type, and how it is bound).
    static func measureStorage(_ aggregate: BoundAggregate, _ index: Int) -> Storage {
        let measure = aggregate.measures[index]
        guard let column = measure.column, measure.function != .count else { return .integer }
        if measure.valueClass == .float { return .real }
        return measure.function != .avg && measure.valueClass == .exact && aggregate.schema.columns[column].typeClass == .integer ? .integer : .text
    }

    /// The state columns a new aggregate table gets: each value a visible column does not already hold
    /// exactly. A narrower row is less to write per window and group.
    static func stateColumns(_ aggregate: BoundAggregate) -> (rows: Bool, counts: Set<Int>, texts: Set<Int>) {
        let measures = aggregate.measures
        var counted: Set<Int> = []  // source columns whose non-NULL count some column holds
        for measure in measures where measure.function == .count { counted.insert(measure.column!) }
        var counts: Set<Int> = [], texts: Set<Int> = []
        for (index, measure) in measures.enumerated() where measure.function != .count {
            guard let column = measure.column else { continue }
            if counted.insert(column).inserted { counts.insert(index) }
            // A text sum or extreme is the stored state itself; integers can overflow, floats round.
            if measure.function == .avg || measureStorage(aggregate, index) != .text { texts.insert(index) }
        }
        return (!measures.contains { $0.function == .countRows }, counts, texts)
    }
}

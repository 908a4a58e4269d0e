import SluiceKit
import SluiceWire

/// The PostgreSQL tables of a sink's aggregates, written through the sink's pipeline inside its batch
/// transaction. The arithmetic runs in the target: `numeric` stays exact.
///
/// An aggregate table holds `window_start`, `window_end`, the group columns and the measures, plus
/// `_sluice_group` (the group's key, so NULL group values are one group) and `_sluice_rows` (count of
/// rows: a window whose count drops to zero is deleted), `_sluice_<m>_n` (non-NULL values of a
/// measure: a sum over none is NULL) and `_sluice_<m>_sum`: sum and avg are generated from these two,
/// so avg is kept as sum and count.
/// min and max keep, per window, group and value, how many rows hold the value, in a table
/// `_sluice_<table>_<measure>` beside it; the extreme is read back from there after each batch,
/// so deleting the current maximum gives the next one. Batches of many windows and groups go through
/// staging tables (PostgresAggregateStaging.swift).
final class PostgresAggregates: AggregateStore {
    let pipeline: PGPipeline
    private let sink: String

    init(pipeline: PGPipeline, sink: String) {
        self.pipeline = pipeline
        self.sink = sink
    }

    static func createStateTable(_ connection: PGConnection) throws {
        try connection.execute("""
            CREATE TABLE IF NOT EXISTS public.sluice_aggregates (
                sink text NOT NULL, "table" text NOT NULL, watermark bigint, PRIMARY KEY (sink, "table"))
            """)
    }

    func quote(_ name: String) -> String { PGConnection.quoteIdentifier(name) }
    func table(_ aggregate: BoundAggregate) -> String {
        quote(aggregate.definition.table.schema) + "." + quote(aggregate.definition.table.table)
    }
    func valuesTable(_ aggregate: BoundAggregate, _ measure: BoundAggregate.BoundMeasure) -> String {
        quote(aggregate.definition.table.schema) + "." + quote("_sluice_\(aggregate.definition.table.table)_\(measure.name)")
    }

    private func rowsTable(_ aggregate: BoundAggregate) -> String {
        quote(aggregate.definition.table.schema) + "." + quote("_sluice_\(aggregate.definition.table.table)_rows")
    }

    /// A built-in type is kept; other types (enums, domains) become text.
    private func columnType(_ column: RelationSchema.Column) -> String {
        column.typeOID < 16384 ? column.typeName : "text"
    }

    private func measureType(_ measure: BoundAggregate.BoundMeasure, _ aggregate: BoundAggregate) -> String {
        switch measure.function {
        case .countRows, .count: return "bigint"
        case .sum, .avg: return measure.valueClass == .float ? "double precision" : "numeric"
        case .min, .max: return columnType(aggregate.schema.columns[measure.column!])
        }
    }

    func create(_ aggregate: BoundAggregate) throws {
        var columns = ["window_start timestamptz NOT NULL", "window_end timestamptz NOT NULL"]
        for index in aggregate.groupColumns {
            columns.append("\(quote(aggregate.schema.columns[index].name)) \(columnType(aggregate.schema.columns[index]))")
        }
        var state: [String] = []
        for measure in aggregate.measures {
            let type = measureType(measure, aggregate)
            let n = quote("_sluice_\(measure.name)_n")
            switch measure.function {
            case .countRows, .count: columns.append("\(quote(measure.name)) bigint NOT NULL")
            case .min, .max:
                columns.append("\(quote(measure.name)) \(type)")
                state.append("\(n) bigint NOT NULL")
            case .sum, .avg:
                let sum = quote("_sluice_\(measure.name)_sum")
                let value = measure.function == .sum ? "CASE WHEN \(n) = 0 THEN NULL ELSE \(sum) END" : "\(sum) / NULLIF(\(n), 0)"
                columns.append("\(quote(measure.name)) \(type) GENERATED ALWAYS AS (\(value)) STORED")
                state.append("\(sum) \(type) NOT NULL")
                state.append("\(n) bigint NOT NULL")
            }
        }
        columns.append("_sluice_group text NOT NULL")
        columns.append("_sluice_rows bigint NOT NULL")
        columns += state
        try pipeline.send("CREATE SCHEMA IF NOT EXISTS \(quote(aggregate.definition.table.schema))")
        try pipeline.send("CREATE TABLE IF NOT EXISTS \(table(aggregate)) (\(columns.joined(separator: ", ")), PRIMARY KEY (window_start, _sluice_group))")
        try refuseStaleColumns(aggregate)
        if aggregate.timeColumn == nil {
            try pipeline.send("CREATE TABLE IF NOT EXISTS \(rowsTable(aggregate)) (key text PRIMARY KEY, commit_time bigint NOT NULL)")
        }
        for measure in aggregate.measures where measure.function == .min || measure.function == .max {
            try pipeline.send("""
                CREATE TABLE IF NOT EXISTS \(valuesTable(aggregate, measure)) (window_start timestamptz NOT NULL, _sluice_group text NOT NULL,
                    value \(measureType(measure, aggregate)) NOT NULL, n bigint NOT NULL, PRIMARY KEY (window_start, _sluice_group, value))
                """)
        }
    }

    /// A NOT NULL column no measure writes (one of measures: since removed from the file) would fail
    /// every insert: the sink stops naming it and the rebuild instead.
    private func refuseStaleColumns(_ aggregate: BoundAggregate) throws {
        var written: Set<String> = ["window_start", "window_end", "_sluice_group", "_sluice_rows"]
        for index in aggregate.groupColumns { written.insert(aggregate.schema.columns[index].name) }
        for measure in aggregate.measures {
            written.formUnion([measure.name, "_sluice_\(measure.name)_n", "_sluice_\(measure.name)_sum"])
        }
        var parameters = PGParameters()
        parameters.append(table(aggregate))
        let result = try pipeline.query("""
            SELECT attname FROM pg_attribute WHERE attrelid = to_regclass($1) AND attnum > 0 AND NOT attisdropped
              AND attnotnull AND NOT atthasdef AND attgenerated = '' ORDER BY attnum
            """, parameters)
        let stale = (0..<result.rowCount).compactMap { result.string($0, 0) }.filter { !written.contains($0) }
        guard !stale.isEmpty else { return }
        let name = aggregate.definition.table
        throw ConnectorError.misconfigured("""
            sink \(sink): the aggregate table \(name) has columns \(stale.joined(separator: ", ")) that none of its measures writes \
            (were measures: changed?): an aggregate's table is not migrated. Drop \(name) and its _sluice_\(name.table)_* tables, \
            restart, then sluice backfill --table \(aggregate.definition.from) rebuilds it; or restore the measures
            """)
    }

    func write(_ deltas: [AggregateDelta], of aggregate: BoundAggregate) throws {
        let target = table(aggregate)
        var names = ["window_start", "window_end", "_sluice_group"] + aggregate.groupColumns.map { quote(aggregate.schema.columns[$0].name) }
        var casts = ["timestamptz", "timestamptz", "text"] + aggregate.groupColumns.map { columnType(aggregate.schema.columns[$0]) }
        var updates = ["_sluice_rows = a._sluice_rows + excluded._sluice_rows"]
        names.append("_sluice_rows")
        casts.append("bigint")
        for measure in aggregate.measures {
            let column = quote(measure.name)
            let n = quote("_sluice_\(measure.name)_n")
            switch measure.function {
            case .countRows, .count:
                names.append(column); casts.append("bigint")
                updates.append("\(column) = a.\(column) + excluded.\(column)")
            case .sum, .avg:
                let sum = quote("_sluice_\(measure.name)_sum")
                names += [sum, n]; casts += [measureType(measure, aggregate), "bigint"]
                updates.append("\(n) = a.\(n) + excluded.\(n)")
                updates.append("\(sum) = a.\(sum) + excluded.\(sum)")
            case .min, .max:
                names.append(n); casts.append("bigint")
                updates.append("\(n) = a.\(n) + excluded.\(n)")
            }
        }
        let upsert = """
            INSERT INTO \(target) AS a (\(names.joined(separator: ", "))) VALUES (\(casts.enumerated().map { "$\($0.offset + 1)::\($0.element)" }.joined(separator: ", ")))
            ON CONFLICT (window_start, _sluice_group) DO UPDATE SET \(updates.joined(separator: ", "))
            """
        if deltas.count >= Self.stagingThreshold {
            try writeStaged(deltas, of: aggregate, names: names, updates: updates)
            return
        }
        var parameters = PGParameters()
        for delta in deltas {
            parameters.removeAll()
            let start = EventTime.text(delta.windowStart)
            parameters.append(start)
            parameters.append(EventTime.text(delta.windowEnd))
            parameters.append(delta.groupKey)
            for value in delta.group { if let value { parameters.append(value) } else { parameters.appendNull() } }
            parameters.append(String(delta.rows))
            for (measure, change) in zip(aggregate.measures, delta.measures) {
                switch measure.function {
                case .countRows, .count: parameters.append(String(change.count))
                case .sum, .avg:
                    parameters.append(measure.valueClass == .float ? "\(change.floatSum)" : change.exactSumText)
                    parameters.append(String(change.count))
                case .min, .max: parameters.append(String(change.count))
                }
            }
            try pipeline.send(upsert, parameters)
            for (measure, change) in zip(aggregate.measures, delta.measures) where change.hasValues {
                try writeExtreme(measure, change, aggregate: aggregate, start: start, group: delta.groupKey)
            }
            // Zero too: rows added and retracted in one batch can leave a float sum's rounding residue,
            // which kept the delta (and an empty window) alive.
            if delta.rows <= 0 {
                parameters.removeAll()
                parameters.append(start)
                parameters.append(delta.groupKey)
                try pipeline.send("DELETE FROM \(target) WHERE window_start = $1::timestamptz AND _sluice_group = $2 AND _sluice_rows <= 0", parameters)
            }
        }
    }

    /// Adjusts the value counts of one window and group, then reads the extreme back from them.
    private func writeExtreme(_ measure: BoundAggregate.BoundMeasure, _ change: MeasureDelta, aggregate: BoundAggregate,
                              start: String, group: String) throws {
        let values = valuesTable(aggregate, measure)
        var parameters = PGParameters()
        var retracted = false
        for (value, count) in change.values.sorted(by: { $0.key < $1.key }) where count != 0 {
            retracted = retracted || count < 0
            parameters.removeAll()
            parameters.append(start)
            parameters.append(group)
            parameters.append(value)
            parameters.append(String(count))
            try pipeline.send("""
                INSERT INTO \(values) AS v VALUES ($1::timestamptz, $2, $3::\(measureType(measure, aggregate)), $4::bigint)
                ON CONFLICT (window_start, _sluice_group, value) DO UPDATE SET n = v.n + excluded.n
                """, parameters)
        }
        parameters.removeAll()
        parameters.append(start)
        parameters.append(group)
        if retracted {
            try pipeline.send("DELETE FROM \(values) WHERE window_start = $1::timestamptz AND _sluice_group = $2 AND n <= 0", parameters)
        }
        let function = measure.function == .min ? "min" : "max"
        try pipeline.send("""
            UPDATE \(table(aggregate)) SET \(quote(measure.name)) = (SELECT \(function)(value) FROM \(values)
                WHERE window_start = $1::timestamptz AND _sluice_group = $2)
            WHERE window_start = $1::timestamptz AND _sluice_group = $2
            """, parameters)
    }

    func empty(_ aggregate: BoundAggregate) throws {
        try pipeline.send("DELETE FROM \(table(aggregate))")
        if aggregate.timeColumn == nil { try pipeline.send("DELETE FROM \(rowsTable(aggregate))") }
        for measure in aggregate.measures where measure.function == .min || measure.function == .max {
            try pipeline.send("DELETE FROM \(valuesTable(aggregate, measure))")
        }
    }

    func retain(_ aggregate: BoundAggregate, cutoff: Int64?, watermark: Int64?) throws {
        var parameters = PGParameters()
        if let cutoff {
            parameters.append(EventTime.text(cutoff))
            try pipeline.send("DELETE FROM \(table(aggregate)) WHERE window_end <= $1::timestamptz", parameters)
            parameters.removeAll()
            parameters.append(EventTime.text(cutoff - aggregate.definition.window.size))
            for measure in aggregate.measures where measure.function == .min || measure.function == .max {
                try pipeline.send("DELETE FROM \(valuesTable(aggregate, measure)) WHERE window_start <= $1::timestamptz", parameters)
            }
        }
        parameters.removeAll()
        parameters.append(sink)
        parameters.append(aggregate.definition.table.description)
        if let watermark { parameters.append(String(watermark)) } else { parameters.appendNull() }
        try pipeline.send("""
            INSERT INTO public.sluice_aggregates (sink, "table", watermark) VALUES ($1, $2, $3::bigint)
            ON CONFLICT (sink, "table") DO UPDATE SET watermark = excluded.watermark
            """, parameters)
    }

    func watermarks() throws -> [String: Int64] {
        var parameters = PGParameters()
        parameters.append(sink)
        let result = try pipeline.query("SELECT \"table\", watermark::text FROM public.sluice_aggregates WHERE sink = $1", parameters)
        var marks: [String: Int64] = [:]
        for row in 0..<result.rowCount {
            if let table = result.string(row, 0), let mark = result.string(row, 1).flatMap({ Int64($0) }) { marks[table] = mark }
        }
        return marks
    }

    func rowTime(_ aggregate: BoundAggregate, key: String) throws -> Int64? {
        var parameters = PGParameters()
        parameters.append(key)
        let result = try pipeline.query("SELECT commit_time::text FROM \(rowsTable(aggregate)) WHERE key = $1", parameters)
        return result.rowCount > 0 ? result.string(0, 0).flatMap { Int64($0) } : nil
    }

    func setRowTime(_ aggregate: BoundAggregate, key: String, time: Int64?) throws {
        var parameters = PGParameters()
        parameters.append(key)
        guard let time else {
            try pipeline.send("DELETE FROM \(rowsTable(aggregate)) WHERE key = $1", parameters)
            return
        }
        parameters.append(String(time))
        try pipeline.send("""
            INSERT INTO \(rowsTable(aggregate)) VALUES ($1, $2::bigint) ON CONFLICT (key) DO UPDATE SET commit_time = excluded.commit_time
            """, parameters)
    }
}

import SluiceKit
import SluiceWire

/// A large batch's deltas go through temporary staging tables: one COPY of the deltas (and one per
/// min/max measure of its changed value counts), then one statement per step — upsert, value-count
/// upsert and prune, extremes read back, empty windows deleted — instead of statements per window
/// and group. Small batches keep the per-delta statements: a COPY costs round trips.
extension PostgresAggregates {
    static let stagingThreshold = 64

    /// `_sluice_stage_<what>`, or a hash of it past PostgreSQL's 63 bytes: a cut name could be two aggregates'.
    static func stagingName(_ what: String) -> String {
        let name = "_sluice_stage_" + what
        guard name.utf8.count > 63 else { return name }
        let hash = name.utf8.reduce(UInt64(0xcbf2_9ce4_8422_2325)) { ($0 ^ UInt64($1)) &* 0x100_0000_01b3 }
        return "_sluice_stage_" + String(hash, radix: 16)
    }

    /// `names` are the upserted columns in ``write(_:of:)``'s parameter order; `updates` its `SET` list.
    func writeStaged(_ deltas: [AggregateDelta], of aggregate: BoundAggregate, names: [String], updates: [String]) throws {
        let target = table(aggregate)
        let stage = quote(Self.stagingName("\(aggregate.definition.table.schema)_\(aggregate.definition.table.table)"))
        let extremes = aggregate.measures.enumerated().filter { $0.element.function == .min || $0.element.function == .max }
        func valueStage(_ measure: BoundAggregate.BoundMeasure) -> String {
            quote(Self.stagingName("\(aggregate.definition.table.schema)_\(aggregate.definition.table.table)_\(measure.name)"))
        }
        try pipeline.suspend()
        let connection = pipeline.connection
        // Made in the batch's transaction, so rolled back with it: created (if missing) every time, in one round trip.
        var create = ["""
            CREATE TEMP TABLE IF NOT EXISTS \(stage) ON COMMIT DELETE ROWS AS SELECT \(names.joined(separator: ", ")) FROM \(target) WITH NO DATA
            """]
        for (_, measure) in extremes {
            create.append("""
                CREATE TEMP TABLE IF NOT EXISTS \(valueStage(measure)) ON COMMIT DELETE ROWS AS
                SELECT window_start, _sluice_group, value, n FROM \(valuesTable(aggregate, measure)) WITH NO DATA
                """)
        }
        try connection.execute(create.joined(separator: ";\n"))
        var encoder = CopyTextEncoder(capacity: 1 << 20)
        func flush() throws {
            try encoder.buffer.withUnsafeBytes { try connection.putCopyData($0) }
            encoder.removeAll()
        }
        func field(_ text: String?) {
            guard var text else { encoder.appendNull(); return }
            text.withUTF8 { encoder.append(UnsafeRawBufferPointer($0)) }
        }
        var starts: [Int64: String] = [:]
        func time(_ micros: Int64) -> String {
            if let known = starts[micros] { return known }
            let made = EventTime.text(micros)
            starts[micros] = made
            return made
        }
        try connection.beginCopyIn("COPY \(stage) (\(names.joined(separator: ", "))) FROM STDIN")
        for delta in deltas {
            field(time(delta.windowStart))
            field(time(delta.windowEnd))
            field(delta.groupKey)
            for value in delta.group { field(value) }
            field(String(delta.rows))
            for (measure, change) in zip(aggregate.measures, delta.measures) {
                switch measure.function {
                case .countRows, .count: field(String(change.count))
                case .sum, .avg:
                    field(measure.valueClass == .float ? "\(change.floatSum)" : change.exactSumText)
                    field(String(change.count))
                case .min, .max: field(String(change.count))
                }
            }
            encoder.endRow()
            if encoder.count >= 1 << 20 { try flush() }
        }
        try flush()
        try connection.endCopy()
        var retracted: Set<Int> = []
        for (index, measure) in extremes {
            try connection.beginCopyIn("COPY \(valueStage(measure)) (window_start, _sluice_group, value, n) FROM STDIN")
            for delta in deltas {
                delta.measures[index].forEachValue { value, count in
                    guard count != 0 else { return }
                    if count < 0 { retracted.insert(index) }
                    field(time(delta.windowStart))
                    field(delta.groupKey)
                    field(value)
                    field(String(count))
                    encoder.endRow()
                }
                if encoder.count >= 1 << 20 { try flush() }
            }
            try flush()
            try connection.endCopy()
        }
        try pipeline.resume()

        let match = "t.window_start = s.window_start AND t._sluice_group = s._sluice_group"
        try pipeline.send("""
            INSERT INTO \(target) AS a (\(names.joined(separator: ", "))) SELECT \(names.joined(separator: ", ")) FROM \(stage)
            ON CONFLICT (window_start, _sluice_group) DO UPDATE SET \(updates.joined(separator: ", "))
            """)
        for (index, measure) in extremes {
            let values = valuesTable(aggregate, measure)
            let staged = valueStage(measure)
            try pipeline.send("""
                INSERT INTO \(values) AS v SELECT window_start, _sluice_group, value, n FROM \(staged)
                ON CONFLICT (window_start, _sluice_group, value) DO UPDATE SET n = v.n + excluded.n
                """)
            if retracted.contains(index) {
                try pipeline.send("DELETE FROM \(values) AS t USING \(staged) AS s WHERE \(match) AND t.value = s.value AND t.n <= 0")
            }
            let function = measure.function == .min ? "min" : "max"
            try pipeline.send("""
                UPDATE \(target) AS t SET \(quote(measure.name)) = (SELECT \(function)(v.value) FROM \(values) AS v
                    WHERE v.window_start = t.window_start AND v._sluice_group = t._sluice_group)
                FROM (SELECT DISTINCT window_start, _sluice_group FROM \(staged)) AS s WHERE \(match)
                """)
        }
        if deltas.contains(where: { $0.rows < 0 }) {
            try pipeline.send("DELETE FROM \(target) AS t USING \(stage) AS s WHERE \(match) AND s._sluice_rows <= 0 AND t._sluice_rows <= 0")
        }
        // Emptied for a second write in the same transaction (ON COMMIT empties them anyway).
        try pipeline.send("TRUNCATE \(([stage] + extremes.map { valueStage($0.element) }).joined(separator: ", "))")
    }
}

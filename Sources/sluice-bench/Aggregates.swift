import Foundation
import SluiceWire

extension Bench {
    /// The SQLite apply stage keeping two aggregates (tumbling 1 minute by account; hopping 5 minutes
    /// every minute) beside the mirrored table, against the plain SQLite apply stage of the same topic
    /// in this run. The topic is captured here from a table with REPLICA IDENTITY FULL (aggregates need it).
    func applyStageAggregates() throws {
        let url = try Workload.database("aggregates", on: source)
        let db = try PGConnection(url: url)
        try db.execute("ALTER TABLE bench REPLICA IDENTITY FULL")
        try db.execute("SELECT pg_create_logical_replication_slot('aggregates', 'pgoutput')")
        try Workload.load(url: url, total: events, perTransaction: 100)
        let topicData = scratch + "/aggregates_capture-data"
        _ = try captureRun("aggregates_capture", url: url, slot: "aggregates", end: try Workload.flushedEnd(url: url))

        func stage(_ name: String, aggregates: String) throws -> (Double, Child.Usage, SQLiteDatabase) {
            let path = scratch + "/\(name).db"
            let done = {
                guard FileManager.default.fileExists(atPath: path), let db = try? SQLiteDatabase(path: path, readOnly: true) else { return false }
                return (try? db.query("SELECT count(*) FROM done").first?.first ?? nil) == "1"
            }
            let config = try config(name, source: url, slot: "aggregates", sinks: [sqliteSink(path) + aggregates], dataDirectory: topicData)
            let (seconds, usage) = try runSluice(config, until: done)
            return (seconds, usage, try SQLiteDatabase(path: path, readOnly: true))
        }
        let plain = try stage("aggregates_plain", aggregates: "")
        let aggregated = try stage("aggregates_kept", aggregates: """

                aggregates:
                  - table: public.per_minute
                    from: public.bench
                    group_by: [account]
                    window: {tumbling: 1m, time: created_at}
                    measures: {n: "count(*)", total: "sum(amount)", biggest: "max(amount)"}
                  - table: public.last_five_minutes
                    from: public.bench
                    window: {hopping: 5m, every: 1m, time: created_at}
                    measures: {n: "count(*)", total: "sum(amount)"}
            """)
        // Every row is counted once per tumbling window and five times by the hopping one.
        let counted = try aggregated.2.query("SELECT (SELECT sum(n) FROM per_minute), (SELECT sum(n) FROM last_five_minutes)").first ?? []
        guard counted == [String(events), String(5 * events)] else {
            throw BenchError("the aggregates count \(counted), not [\(events), \(5 * events)]")
        }
        results.append(Result(name: "apply stage, 2 aggregates: topic → SQLite", events: events, seconds: aggregated.0,
                              reference: plain.0, referenceName: "plain apply stage (same topic, same run)",
                              peakRSSMB: mb(aggregated.1), cpuSeconds: aggregated.1.cpuSeconds,
                              note: String(format: "plain: %.1f MB RSS, %.2f s CPU", mb(plain.1), plain.1.cpuSeconds)))
    }
}

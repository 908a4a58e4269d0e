import Foundation
import SluiceWire

extension Bench {
    /// The SQLite apply stage through five transforms (include glob, rename, where, hash mask,
    /// metadata), against the plain SQLite apply stage of this run: the same topic, the same rows.
    func applyStageTransformed() throws {
        guard let url = captured else { throw BenchError("needs the capture case") }
        guard let plain = results.first(where: { $0.name == "apply stage only: topic → SQLite" }) else {
            throw BenchError("needs the stage-sqlite case (run it first, in the same run)")
        }
        let path = scratch + "/stage_transforms.db"
        let sink = sqliteSink(path) + """

                tables: ["public.*", "!public.audit_*"]
                rename: {public.bench: analytics.bench}
                where: {public.bench: "id > 0 AND account >= 0"}
                columns: {public.bench: {mask: {label: hash}}}
                mask_key: bench-mask-key
                metadata: [lsn, op]
            """
        let done = {
            guard FileManager.default.fileExists(atPath: path), let db = try? SQLiteDatabase(path: path, readOnly: true) else { return false }
            return (try? db.query("SELECT count(*) FROM done").first?.first ?? nil) == "1"
        }
        let config = try config("stage_transforms", source: url, slot: "sluice", sinks: [sink], dataDirectory: scratch + "/capture-data")
        let (seconds, usage) = try runSluice(config, until: done)
        let db = try SQLiteDatabase(path: path, readOnly: true)
        let rows = Int(try db.query("SELECT count(*) FROM analytics_bench").first?.first.flatMap { $0 } ?? "0") ?? 0
        guard rows == events else { throw BenchError("the transformed target has \(rows) rows, not \(events)") }
        results.append(Result(name: "apply stage, 5 transforms: topic → SQLite", events: events, seconds: seconds,
                              reference: plain.seconds, referenceName: "plain apply stage (same run)", peakRSSMB: mb(usage),
                              cpuSeconds: usage.cpuSeconds))
    }
}

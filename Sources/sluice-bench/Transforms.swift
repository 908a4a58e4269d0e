import Foundation
import SluiceWire

extension Bench {
    /// The apply stage through five transforms (include glob, rename, where, hash mask, metadata),
    /// against the plain apply stage of the same topic, the same rows, into SQLite or PostgreSQL. The
    /// load on the shared machine moved single runs by ±30%, so each side runs twice, in the order
    /// plain, transformed, transformed, plain, and each side's figure is the mean of its two runs.
    func applyStageTransformed(postgres: Bool = false) throws {
        guard let url = captured else { throw BenchError("needs the capture case") }
        let transforms = Self.transformKeys + "\n    metadata: [lsn, op]"
        var runs: [Bool: [(Double, Child.Usage)]] = [:]
        for (index, transformed) in [false, true, true, false].enumerated() {
            let name = "stage_transforms_\(postgres ? "pg_" : "")\(index)"
            let target = try transformTarget(name, postgres: postgres)
            let config = try config(name, source: url, slot: "sluice", sinks: [target.sink + (transformed ? transforms : "")],
                                    dataDirectory: scratch + "/capture-data")
            runs[transformed, default: []].append(try runSluice(config, until: { try target.count("done") == 1 }))
            let rows = try target.count(transformed ? (postgres ? "analytics.bench" : "analytics_bench") : "bench")
            guard rows == events else { throw BenchError("the target of \(name) has \(rows) rows, not \(events)") }
        }
        results.append(Self.pair("apply stage, 5 transforms: topic → \(postgres ? "PostgreSQL" : "SQLite")", events: events,
                                 runs[true]!, against: runs[false]!))
    }

    /// An empty target for one run: its sink section and a row count of one of its tables (0 while absent).
    private func transformTarget(_ name: String, postgres: Bool) throws -> (sink: String, count: (String) throws -> Int) {
        if postgres {
            let targetURL = try Workload.database(name, on: target, publication: false)
            let db = try PGConnection(url: targetURL)
            try db.execute("DROP TABLE done; DROP TABLE bench; DROP PROCEDURE load")
            return (postgresSink(targetURL), { table in
                guard (try db.execute("SELECT to_regclass('\(table)') IS NOT NULL").string(0, 0)) == "t" else { return 0 }
                return Int(try db.execute("SELECT count(*) FROM \(table)").string(0, 0) ?? "0") ?? 0
            })
        }
        let path = scratch + "/\(name).db"
        return (sqliteSink(path), { table in
            guard FileManager.default.fileExists(atPath: path), let db = try? SQLiteDatabase(path: path, readOnly: true),
                  let count = try? db.query("SELECT count(*) FROM \(table)").first?.first ?? nil else { return 0 }
            return Int(count) ?? 0
        })
    }

    /// Include glob, rename, where, hash mask: four of the five (metadata is left to each case).
    static let transformKeys = [
        "", #"    tables: ["public.*", "!public.audit_*"]"#, "    rename: {public.bench: analytics.bench}",
        #"    where: {public.bench: "id > 0 AND account >= 0"}"#, "    columns: {public.bench: {mask: {label: hash}}}",
        "    mask_key: bench-mask-key",
    ].joined(separator: "\n")

    /// The result of two runs of a side against two of the plain side: means, each run in the note.
    static func pair(_ name: String, events: Int, _ ours: [(Double, Child.Usage)], against plain: [(Double, Child.Usage)]) -> Result {
        func mean(_ values: [Double]) -> Double { values.reduce(0, +) / Double(values.count) }
        return Result(
            name: name, events: events, seconds: mean(ours.map(\.0)),
            reference: mean(plain.map(\.0)), referenceName: "plain apply stage (same run)",
            peakRSSMB: ours.map { Double($0.1.peakRSSKilobytes) / 1024 }.max(), cpuSeconds: mean(ours.map(\.1.cpuSeconds)),
            note: String(format: "mean of 2 runs each (transforms %.2f/%.2f s, plain %.2f/%.2f s); CPU s transforms %.2f/%.2f, plain %.2f/%.2f",
                         ours[0].0, ours[1].0, plain[0].0, plain[1].0, ours[0].1.cpuSeconds, ours[1].1.cpuSeconds,
                         plain[0].1.cpuSeconds, plain[1].1.cpuSeconds))
    }

    /// Updates and deletes through the transforms. A topic of `events` inserts, then updates of half
    /// the rows and deletes of a quarter under REPLICA IDENTITY FULL (each carries its whole old row),
    /// applied into SQLite plain, through the transforms with metadata, and in history mode, in the
    /// order plain, mirror, history, history, mirror, plain.
    func applyStageTransformedMixed() throws {
        let url = try Workload.database("transforms_mixed", on: source)
        let db = try PGConnection(url: url)
        try db.execute("ALTER TABLE bench REPLICA IDENTITY FULL")
        try db.execute("SELECT pg_create_logical_replication_slot('mixed', 'pgoutput')")
        try Workload.load(url: url, total: events, perTransaction: 100)
        let changed = try Workload.updatesAndDeletes(url: url, rows: events)
        let end = try Workload.flushedEnd(url: url)
        _ = try captureRun("transforms_mixed", url: url, slot: "mixed", end: end, sourceExtra: ["catch_up_threshold: off"])
        let deletes = changed / 3
        enum Side { case plain, mirror, history }
        var runs: [Side: [(Double, Child.Usage)]] = [:]
        for (index, side) in [Side.plain, .mirror, .history, .history, .mirror, .plain].enumerated() {
            let name = "stage_transforms_mixed_\(index)"
            let path = scratch + "/\(name).db"
            let done = {
                guard FileManager.default.fileExists(atPath: path), let db = try? SQLiteDatabase(path: path, readOnly: true) else { return false }
                return (try? db.query("SELECT count(*) FROM done WHERE id = 2").first?.first ?? nil) == "1"
            }
            let extra: String
            switch side {
            case .plain: extra = ""
            case .mirror: extra = Self.transformKeys + "\n    metadata: [lsn, op]"
            case .history: extra = Self.transformKeys + "\n    mode: history"
            }
            let config = try config(name, source: url, slot: "mixed", sinks: [sqliteSink(path) + extra],
                                    dataDirectory: scratch + "/transforms_mixed-data")
            runs[side, default: []].append(try runSluice(config, until: done))
            let (table, wanted) = side == .plain ? ("bench", events - deletes)
                : (side == .mirror ? ("analytics_bench", events - deletes) : ("analytics_bench", events + changed))
            let rows = Int(try SQLiteDatabase(path: path, readOnly: true).query("SELECT count(*) FROM \(table)").first?.first.flatMap { $0 } ?? "0") ?? 0
            guard rows == wanted else { throw BenchError("\(table) of \(name) has \(rows) rows, not \(wanted)") }
        }
        let total = events + changed + 2
        results.append(Self.pair("apply stage, inserts + updates + deletes (REPLICA IDENTITY FULL), 5 transforms: topic → SQLite",
                                 events: total, runs[.mirror]!, against: runs[.plain]!))
        results.append(Self.pair("apply stage, inserts + updates + deletes (REPLICA IDENTITY FULL), history mode: topic → SQLite",
                                 events: total, runs[.history]!, against: runs[.plain]!))
    }
}

import Foundation
import PGOutput
import SluiceWire

/// One line of the results table.
struct Result {
    var name: String
    var events: Int
    var seconds: Double
    var reference: Double?
    var referenceName: String?
    var peakRSSMB: Double?
    var cpuSeconds: Double?
    var note = ""
    /// Latency cases: commit→applied p50 and p99 (ms), and rows per bucket of `Latency.bucketBounds`.
    var latencyP50: Double? = nil
    var latencyP99: Double? = nil
    var latencyBuckets: [Int]? = nil

    var eventsPerSecond: Double { Double(events) / seconds }
    /// Sluice's throughput over the reference's, both measured in this run.
    var ratio: Double? { reference.map { eventsPerSecond / (Double(events) / $0) } }
}

/// The benchmark cases; every number comes from processes run here, now.
final class Bench {
    let root: String
    let scratch: String
    let sluice: String
    let events: Int
    let source: Cluster
    let target: Cluster
    var results: [Result] = []
    /// The capture case's source URL, once it ran: its topic is replayed by the apply-stage cases.
    var captured: String?

    init(root: String, scratch: String, events: Int) throws {
        self.root = root
        self.scratch = scratch
        self.events = events
        sluice = root + "/.build/release/sluice"
        guard FileManager.default.isExecutableFile(atPath: sluice) else {
            throw BenchError("\(sluice) is missing: build it with swift build -c release --product sluice")
        }
        source = try Cluster(name: "source", root: root, scratch: scratch)
        target = try Cluster(name: "target", root: root, scratch: scratch)
    }

    /// The source cluster's replication slots.
    func slotNames() throws -> Set<String> {
        let rows = try source.connect().execute("SELECT slot_name FROM pg_replication_slots")
        return Set((0..<rows.rowCount).compactMap { rows.string($0, 0) })
    }

    /// Drops the source's inactive slots not in `kept` (a finished case's slots hold WAL and count
    /// against max_replication_slots).
    func dropSlots(except kept: Set<String>) throws {
        let db = try source.connect()
        for slot in try slotNames().subtracting(kept).sorted() {
            try db.execute("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = '\(slot)' AND NOT active")
        }
    }

    func shutdown() {
        source.stop()
        target.stop()
    }

    /// A Sluice config: the source, `sinks`, and with `topics` a `topics:` section (another backend
    /// than the embedded log, e.g. `{backend: jetstream, …}`).
    func config(_ name: String, source url: String, slot: String, sinks: [String],
                tables: [String] = ["public.bench", "public.done"], dataDirectory: String? = nil,
                topics: String? = nil, publication: String = "bench_pub", sourceExtra: [String] = []) throws -> String {
        let path = scratch + "/\(name).yml"
        var text = """
            data_dir: \(dataDirectory ?? scratch + "/\(name)-data")
            logging: {level: warning}\(topics.map { "\ntopics: \($0)" } ?? "")
            sources:
              - name: bench
                type: postgres
                url: \(url)
                slot: \(slot)
                publication: \(publication)
                tables: [\(tables.joined(separator: ", "))]
                snapshot: never
            """
        for line in sourceExtra { text += "\n    " + line }
        if !sinks.isEmpty { text += "\nsinks:\n" + sinks.joined(separator: "\n") }
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    func postgresSink(_ url: String) -> String { "  - name: replica\n    type: postgres\n    url: \(url)\n    topics: [bench]" }
    func sqliteSink(_ path: String) -> String { "  - name: local\n    type: sqlite\n    path: \(path)\n    topics: [bench]" }

    /// Starts `sluice run`, waits for `done`, stops it; returns seconds and its resource use.
    func runSluice(_ config: String, until done: () throws -> Bool) throws -> (Double, Child.Usage) {
        let log = config.replacingOccurrences(of: ".yml", with: ".log")
        let started = now()
        let daemon = try Child([sluice, "run", "--config", config], output: log)
        do {
            try waitUntil("sluice to finish (log: \(log))") {
                daemon.sample()
                return try done()
            }
        } catch {
            _ = daemon.stop()
            throw error
        }
        let seconds = now() - started
        return (seconds, daemon.stop())
    }

    // MARK: Cases

    /// Source → topic, against pg_recvlogical draining an identical slot to a file.
    ///
    /// The order of the two sides moved the ratio by several hundredths, so each side runs twice, in
    /// the order reference, Sluice, Sluice, reference, from four identical slots; each side's time is
    /// the mean of its two runs.
    func capture() throws {
        let url = try Workload.database("capture", on: source)
        let db = try PGConnection(url: url)
        for slot in ["reference_a", "sluice", "sluice_b", "reference_b"] {
            try db.execute("SELECT pg_create_logical_replication_slot('\(slot)', 'pgoutput')")
        }
        try Workload.load(url: url, total: events, perTransaction: 100)
        let end = try Workload.flushedEnd(url: url)

        func runReference(_ slot: String) throws -> (Double, Child.Usage) { try recvlogical(url: url, slot: slot, end: end) }
        let referenceA = try runReference("reference_a")
        // Streaming only: catching up through the SQL interface is the catch-up case's.
        let oursA = try captureRun("capture", url: url, slot: "sluice", end: end, sourceExtra: ["catch_up_threshold: off"])
        let oursB = try captureRun("capture_b", url: url, slot: "sluice_b", end: end, sourceExtra: ["catch_up_threshold: off"])
        let referenceB = try runReference("reference_b")
        captured = url
        results.append(Result(name: "capture (source → topic)", events: events, seconds: (oursA.0 + oursB.0) / 2,
                               reference: (referenceA.0 + referenceB.0) / 2, referenceName: "pg_recvlogical",
                               peakRSSMB: max(mb(oursA.1), mb(oursB.1)), cpuSeconds: (oursA.1.cpuSeconds + oursB.1.cpuSeconds) / 2,
                               note: String(format: "mean of 2 runs each (Sluice %.2f/%.2f s, pg_recvlogical %.2f/%.2f s); pg_recvlogical: %.0f MB RSS, %.1f s CPU",
                                            oursA.0, oursB.0, referenceA.0, referenceB.0,
                                            Double(max(referenceA.1.peakRSSKilobytes, referenceB.1.peakRSSKilobytes)) / 1024,
                                            (referenceA.1.cpuSeconds + referenceB.1.cpuSeconds) / 2)))
    }

    /// One timed capture side: `sluice run` (source only) from start until slot `slot` confirms `end`.
    /// Its topic is written under `<scratch>/<name>-data` (the embedded log) or to `topics`.
    func captureRun(_ name: String, url: String, slot: String, end: UInt64, topics: String? = nil,
                    tables: [String] = ["public.bench", "public.done"], publication: String = "bench_pub",
                    sourceExtra: [String] = []) throws -> (Double, Child.Usage) {
        let db = try PGConnection(url: url)
        let config = try config(name, source: url, slot: slot, sinks: [], tables: tables, topics: topics, publication: publication,
                                sourceExtra: sourceExtra)
        try Workload.settle(url: url)
        return try runSluice(config) {
            lsn(try db.execute("SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = '\(slot)'").string(0, 0)) >= end
        }
    }

    /// Source → topic → PostgreSQL, against a COPY pipe between the same databases.
    func applyPostgres() throws {
        let url = try Workload.database("apply_pg", on: source)
        try PGConnection(url: url).execute("SELECT pg_create_logical_replication_slot('apply_pg', 'pgoutput')")
        try Workload.load(url: url, total: events, perTransaction: 100)
        let targetURL = try Workload.database("apply_pg", on: target, publication: false)
        let targetDB = try PGConnection(url: targetURL)
        try targetDB.execute("DROP TABLE done; DROP PROCEDURE load")
        let referenceSeconds = try Workload.copyPipe(from: url, to: targetURL)
        try targetDB.execute("DROP TABLE bench")

        let config = try config("apply_pg", source: url, slot: "apply_pg", sinks: [postgresSink(targetURL)])
        let (seconds, usage) = try runSluice(config) {
            (try? targetDB.execute("SELECT count(*) FROM done").string(0, 0)) == "1"
        }
        results.append(Result(name: "apply to PostgreSQL (end to end)", events: events, seconds: seconds,
                               reference: referenceSeconds, referenceName: "COPY pipe", peakRSSMB: mb(usage),
                               cpuSeconds: usage.cpuSeconds))

        // Updates and deletes over the same rows: no COPY equivalent, events/s only.
        let db = try PGConnection(url: url)
        try db.execute("SELECT pg_create_logical_replication_slot('mixed', 'pgoutput')")
        let mixedEvents = try Workload.updatesAndDeletes(url: url, rows: events) + 1
        let mixedConfig = try self.config("mixed", source: url, slot: "mixed", sinks: [postgresSink(targetURL)])
        try targetDB.execute("DELETE FROM sluice_offsets")
        let (mixedSeconds, mixedUsage) = try runSluice(mixedConfig) {
            (try? targetDB.execute("SELECT id FROM done").string(0, 0)) == "2"
        }
        results.append(Result(name: "apply to PostgreSQL, updates+deletes", events: mixedEvents, seconds: mixedSeconds,
                               peakRSSMB: mb(mixedUsage), cpuSeconds: mixedUsage.cpuSeconds))
    }

    /// Topic → target only: a sink replays the topic the capture case wrote (the source has nothing new).
    func applyStage(postgres: Bool) throws {
        guard let url = captured else { throw BenchError("needs the capture case") }
        let name = postgres ? "stage_pg" : "stage_sqlite"
        var done: () throws -> Bool
        var referenceSeconds: Double
        var sink: String
        if postgres {
            let targetURL = try Workload.database(name, on: target, publication: false)
            let targetDB = try PGConnection(url: targetURL)
            try targetDB.execute("DROP TABLE done; DROP PROCEDURE load")
            referenceSeconds = try Workload.copyPipe(from: url, to: targetURL)
            try targetDB.execute("DROP TABLE bench")
            sink = postgresSink(targetURL)
            done = { (try? targetDB.execute("SELECT count(*) FROM done").string(0, 0)) == "1" }
        } else {
            referenceSeconds = try sqliteReference(url)
            let path = scratch + "/\(name).db"
            sink = sqliteSink(path)
            done = {
                guard FileManager.default.fileExists(atPath: path),
                      let db = try? SQLiteDatabase(path: path, readOnly: true) else { return false }
                return (try? db.query("SELECT count(*) FROM done").first?.first ?? nil) == "1"
            }
        }
        let config = try config(name, source: url, slot: "sluice", sinks: [sink], dataDirectory: scratch + "/capture-data")
        let (seconds, usage) = try runSluice(config, until: done)
        results.append(Result(name: postgres ? "apply stage only: topic → PostgreSQL" : "apply stage only: topic → SQLite",
                               events: events, seconds: seconds, reference: referenceSeconds,
                               referenceName: postgres ? "COPY pipe" : "prepared INSERT loop", peakRSSMB: mb(usage),
                               cpuSeconds: usage.cpuSeconds))
    }

    /// The same rows inserted into the same SQLite schema, one prepared statement, one transaction.
    /// The rows are read from the source first; only the inserts are timed.
    func sqliteReference(_ url: String) throws -> Double {
        var rows: [[String?]] = []
        rows.reserveCapacity(events)
        let result = try PGConnection(url: url).execute("SELECT id, account, label, amount::text, note, payload::text, created_at::text FROM bench ORDER BY id")
        for row in 0..<result.rowCount { rows.append((0..<7).map { result.string(row, $0) }) }
        let referencePath = scratch + "/reference-\(UUID().uuidString.prefix(6)).db"
        let reference = try SQLiteDatabase(path: referencePath)
        try reference.execute("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL")
        try reference.execute("CREATE TABLE bench (id INTEGER, account INTEGER, label TEXT, amount TEXT, note TEXT, payload TEXT, created_at TEXT, PRIMARY KEY (id))")
        let started = now()
        try reference.execute("BEGIN")
        let insert = try reference.prepare("INSERT INTO bench VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)")
        for row in rows {
            insert.bind(1, int64: Int64(row[0]!)!)
            insert.bind(2, int64: Int64(row[1]!)!)
            for column in 2..<7 { insert.bind(column + 1, text: row[column]!) }
            try insert.run()
        }
        try reference.execute("COMMIT")
        return now() - started
    }

    /// Source → topic → SQLite, against the same rows inserted with one prepared statement in one transaction.
    func applySQLite() throws {
        let url = try Workload.database("apply_sqlite", on: source)
        try PGConnection(url: url).execute("SELECT pg_create_logical_replication_slot('apply_sqlite', 'pgoutput')")
        try Workload.load(url: url, total: events, perTransaction: 100)

        let referenceSeconds = try sqliteReference(url)

        let path = scratch + "/replica.db"
        let config = try config("apply_sqlite", source: url, slot: "apply_sqlite", sinks: [sqliteSink(path)])
        let (seconds, usage) = try runSluice(config) {
            guard FileManager.default.fileExists(atPath: path),
                  let db = try? SQLiteDatabase(path: path, readOnly: true) else { return false }
            return (try? db.query("SELECT count(*) FROM done").first?.first ?? nil) == "1"
        }
        results.append(Result(name: "apply to SQLite (end to end)", events: events, seconds: seconds,
                               reference: referenceSeconds, referenceName: "prepared INSERT loop", peakRSSMB: mb(usage),
                               cpuSeconds: usage.cpuSeconds))
    }

    /// Peak RSS while one transaction of `rows` rows passes through to both sinks.
    func memory(rows: Int) throws {
        let name = "memory_\(rows)"
        let url = try Workload.database(name, on: source)
        try PGConnection(url: url).execute("SELECT pg_create_logical_replication_slot('\(name)', 'pgoutput')")
        try Workload.load(url: url, total: rows, perTransaction: rows)
        let targetURL = try Workload.database(name, on: target, publication: false)
        let targetDB = try PGConnection(url: targetURL)
        try targetDB.execute("DROP TABLE bench; DROP TABLE done")
        let path = scratch + "/\(name).db"
        let config = try config(name, source: url, slot: name, sinks: [postgresSink(targetURL), sqliteSink(path)])
        let (seconds, usage) = try runSluice(config) {
            guard (try? targetDB.execute("SELECT count(*) FROM done").string(0, 0)) == "1",
                  let db = try? SQLiteDatabase(path: path, readOnly: true) else { return false }
            return (try? db.query("SELECT count(*) FROM done").first?.first ?? nil) == "1"
        }
        results.append(Result(name: "one \(rows)-row transaction → both sinks", events: rows + 1, seconds: seconds,
                               peakRSSMB: mb(usage), cpuSeconds: usage.cpuSeconds, note: "peak RSS is the figure"))
    }

    /// `sluice backfill` of a table into the PostgreSQL target, against a COPY pipe.
    func backfill(rows: Int) throws {
        let url = try Workload.database("backfill", on: source)
        try Workload.load(url: url, total: rows, perTransaction: 10_000)
        let targetURL = try Workload.database("backfill", on: target, publication: false)
        let targetDB = try PGConnection(url: targetURL)
        try targetDB.execute("DROP TABLE done; DROP PROCEDURE load")
        let referenceSeconds = try Workload.copyPipe(from: url, to: targetURL)
        try targetDB.execute("DROP TABLE bench")
        let config = try config("backfill", source: url, slot: "backfill", sinks: [postgresSink(targetURL)])
        let started = now()
        let child = try Child([sluice, "backfill", "--config", config, "--table", "public.bench"], output: scratch + "/backfill.log")
        let usage = child.waitSampling()
        let seconds = now() - started
        guard usage.status == 0 else { throw BenchError("sluice backfill exited \(usage.status); see \(scratch)/backfill.log") }
        results.append(Result(name: "backfill → PostgreSQL", events: rows, seconds: seconds, reference: referenceSeconds,
                               referenceName: "COPY pipe", peakRSSMB: mb(usage), cpuSeconds: usage.cpuSeconds))
    }

    /// pg_recvlogical with pgoutput draining `slot` to a file up to `end`: the capture reference.
    func recvlogical(url: String, slot: String, end: UInt64) throws -> (Double, Child.Usage) {
        try Workload.settle(url: url)
        let started = now()
        let reference = try Child([pgBin("pg_recvlogical"), "-d", url, "--slot", slot, "--start", "--no-loop",
                                   "-o", "proto_version=1", "-o", "publication_names=bench_pub",
                                   "--endpos", formatLSN(end), "-f", scratch + "/\(slot).out"]).waitSampling()
        guard reference.status == 0 else { throw BenchError("pg_recvlogical exited \(reference.status)") }
        return (now() - started, reference)
    }

    func mb(_ usage: Child.Usage) -> Double { Double(usage.peakRSSKilobytes) / 1024 }

    private func pgBin(_ name: String) -> String {
        let bins = (try? FileManager.default.contentsOfDirectory(atPath: "/usr/lib/postgresql")) ?? []
        let version = bins.sorted { (Int($0) ?? 0) < (Int($1) ?? 0) }.last ?? "15"
        return "/usr/lib/postgresql/\(version)/bin/\(name)"
    }
}

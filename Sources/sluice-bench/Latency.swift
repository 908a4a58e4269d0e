import Foundation
import SluiceWire

/// The latency distribution's buckets (ms), for the run's chart.
enum Latency {
    static let bucketBounds: [Double] = [0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000]
    static let bucketLabels: [String] = ["<0.5"] + zip(bucketBounds, bucketBounds.dropFirst()).map { "\(short($0))–\(short($1))" }
        + ["≥\(short(bucketBounds.last!))"]
    static func short(_ value: Double) -> String { value == value.rounded() ? "\(Int(value))" : "\(value)" }
}

extension Bench {
    /// A steady stream of single-row transactions; commit-to-applied latency at the PostgreSQL target.
    ///
    /// Each row carries `clock_timestamp()` from the source session that commits it; a trigger on the
    /// target records `clock_timestamp()` when the sink writes the row, inside the sink's transaction
    /// (it commits right after). Both clocks are this machine's.
    ///
    /// `name` names the databases, slot and files; `topics` another topic backend than the embedded
    /// log; `label` starts the result's name. With `warmUp`, one row (id 0, not counted) is written once
    /// the slot is active and the timed writes start only after it was applied; the note says how long it took.
    /// With `native`, a native subscription on the target applies the rows instead of Sluice (the reference:
    /// what this machine gives PostgreSQL's own logical replication at that rate).
    func latency(seconds: Int, rate: Int, name: String = "latency", topics: String? = nil, label: String = "latency",
                 warmUp: Bool = false, native: Bool = false) throws {
        let url = try Workload.database(name, on: source, publication: false)
        let db = try PGConnection(url: url)
        try db.execute("""
            CREATE TABLE lat (id bigint PRIMARY KEY, created_at timestamptz NOT NULL);
            CREATE PUBLICATION bench_pub FOR TABLE lat, done;
            """)
        try db.execute("SELECT pg_create_logical_replication_slot('\(name)', 'pgoutput')")
        let targetURL = try Workload.database(name, on: target, publication: false)
        let targetDB = try PGConnection(url: targetURL)
        try targetDB.execute("""
            DROP TABLE bench; DROP TABLE done;
            CREATE TABLE lat (id bigint PRIMARY KEY, created_at timestamptz);
            CREATE TABLE lat_applied (id bigint, applied_at timestamptz);
            CREATE FUNCTION note_applied() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN INSERT INTO public.lat_applied VALUES (NEW.id, clock_timestamp()); RETURN NEW; END $$;
            CREATE TRIGGER note_applied AFTER INSERT ON lat FOR EACH ROW EXECUTE FUNCTION note_applied();
            """)
        let daemon: Child?
        if native {
            // An apply worker runs as a replica: only ALWAYS triggers fire there.
            try target.connect().execute("ALTER SYSTEM SET wal_retrieve_retry_interval = '50ms'")
            _ = try target.scalar("SELECT pg_reload_conf()")
            try targetDB.execute("""
                ALTER TABLE lat ENABLE ALWAYS TRIGGER note_applied;
                CREATE TABLE done (id int PRIMARY KEY);
                """)
            try targetDB.execute("""
                CREATE SUBSCRIPTION \(name) CONNECTION 'host=127.0.0.1 port=\(source.port) dbname=\(name) user=postgres'
                PUBLICATION bench_pub WITH (copy_data = false, create_slot = false, slot_name = '\(name)')
                """)
            daemon = nil
        } else {
            let config = try self.config(name, source: url, slot: name, sinks: [postgresSink(targetURL)],
                                         tables: ["public.lat", "public.done"], topics: topics)
            daemon = try Child([sluice, "run", "--config", config], output: scratch + "/\(name).log")
        }
        try waitUntil("the slot to be active") {
            try db.execute("SELECT active FROM pg_replication_slots WHERE slot_name = '\(name)'").string(0, 0) == "t"
        }
        var warmUpNote = ""
        if warmUp {
            let started = now()
            try db.execute("INSERT INTO lat VALUES (0, clock_timestamp())")
            try waitUntil("the first row to be applied") {
                daemon?.sample()
                return (try? targetDB.execute("SELECT count(*) FROM lat_applied WHERE id = 0").string(0, 0)) == "1"
            }
            warmUpNote = String(format: "; a first row, written once the slot was active, was applied %.2f s later (not counted)", now() - started)
        }

        // Writers paced on an absolute schedule so the rate does not drift; one per 500 tx/s (at least
        // two), since each waits for its commit's WAL flush (at one per 1,000 tx/s the writers fell
        // behind: 30 s of writes took 34–48 s). The note gives the rate reached.
        let writers = max(2, rate / 500)
        let writing = now()
        let perWriter = rate / writers
        let total = perWriter * writers * seconds
        let group = DispatchGroup()
        let sourceURL = url
        for writer in 0..<writers {
            group.enter()
            Thread {
                defer { group.leave() }
                guard let connection = try? PGConnection(url: sourceURL) else { return }
                let interval = 1.0 / Double(perWriter)
                let start = now()
                for i in 0..<(perWriter * seconds) {
                    if writer == 0 && i % 100 == 0 { daemon?.sample() }
                    let due = start + Double(i) * interval
                    let wait = due - now()
                    if wait > 0 { usleep(UInt32(wait * 1_000_000)) }
                    let id = writer + i * writers + 1
                    _ = try? connection.execute("INSERT INTO lat VALUES (\(id), clock_timestamp())")
                }
            }.start()
        }
        group.wait()
        let wrote = now() - writing
        try db.execute("INSERT INTO done VALUES (1)")
        try waitUntil("the target to apply everything") {
            daemon?.sample()
            return (try? targetDB.execute("SELECT count(*) FROM done").string(0, 0)) == "1"
        }
        let usage = daemon?.stop()
        if native { try targetDB.execute("DROP SUBSCRIPTION \(name)") }
        let stats = try targetDB.execute("""
            SELECT count(*),
                   percentile_cont(0.5) WITHIN GROUP (ORDER BY ms), percentile_cont(0.99) WITHIN GROUP (ORDER BY ms), max(ms)
            FROM (SELECT extract(epoch FROM a.applied_at - l.created_at) * 1000 AS ms
                  FROM lat l JOIN lat_applied a USING (id) WHERE l.id > 0) t
            """)
        let count = Int(stats.string(0, 0) ?? "0") ?? 0
        let p50 = Double(stats.string(0, 1) ?? "0") ?? 0
        let p99 = Double(stats.string(0, 2) ?? "0") ?? 0
        let max = Double(stats.string(0, 3) ?? "0") ?? 0
        let bounds = Latency.bucketBounds.map { "\($0)" }.joined(separator: ",")
        let histogram = try targetDB.execute("""
            SELECT width_bucket(ms, ARRAY[\(bounds)]::float8[]), count(*)
            FROM (SELECT extract(epoch FROM a.applied_at - l.created_at)::float8 * 1000 AS ms
                  FROM lat l JOIN lat_applied a USING (id) WHERE l.id > 0) t GROUP BY 1
            """)
        var buckets = [Int](repeating: 0, count: Latency.bucketBounds.count + 1)
        for row in 0..<histogram.rowCount {
            if let bucket = Int(histogram.string(row, 0) ?? ""), buckets.indices.contains(bucket) {
                buckets[bucket] = Int(histogram.string(row, 1) ?? "0") ?? 0
            }
        }
        var note = String(format: "commit→applied p50 %.1f ms, p99 %.1f ms, max %.1f ms; written in %.1f s (%.0f tx/s)",
                          p50, p99, max, wrote, Double(total) / wrote) + warmUpNote
        var lost: String?
        if count != total {
            // The sink's transactions commit in order: a row missing while the end marker arrived is lost.
            let missing = try targetDB.execute("""
                SELECT g FROM generate_series(1, \(total)) g WHERE NOT EXISTS (SELECT 1 FROM lat_applied a WHERE a.id = g) ORDER BY g LIMIT 10
                """)
            let ids = (0..<missing.rowCount).compactMap { missing.string($0, 0) }.joined(separator: ", ")
            lost = "\(name): \(count) of \(total) rows applied, \(total - count) lost (ids \(ids)\(total - count > 10 ? ", …" : ""))"
            note = "LOST \(total - count) of \(total) rows (ids \(ids)\(total - count > 10 ? ", …" : "")); of the rest: " + note
        }
        results.append(Result(name: "\(label), \(rate) tx/s for \(seconds) s", events: total, seconds: Double(seconds),
                               peakRSSMB: usage.map { Double($0.peakRSSKilobytes) / 1024 }, cpuSeconds: usage?.cpuSeconds, note: note,
                               latencyP50: p50, latencyP99: p99, latencyBuckets: buckets))
        if let lost { throw BenchError(lost) }
    }
}

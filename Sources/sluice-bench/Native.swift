import Foundation
import SluiceWire

extension Bench {
    /// PostgreSQL → PostgreSQL end to end, Sluice against PostgreSQL's own logical replication: a
    /// subscription on the target (`copy_data = false`) reading a slot created before the workload,
    /// enabled once the workload is written, timed from `ALTER SUBSCRIPTION … ENABLE` until the target
    /// holds the end marker; Sluice is timed from `sluice run` until the same. Four identical slots,
    /// four fresh target databases, in the order native, Sluice, Sluice, native; means of two each.
    ///
    /// With `updates`, the workload is the updates+deletes case's (50% updates, 25% deletes of rows every
    /// target already holds, generated there by the same seeded procedure, not timed).
    func nativeSubscription(updates: Bool) throws {
        let name = updates ? "native_upd" : "native_ins"
        let url = try Workload.database(name, on: source)
        let db = try PGConnection(url: url)
        // The launcher retries a subscription's worker every wal_retrieve_retry_interval (5 s by default).
        try target.connect().execute("ALTER SYSTEM SET wal_retrieve_retry_interval = '50ms'")
        _ = try target.scalar("SELECT pg_reload_conf()")
        if updates { try Workload.load(url: url, total: events, perTransaction: 10_000) }
        let slots = ["native_a", "sluice_a", "sluice_b", "native_b"].map { "\(name)_\($0)" }
        for slot in slots { try db.execute("SELECT pg_create_logical_replication_slot('\(slot)', 'pgoutput')") }
        var changes = events
        if updates {
            changes = try Workload.updatesAndDeletes(url: url, rows: events)
        } else {
            try Workload.load(url: url, total: events, perTransaction: 100)
        }
        let finished = updates ? "SELECT id FROM done" : "SELECT count(*) FROM done"
        let marker = updates ? "2" : "1"

        func targetDatabase(_ side: String) throws -> (String, PGConnection) {
            let targetURL = try Workload.database(side, on: target, publication: false)
            let targetDB = try PGConnection(url: targetURL)
            if updates {
                try targetDB.execute("SET synchronous_commit = off")
                try targetDB.execute("CALL load(1, \(events), 10000)")
                try targetDB.execute("INSERT INTO done VALUES (1)")
                try targetDB.execute("VACUUM ANALYZE bench")
            }
            try targetDB.execute("CHECKPOINT")
            return (targetURL, targetDB)
        }
        func native(_ slot: String) throws -> Double {
            let (_, targetDB) = try targetDatabase(slot)
            try targetDB.execute("""
                CREATE SUBSCRIPTION \(slot) CONNECTION 'host=127.0.0.1 port=\(source.port) dbname=\(name) user=postgres'
                PUBLICATION bench_pub WITH (copy_data = false, create_slot = false, slot_name = '\(slot)', enabled = false)
                """)
            try Workload.settle(url: url)
            let started = now()
            try targetDB.execute("ALTER SUBSCRIPTION \(slot) ENABLE")
            try waitUntil("the subscription \(slot) to apply the workload") {
                (try? targetDB.execute(finished).string(0, 0)) == marker
            }
            let seconds = now() - started
            try targetDB.execute("DROP SUBSCRIPTION \(slot)")
            return seconds
        }
        func sluice(_ slot: String) throws -> (Double, Child.Usage) {
            let (targetURL, targetDB) = try targetDatabase(slot)
            let config = try config(slot, source: url, slot: slot, sinks: [postgresSink(targetURL)])
            try Workload.settle(url: url)
            return try runSluice(config) { (try? targetDB.execute(finished).string(0, 0)) == marker }
        }
        let nativeA = try native(slots[0])
        let oursA = try sluice(slots[1])
        let oursB = try sluice(slots[2])
        let nativeB = try native(slots[3])
        results.append(Result(name: "PostgreSQL → PostgreSQL, \(updates ? "50% updates + 25% deletes" : "inserts"), vs native subscription",
                               events: changes + 1, seconds: (oursA.0 + oursB.0) / 2, reference: (nativeA + nativeB) / 2,
                               referenceName: "native subscription", peakRSSMB: max(mb(oursA.1), mb(oursB.1)),
                               cpuSeconds: (oursA.1.cpuSeconds + oursB.1.cpuSeconds) / 2,
                               note: String(format: "mean of 2 runs each (native %.2f/%.2f s, Sluice %.2f/%.2f s)",
                                            nativeA, nativeB, oursA.0, oursB.0)))
    }
}

extension Workload {
    /// The updates+deletes workload over rows 1…`rows`: per transaction 100 updates and 50 deletes
    /// (50% and 25% of the rows in all), then the end marker (`done` set to 2). Returns the changes.
    static func updatesAndDeletes(url: String, rows: Int) throws -> Int {
        let db = try PGConnection(url: url)
        try db.execute("SET synchronous_commit = off")
        let batches = max(1, rows / 2 / 100)
        for batch in 0..<batches {
            let low = batch * 200 + 1
            try db.execute("""
                BEGIN;
                UPDATE bench SET amount = amount + 1, note = 'updated' WHERE id BETWEEN \(low) AND \(low + 99);
                DELETE FROM bench WHERE id BETWEEN \(low + 100) AND \(low + 149);
                COMMIT
                """)
        }
        try db.execute("UPDATE done SET id = 2")
        try settle(url: url)
        return batches * 150
    }
}

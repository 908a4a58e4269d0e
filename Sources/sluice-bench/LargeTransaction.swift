import Foundation
import SluiceWire

extension Bench {
    /// One transaction of `rows` rows into the PostgreSQL target, timed from its COMMIT returning at the
    /// source to the target holding it: with the source streaming it while it runs (pgoutput protocol 2,
    /// the default) against `streaming: false` (the walsender spills it past `logical_decoding_work_mem`,
    /// default 64MB, and sends it all after the commit). Same source database, same rows, one side after
    /// the other (spilling first), each from its own slot created just before, into its own target
    /// database; the slot's pg_stat_replication_slots counters are read once the target holds the rows.
    func largeTransaction(rows: Int) throws {
        let url = try Workload.database("large_tx", on: source)
        let db = try PGConnection(url: url)

        struct Side {
            var insertSeconds: Double
            var seconds: Double
            /// Commit → the slot confirms it: the topic holds the transaction durably.
            var inTopicSeconds: Double
            var usage: Child.Usage
            var spillTransactions: Int
            var spillBytes: Int
            var streamTransactions: Int
            var streamBytes: Int
        }
        func side(_ name: String, streaming: Bool) throws -> Side {
            try db.execute("TRUNCATE bench, done")
            try db.execute("SELECT pg_create_logical_replication_slot('\(name)', 'pgoutput')")
            let targetURL = try Workload.database(name, on: target, publication: false)
            let targetDB = try PGConnection(url: targetURL)
            try targetDB.execute("DROP TABLE bench; DROP TABLE done; DROP PROCEDURE load")
            let path = try config(name, source: url, slot: name, sinks: [postgresSink(targetURL)])
            if !streaming {
                let text = try String(contentsOfFile: path, encoding: .utf8)
                try text.replacingOccurrences(of: "    snapshot: never", with: "    snapshot: never\n    streaming: false")
                    .write(toFile: path, atomically: true, encoding: .utf8)
            }
            try Workload.settle(url: url)
            let daemon = try Child([sluice, "run", "--config", path], output: scratch + "/\(name).log")
            var usage: Child.Usage?
            defer { if usage == nil { _ = daemon.stop() } }
            try waitUntil(timeout: 60, "slot \(name) to be active (log: \(scratch)/\(name).log)") {
                try db.execute("SELECT active::text FROM pg_replication_slots WHERE slot_name = '\(name)'").string(0, 0) == "true"
            }
            let writer = try PGConnection(url: url)
            let began = now()
            try writer.execute("BEGIN")
            try writer.execute("""
                INSERT INTO bench
                  SELECT g, g % 1000, 'label ' || g, (g % 100000) * 1.25, md5(g::text),
                         jsonb_build_object('k', g, 'tag', 'v' || (g % 7)), timestamptz '2026-01-01 00:00:00+00' + g * interval '1 second'
                  FROM generate_series(1, \(rows)) g
                """)
            try writer.execute("INSERT INTO done VALUES (1)")
            let commitLSN = lsn(try writer.execute("SELECT pg_current_wal_insert_lsn()::text").string(0, 0))
            try writer.execute("COMMIT")
            let committed = now()
            var inTopic: Double?
            try waitUntil(timeout: 1200, "the target to hold the transaction (log: \(scratch)/\(name).log)") {
                daemon.sample()
                let confirmed = "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = '\(name)'"
                if inTopic == nil, lsn(try db.execute(confirmed).string(0, 0)) > commitLSN { inTopic = now() - committed }
                return (try? targetDB.execute("SELECT count(*) FROM done").string(0, 0)) == "1"
            }
            let seconds = now() - committed
            let counters = try db.execute("""
                SELECT spill_txns, spill_bytes, stream_txns, stream_bytes FROM pg_stat_replication_slots WHERE slot_name = '\(name)'
                """)
            usage = daemon.stop()
            try db.execute("SELECT pg_drop_replication_slot('\(name)')")
            let count = { (column: Int) in Int(counters.string(0, column) ?? "") ?? -1 }
            return Side(insertSeconds: committed - began, seconds: seconds, inTopicSeconds: inTopic ?? seconds, usage: usage!, spillTransactions: count(0),
                        spillBytes: count(1), streamTransactions: count(2), streamBytes: count(3))
        }

        let spilled = try side("large_spill", streaming: false)
        let streamed = try side("large_stream", streaming: true)
        let megabytes = { (bytes: Int) in Double(bytes) / 1_048_576 }
        results.append(Result(
            name: "large transaction (\(rows) rows), commit → applied at PostgreSQL, streamed", events: rows + 1,
            seconds: streamed.seconds, reference: spilled.seconds, referenceName: "streaming: false (walsender spills)",
            peakRSSMB: mb(streamed.usage), cpuSeconds: streamed.usage.cpuSeconds,
            note: String(format: """
                streamed: in the topic %.1f s after commit, %.1f MB streamed in %d txn, %.1f MB spilled in %d, \
                insert+commit %.1f s; spilling: in the topic %.1f s after commit, %.1f MB spilled in %d txn, %.1f MB \
                streamed, insert+commit %.1f s, %.1f MB RSS, %.1f s CPU
                """, streamed.inTopicSeconds, megabytes(streamed.streamBytes), streamed.streamTransactions,
                megabytes(streamed.spillBytes), streamed.spillTransactions, streamed.insertSeconds, spilled.inTopicSeconds,
                megabytes(spilled.spillBytes), spilled.spillTransactions, megabytes(spilled.streamBytes), spilled.insertSeconds,
                mb(spilled.usage), spilled.usage.cpuSeconds)))
    }
}

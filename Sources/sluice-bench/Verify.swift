import Foundation
import SluiceWire

extension Bench {
    /// `sluice verify` of the workload table (equal targets, the daemon running, the source quiet but
    /// for heartbeats) at a PostgreSQL and at an SQLite sink, against reading the same table out of
    /// both databases in this run: `COPY bench TO STDOUT` from the source plus from the PostgreSQL
    /// target, or plus `sqlite3` printing every row of the SQLite target.
    func verify(rows: Int) throws {
        let url = try Workload.database("verify", on: source)
        try PGConnection(url: url).execute("SELECT pg_create_logical_replication_slot('verify', 'pgoutput')")
        try Workload.load(url: url, total: rows, perTransaction: 10_000)
        let targetURL = try Workload.database("verify", on: target, publication: false)
        let targetDB = try PGConnection(url: targetURL)
        try targetDB.execute("DROP TABLE bench; DROP TABLE done; DROP PROCEDURE load")
        let path = scratch + "/verify.db"
        let config = try config("verify", source: url, slot: "verify", sinks: [postgresSink(targetURL), sqliteSink(path)])
        let daemon = try Child([sluice, "run", "--config", config], output: scratch + "/verify-run.log")
        defer { _ = daemon.stop() }
        try waitUntil("both sinks to apply the workload (log: \(scratch)/verify-run.log)") {
            guard (try? targetDB.execute("SELECT count(*) FROM done").string(0, 0)) == "1",
                  let db = try? SQLiteDatabase(path: path, readOnly: true) else { return false }
            return (try? db.query("SELECT count(*) FROM done").first?.first ?? nil) == "1"
        }
        try Workload.settle(url: url)
        try Workload.settle(url: targetURL)

        func timed(_ command: String) throws -> Double {
            let started = now()
            try run(["/bin/sh", "-c", command])
            return now() - started
        }
        let copySource = try timed("psql -q '\(url)' -c 'COPY bench TO STDOUT' > /dev/null")
        let copyTarget = try timed("psql -q '\(targetURL)' -c 'COPY bench TO STDOUT' > /dev/null")
        let readSQLite = try timed("sqlite3 '\(path)' 'SELECT * FROM bench' > /dev/null")

        for (sink, name, reference, referenceName, sides) in [
            ("replica", "verify → PostgreSQL sink (equal)", copySource + copyTarget, "COPY TO STDOUT, both", (copySource, copyTarget)),
            ("local", "verify → SQLite sink (equal)", copySource + readSQLite, "COPY + sqlite3 SELECT *", (copySource, readSQLite)),
        ] {
            let log = scratch + "/verify-\(sink).log"
            let started = now()
            let usage = try Child([sluice, "verify", "--config", config, "--sink", sink, "--table", "public.bench", "--json"],
                                  output: log).waitSampling()
            let seconds = now() - started
            guard usage.status == 0 else { throw BenchError("sluice verify --sink \(sink) exited \(usage.status); see \(log)") }
            results.append(Result(name: name, events: rows, seconds: seconds, reference: reference, referenceName: referenceName,
                                  peakRSSMB: mb(usage), cpuSeconds: usage.cpuSeconds,
                                  note: String(format: "reference: source %.2f s + target %.2f s", sides.0, sides.1)))
        }
    }
}

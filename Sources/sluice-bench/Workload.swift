import Foundation
import SluiceWire

/// The benchmark's tables and seeded, deterministic workloads.
enum Workload {
    /// bigint key, bigint, text, numeric, text, jsonb, timestamptz; plus a `done` table whose single row
    /// marks the end of a workload.
    /// Autovacuum is off on the source table: it would wake up after the load and compete with
    /// whichever side happens to run next.
    static let schema = """
        CREATE TABLE bench (id bigint PRIMARY KEY, account bigint, label text, amount numeric(12,2), note text,
                            payload jsonb, created_at timestamptz) WITH (autovacuum_enabled = false);
        CREATE TABLE done (id int PRIMARY KEY);
        CREATE PROCEDURE load(first bigint, total bigint, per_transaction int) LANGUAGE plpgsql AS $$
        BEGIN
          FOR start IN 0..(total - 1) / per_transaction LOOP
            INSERT INTO bench
              SELECT g, g % 1000, 'label ' || g, (g % 100000) * 1.25, md5(g::text),
                     jsonb_build_object('k', g, 'tag', 'v' || (g % 7)), timestamptz '2026-01-01 00:00:00+00' + g * interval '1 second'
              FROM generate_series(first + start * per_transaction,
                                   least(first + total - 1, first + (start + 1) * per_transaction - 1)) g;
            COMMIT;
          END LOOP;
        END $$;
        """

    static let targetTable = """
        CREATE TABLE bench (id bigint PRIMARY KEY, account bigint, label text, amount numeric(12,2), note text,
                            payload jsonb, created_at timestamptz)
        """

    /// Creates a database on `cluster` with the schema and a publication `bench_pub`; returns its URL.
    static func database(_ name: String, on cluster: Cluster, publication: Bool = true) throws -> String {
        try cluster.connect().execute("CREATE DATABASE \(name)")
        let url = "postgresql://postgres@127.0.0.1:\(cluster.port)/\(name)"
        let db = try PGConnection(url: url)
        try db.execute(schema)
        if publication { try db.execute("CREATE PUBLICATION bench_pub FOR TABLE bench, done") }
        return url
    }

    /// Inserts `total` rows from `first`, `perTransaction` to a transaction, then the done marker.
    static func load(url: String, first: Int = 1, total: Int, perTransaction: Int) throws {
        let db = try PGConnection(url: url)
        try db.execute("SET synchronous_commit = off")
        try db.execute("CALL load(\(first), \(total), \(perTransaction))")
        try db.execute("INSERT INTO done VALUES (1)")
        try settle(url: url)
    }

    /// The end of the WAL once everything written so far is flushed.
    static func flushedEnd(url: String) throws -> UInt64 {
        let db = try PGConnection(url: url)
        let end = lsn(try db.execute("SELECT pg_current_wal_insert_lsn()::text").string(0, 0))
        try waitUntil("WAL flush") { lsn(try db.execute("SELECT pg_current_wal_flush_lsn()::text").string(0, 0)) >= end }
        return end
    }

    /// Writes out the load's dirty pages now, so no checkpoint lands in the middle of a timed side.
    static func settle(url: String) throws {
        try PGConnection(url: url).execute("CHECKPOINT")
    }

    /// `COPY (SELECT …) TO STDOUT | COPY … FROM STDIN` between two databases, as psql does it.
    static func copyPipe(from source: String, to target: String, table: String = "bench") throws -> Double {
        let started = now()
        try run(["/bin/sh", "-c", "psql -q '\(source)' -c 'COPY (SELECT * FROM \(table)) TO STDOUT' | psql -q '\(target)' -c 'COPY \(table) FROM STDIN'"])
        return now() - started
    }
}

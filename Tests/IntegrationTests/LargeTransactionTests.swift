import Foundation
import SluiceWire
import XCTest

/// One 300,000-row INSERT transaction streams into both targets complete, and the daemon's memory stays
/// bounded (its peak RSS is printed for the CI log).
final class LargeTransactionTests: SinkTestCase {
    override var fixtureName: String { "large" }

    static let rows = 300_000

    func testThreeHundredThousandRowTransactionReachesBothTargets() throws {
        try source.query("""
            CREATE TABLE bulk (id int PRIMARY KEY, grp int NOT NULL, payload text NOT NULL, created timestamptz NOT NULL);
            CREATE TABLE side (id int PRIMARY KEY, note text);
            INSERT INTO side VALUES (1, 'before');
            """)
        try writeConfig(tables: ["public.bulk", "public.side"])
        let daemon = try startDaemon()
        try waitForSlotActive()

        // Small transactions commit on another connection while the big one runs.
        let stop = SinkTestFlag()
        let stats = SinkTestStats()
        let url = source.url
        let small = SinkTestWorker("small-writer") {
            guard let other = try? PGConnection(url: url) else { return stats.note("cannot connect") }
            var id = 100
            while !stop.isSet {
                id += 1
                do {
                    try other.execute("INSERT INTO side VALUES ($1, 'concurrent')", [String(id)])
                    stats.count("small")
                } catch {
                    stats.note("\(error)")
                }
                usleep(10_000)
            }
        }
        defer {
            stop.set()
            small.join()
        }

        let db = try source.connect()
        let started = Date()
        // ~100 bytes of text per row; one transaction.
        let end = try commitMarked("""
            INSERT INTO bulk SELECT i, i % 97, md5(i::text) || md5((i * 7)::text) || md5((i * 13)::text) || lpad(i::text, 4, '0'),
                '2024-01-01 00:00:00+00'::timestamptz + i * interval '1 second'
            FROM generate_series(1, \(Self.rows)) i;
            UPDATE side SET note = 'with the bulk insert' WHERE id = 1;
            """, on: db)
        print("source committed \(Self.rows) rows in \(String(format: "%.1f", Date().timeIntervalSince(started))) s")
        stop.set()
        small.join()
        XCTAssertGreaterThan(stats["small"], 10, "small transactions ran alongside: \(stats.notes)")
        // A small transaction after it must come through too.
        let after = try commitMarked("INSERT INTO side VALUES (2, 'after')", on: db)
        XCTAssertGreaterThan(after, end)
        try waitForTargets(lsn: after, timeout: 150)
        print("both targets applied it \(String(format: "%.1f", Date().timeIntervalSince(started))) s after the insert began")

        let aggregate = "SELECT count(*)::text, sum(id)::text, sum(grp)::text, md5(string_agg(id || ',' || grp || ',' || payload || ',' || created, '|' ORDER BY id)) FROM bulk"
        let expected = try XCTUnwrap(source.query(aggregate).first)
        XCTAssertEqual(expected[0], String(Self.rows))
        XCTAssertEqual(try target.query(aggregate).first, expected, "PostgreSQL target: count, sums and checksum" + logTail)

        // SQLite: the same count and sums, and every row's text (concatenated in id order) equal to the source's.
        let lite = try SQLiteDatabase(path: sqlitePath)
        let liteAggregate = try XCTUnwrap(lite.query("SELECT count(*), sum(id), sum(grp) FROM bulk").first)
        XCTAssertEqual(liteAggregate, Array(expected.prefix(3)), "SQLite target: count and sums" + logTail)
        let sourceText = try source.scalar("SELECT string_agg(id || ',' || grp || ',' || payload || ',' || created, '|' ORDER BY id) FROM bulk")
        let liteText = try lite.query("""
            SELECT group_concat(line, '|') FROM (SELECT id || ',' || grp || ',' || payload || ',' || created AS line FROM bulk ORDER BY id)
            """).first?[0]
        XCTAssertEqual(liteText?.count, sourceText?.count, "SQLite target: the rows' text length" + logTail)
        XCTAssertTrue(liteText == sourceText, "SQLite target: every row's values equal the source's" + logTail)
        try assertTargetsEqualSource("public.side")

        let peak = daemon.peakRSSKilobytes
        print("peak RSS of sluice run after a \(Self.rows)-row transaction: \(peak.map { "\($0 / 1024) MB (\($0) kB)" } ?? "unknown")")
        XCTAssertNotNil(peak)
        XCTAssertLessThan(peak ?? 0, 1_024 * 1_024, "peak RSS stays under 1 GB")
        XCTAssertEqual(daemon.terminate(), 0, "clean exit on SIGTERM" + logTail)
    }
}

import Foundation
import SluiceWire
import XCTest

/// Long runs of inserts reach the PostgreSQL target through COPY and a staging table; short runs and
/// every other change go through prepared statements. Interleaving them inside one transaction, on keyed
/// and keyless tables, must keep the targets exact, including values COPY's text format escapes.
final class BulkApplyTests: SinkTestCase {
    override var fixtureName: String { "bulk" }

    func testInsertRunsInterleavedWithOtherChangesStayExact() throws {
        try source.query("""
            CREATE TABLE items (id int PRIMARY KEY, label text, amount numeric(10,2), tags text[]);
            CREATE TABLE log (k int, v text);
            ALTER TABLE log REPLICA IDENTITY FULL;
            INSERT INTO items SELECT i, 'before ' || i, i, '{a,b}' FROM generate_series(1, 300) i;
            """)
        try writeConfig(tables: ["public.items", "public.log"])
        let daemon = try startDaemon()
        try waitForSlotActive()
        let db = try source.connect()
        // One transaction: a long run (COPY), an update in the middle of the table, another long run,
        // a short run (prepared statements), a delete, a keyless run with duplicates and awkward text.
        try db.execute("""
            BEGIN;
            INSERT INTO items SELECT i, E'tab\\there\\nnew line \\\\ back', i * 2, '{"x y",NULL}' FROM generate_series(301, 1300) i;
            UPDATE items SET label = 'updated' WHERE id IN (5, 400, 1299);
            INSERT INTO items SELECT i, 'second run ' || i, NULL, NULL FROM generate_series(1301, 2000) i;
            INSERT INTO items VALUES (3000, 'short', 1, '{}'), (3001, '\\N literal', 2, '{c}');
            DELETE FROM items WHERE id BETWEEN 1000 AND 1010;
            INSERT INTO log SELECT i % 3, 'dup ' || (i % 3) FROM generate_series(1, 900) i;
            UPDATE log SET v = 'one of many' WHERE ctid = (SELECT ctid FROM log WHERE k = 1 LIMIT 1);
            COMMIT;
            """)
        // Reads of the snapshot were bulk-loaded too; upserting an existing key through the staging
        // table must update, not fail.
        let end = try commitMarked("INSERT INTO items SELECT i, 'late ' || i, 0, NULL FROM generate_series(4000, 4499) i", on: db)
        try waitForTargets(lsn: end)
        try assertTargetsEqualSource("public.items")
        try assertTargetsEqualSource("public.log")
        XCTAssertEqual(try target.scalar("SELECT label FROM public.items WHERE id = 301"), "tab\there\nnew line \\ back")
        XCTAssertEqual(try target.scalar("SELECT label FROM public.items WHERE id = 3001"), "\\N literal")
        XCTAssertEqual(try target.scalar("SELECT count(*) FROM public.log WHERE k = 1"), "300")
        XCTAssertEqual(daemon.terminate(), 0, logTail)
    }

    /// A long run whose keys partly exist in the target already (a target that was not empty): the
    /// direct COPY meets a unique violation, rolls back to its savepoint and replays through the merge.
    func testInsertRunIntoATargetThatHasSomeOfTheKeys() throws {
        try source.query("CREATE TABLE pre (id int PRIMARY KEY, v text)")
        try target.query("""
            CREATE TABLE public.pre (id int PRIMARY KEY, v text);
            INSERT INTO public.pre SELECT i, 'stale ' || i FROM generate_series(1, 100) i;
            """)
        try writeConfig(tables: ["public.pre"])
        let daemon = try startDaemon()
        try waitForSlotActive()
        let db = try source.connect()
        let end = try commitMarked("INSERT INTO pre SELECT i, 'fresh ' || i FROM generate_series(1, 5000) i", on: db)
        try waitForTargets(lsn: end)
        try assertTargetsEqualSource("public.pre")
        XCTAssertEqual(try target.scalar("SELECT count(*) FROM public.pre WHERE v LIKE 'stale%'"), "0")
        // Later runs into the same table go through the staging table directly, and stay exact.
        let next = try commitMarked("INSERT INTO pre SELECT i, 'more ' || i FROM generate_series(5001, 6000) i", on: db)
        try waitForTargets(lsn: next)
        try assertTargetsEqualSource("public.pre")
        XCTAssertEqual(daemon.terminate(), 0, logTail)
    }
}

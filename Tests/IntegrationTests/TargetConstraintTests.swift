import Foundation
import SluiceWire
import XCTest

/// The PostgreSQL target keeps the source's enum types and NOT NULL: enums (quoted names, another
/// schema, arrays of them) are created at the target and follow `ALTER TYPE … ADD VALUE` mid-stream;
/// NOT NULL holds on created tables (keyed and keyless), on a column added with NOT NULL DEFAULT, across
/// unchanged TOASTed values; a row older than the catalog's NOT NULL (decoded after `SET NOT NULL`) is
/// still applied; the warning for a type the target lacks (a domain) is given once, not on each restart.
final class TargetConstraintTests: SinkTestCase {
    override var fixtureName: String { "constraints" }

    func testEnumsAndNotNullReachThePostgresTarget() throws {
        try source.query("""
            CREATE TYPE "Mood Type" AS ENUM ('sad', 'ok');
            CREATE SCHEMA app;
            CREATE TYPE app.size AS ENUM ('s', 'm');
            CREATE DOMAIN posint AS int CHECK (VALUE > 0);
            CREATE TABLE people (id int PRIMARY KEY, name text NOT NULL, mood "Mood Type" NOT NULL, sizes app.size[],
                                 rank posint, note text, big text NOT NULL);
            ALTER TABLE people ALTER COLUMN big SET STORAGE EXTERNAL;
            INSERT INTO people SELECT i, 'p' || i, 'ok', '{s,m}', i, NULL,
                (SELECT string_agg(md5(j::text || i), '') FROM generate_series(1, 100) j) FROM generate_series(1, 20) i;
            CREATE TABLE events (kind "Mood Type" NOT NULL, payload text NOT NULL, n int);
            ALTER TABLE events REPLICA IDENTITY FULL;
            INSERT INTO events SELECT 'sad', 'dup', 1 FROM generate_series(1, 3);
            """)
        try writeConfig(tables: nil, sourceExtra: ["tables: all"])  // tables created later are captured
        var daemon = try startDaemon()
        try waitForSlotActive()
        let db = try source.connect()
        var end = try commitMarked("UPDATE people SET note = 'first' WHERE id = 1", on: db)
        try waitForTargets(lsn: end)

        // New labels mid-stream (one before the first), used at once, in a plain column and in an array.
        try db.execute(#"ALTER TYPE "Mood Type" ADD VALUE 'happy'"#)
        try db.execute(#"ALTER TYPE "Mood Type" ADD VALUE 'meh' BEFORE 'sad'"#)
        try db.execute("ALTER TYPE app.size ADD VALUE 'x l'")
        try db.execute("""
            INSERT INTO people VALUES (21, 'new', 'happy', '{s,"x l"}', 3, NULL, 'small');
            UPDATE people SET mood = 'meh' WHERE id = 2;
            INSERT INTO events VALUES ('happy', 'dup', 2), ('happy', 'dup', 2);
            UPDATE events SET n = 5 WHERE ctid = (SELECT ctid FROM events WHERE kind = 'sad' LIMIT 1);
            """)
        // A column added NOT NULL with a default; TOASTed values left unchanged by updates and a key change.
        try db.execute("ALTER TABLE people ADD COLUMN score int NOT NULL DEFAULT 0")
        try db.execute("UPDATE people SET note = 'touched', score = 2 WHERE id BETWEEN 3 AND 6")
        end = try commitMarked("UPDATE people SET id = 1000 + id WHERE id = 7", on: db)
        try waitForTargets(lsn: end)

        // Stopped: a table whose rows precede a SET NOT NULL the catalog shows when they are decoded.
        XCTAssertEqual(daemon.terminate(), 0, logTail)
        try db.execute("""
            CREATE TABLE late (id int PRIMARY KEY, x text);
            INSERT INTO late VALUES (1, NULL), (2, 'b');
            UPDATE late SET x = 'filled' WHERE x IS NULL;
            ALTER TABLE late ALTER COLUMN x SET NOT NULL;
            """)
        daemon = try startDaemon()
        end = try commitMarked("INSERT INTO late VALUES (3, 'c'); INSERT INTO events VALUES ('ok', 'last', NULL)", on: db)
        try waitForTargets(lsn: end)

        for table in ["public.people", "public.events", "public.late"] { try assertTargetsEqualSource(table) }
        let typeQuery = """
            SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull::text FROM pg_attribute a
            WHERE a.attrelid = $1::regclass AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attname
            """
        for table in ["public.people", "public.events"] {
            var wanted = try source.query(typeQuery, [table]).map { $0.map { $0 ?? "" } }
            // The domain is not carried: text, nullable as the source's column.
            wanted = wanted.map { $0[1] == "posint" ? [$0[0], "text", $0[2]] : $0 }
            XCTAssertEqual(try target.query(typeQuery, [table]).map { $0.map { $0 ?? "" } }, wanted, "\(table)" + logTail)
        }
        // late.x: rows older than its SET NOT NULL reached a target created after it, so it stays nullable there.
        XCTAssertEqual(try target.scalar("SELECT attnotnull::text FROM pg_attribute WHERE attrelid = 'public.late'::regclass AND attname = 'x'"), "false")
        let labels = #"SELECT array_agg(enumlabel ORDER BY enumsortorder)::text FROM pg_enum WHERE enumtypid = $1::regtype"#
        for type in [#""Mood Type""#, "app.size"] {
            XCTAssertEqual(try target.scalar(labels, [type]), try source.scalar(labels, [type]), type)
        }
        XCTAssertEqual(try target.scalar("SELECT count(*) FROM public.people WHERE big IS NULL OR length(big) <> 3200 AND id <> 21"), "0")
        XCTAssertEqual(daemon.terminate(), 0, logTail)
        let warnings = daemon.log.components(separatedBy: "type missing in target").count - 1
        XCTAssertEqual(warnings, 1, "the domain column's warning, once across two runs" + logTail)
    }
}

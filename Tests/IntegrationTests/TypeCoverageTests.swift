import Foundation
import SluiceWire
import XCTest

/// Every common column type — with NULLs, unicode, empty values, extremes and special floats — survives
/// the trip into both targets, from the initial snapshot and from the stream; a >1 MB TOASTed value
/// that pgoutput later sends as "unchanged" is kept by both targets.
final class TypeCoverageTests: SinkTestCase {
    override var fixtureName: String { "types" }

    static let columns = """
        id int PRIMARY KEY,
        i2 int2, i4 int4, i8 int8, num numeric(12,3), f4 float4, f8 float8,
        t text, vc varchar(20), ch char(5), b bool, by bytea, u uuid, j json, jb jsonb,
        d date, tm time, ts timestamp, tstz timestamptz, iv interval, ta text[], ia int[], m mood,
        big text
        """

    /// Column name → how the SQLite sink stores it.
    enum Storage { case integer, real, boolean, blob, text }
    static let storage: [String: Storage] = [
        "id": .integer, "i2": .integer, "i4": .integer, "i8": .integer, "f4": .real, "f8": .real, "b": .boolean, "by": .blob,
    ]

    func testEveryTypeReachesBothTargetsValueByValue() throws {
        // A row of each kind before the daemon starts (the initial snapshot carries them).
        try source.query("""
            CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy 😀');
            CREATE TABLE types (\(Self.columns));
            ALTER TABLE types ALTER COLUMN big SET STORAGE EXTERNAL;  -- out of line, never compressed
            INSERT INTO types (id) VALUES (1);  -- all NULL
            INSERT INTO types VALUES (2, 32767, 2147483647, 9223372036854775807, 123456789.123, 1.5, 3.141592653589793,
                'héllo wörld 😀 日本語', 'ñandú açaí', 'ab', true, '\\x00ff10', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
                '{"a": [1, 2, {"b": null}],  "é": "😀"}', '{"z": 1, "a": [true, null, "日本"]}',
                '2024-02-29', '23:59:59.999999', '2024-01-02 03:04:05.678', '2024-01-02 03:04:05+05:30',
                '1 year 2 mons 3 days 04:05:06.7', '{a,"b c",NULL,"😀","with \\"quote\\""}', '{1,NULL,-3}', 'happy 😀', 'small');
            INSERT INTO types VALUES (3, -32768, -2147483648, -9223372036854775808, -999999999.999, 'Infinity', '-Infinity',
                '', '', '', false, '\\x', '00000000-0000-0000-0000-000000000000', '{}', '[]',
                'infinity', '00:00:00', '-infinity', 'infinity', '-1 days +00:00:01', '{}', '{}', 'sad', '');
            INSERT INTO types VALUES (4, 0, 0, 0, 'NaN', 1.17549435e-38, 2.2250738585072014e-308,
                E'tab\\there\\nnewline ''quote'' "dq" \\\\ backslash', 'Zoë Ünïcödé — ∑', 'é😀', NULL, '\\xdeadbeef',
                NULL, '"just a string"', '{"nested": {"deep": [1.5e10, -0, 3.0]}}',
                '0001-01-01', '12:00', '1999-12-31 23:59:59.999999', '1970-01-01 00:00:00+00',
                '00:00:00', '{"",NULL}', '{{1,2},{3,4}}', 'ok', 'ü');
            -- A >1 MB value that does not compress: stored out of line (TOAST).
            INSERT INTO types (id, i4, t, big)
                SELECT 100, 1, 'toasted', string_agg(md5(i::text || 'snap'), '') FROM generate_series(1, 40000) i;
            """)
        try writeConfig(tables: ["public.types"])
        let daemon = try startDaemon()
        try waitForSlotActive()

        // Streamed changes: inserts, updates (to and from NULL), a delete, and the TOAST cases.
        let db = try source.connect()
        try db.execute("""
            INSERT INTO types VALUES (5, 1, 2, 3, 0.001, -0.5, 1e300,
                '한국어 العربية 🚀👨‍👩‍👧', 'x', 'abcde', true, '\\x0102', 'ffffffff-ffff-ffff-ffff-ffffffffffff',
                '[1, "two", 3.0]', '{"k": "ü", "n": null}', '2000-01-01', '01:02:03.5', '2000-01-01 00:00:00',
                '2024-06-30 23:59:59.5-07', '-3 years -2 mons +1 day -00:00:00.000001', '{"😀","a,b","{x}"}', '{-2147483648,2147483647}',
                'happy 😀', 'streamed')
            """)
        try db.execute("INSERT INTO types (id, t, f4, f8) VALUES (6, 'mostly null', '-Infinity', 'Infinity')")
        try db.execute("""
            UPDATE types SET i2 = 7, num = 0.5, f8 = -0.0, t = 'was null', b = false, by = '\\x00', u = gen_random_uuid(),
                j = '{"now": "set"}', jb = 'null', d = '2020-02-02', tstz = '2020-02-02 02:02:02.020202+01', iv = '1 mon',
                ta = '{only}', ia = '{0}', m = 'ok' WHERE id = 1
            """)
        try db.execute("UPDATE types SET t = NULL, vc = NULL, j = NULL, m = NULL, f4 = NULL, ia = '{}' WHERE id = 2")
        try db.execute("DELETE FROM types WHERE id = 3")
        try db.execute("INSERT INTO types (id, i4, t, big) SELECT 101, 1, 'streamed toast', string_agg(md5(i::text || 'stream'), '') FROM generate_series(1, 40000) i")
        // Updates that leave the big values alone: pgoutput sends them as unchanged TOAST.
        try db.execute("UPDATE types SET i4 = 42 WHERE id = 100")
        let end = try commitMarked("UPDATE types SET i4 = 43, t = 'streamed toast, updated' WHERE id = 101", on: db)
        try waitForTargets(lsn: end)

        let bigLength = try source.scalar("SELECT min(length(big)) FROM types WHERE id IN (100, 101)")
        XCTAssertEqual(bigLength, String(40000 * 32), "the TOASTed values are over 1 MB")
        XCTAssertEqual(try source.scalar("SELECT count(*) FROM types WHERE id IN (100, 101) AND pg_column_size(big) > 1000000"), "2",
                       "the big values are stored uncompressed, out of line")

        let columns = try sourceColumns("public.types").map(\.name)
        try comparePostgresTarget(columns: columns)
        try compareSQLiteTarget(columns: columns)
        XCTAssertEqual(daemon.terminate(), 0, "clean exit on SIGTERM" + logTail)
    }

    /// The same types in a keyless table under REPLICA IDENTITY FULL, where updates and deletes find
    /// "one row equal to the old one" by every column — json without an equality operator, arrays,
    /// NULLs, infinities — among identical duplicates.
    func testEveryTypeInAKeylessTable() throws {
        let columns = Self.columns.replacingOccurrences(of: "id int PRIMARY KEY", with: "id int")
        try source.query("""
            CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy 😀');
            CREATE TABLE loose (\(columns));
            ALTER TABLE loose REPLICA IDENTITY FULL;
            INSERT INTO loose (id) VALUES (1), (1);
            INSERT INTO loose VALUES (2, 1, 2, 3, 1.5, 1.5, 'Infinity', 'é 😀', 'v', 'c', true, '\\x00ff', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
                '{"a":  1}', '{"b": [1, null]}', '2024-02-29', '10:00', '2024-01-02 03:04:05', '2024-01-02 03:04:05+02',
                '1 day', '{x,NULL}', '{1,2}', 'ok', 'text');
            INSERT INTO loose SELECT * FROM loose WHERE id = 2;
            INSERT INTO loose SELECT * FROM loose WHERE id = 2 LIMIT 1;  -- three identical rows
            """)
        try writeConfig(tables: ["public.loose"])
        let daemon = try startDaemon()
        try waitForSlotActive()
        let db = try source.connect()
        try db.execute("INSERT INTO loose SELECT 3, i2, i4, i8, num, f4, '-Infinity', t, vc, ch, false, by, u, j, jb, d, tm, ts, tstz, iv, ta, ia, 'sad', big FROM loose WHERE id = 2 LIMIT 1")
        try db.execute("INSERT INTO loose SELECT * FROM loose WHERE id = 3")
        // One of several identical rows at a time: by every column, NULLs and json included.
        try db.execute("DELETE FROM loose WHERE ctid = (SELECT ctid FROM loose WHERE id = 1 LIMIT 1)")
        try db.execute("UPDATE loose SET t = 'one of three', j = '[\"changed\"]' WHERE ctid = (SELECT ctid FROM loose WHERE id = 2 LIMIT 1)")
        try db.execute("DELETE FROM loose WHERE ctid = (SELECT ctid FROM loose WHERE id = 2 AND t = 'é 😀' LIMIT 1)")
        try db.execute("UPDATE loose SET f8 = NULL, ia = NULL, m = 'happy 😀' WHERE ctid = (SELECT ctid FROM loose WHERE id = 3 LIMIT 1)")
        let end = try commitMarked("DELETE FROM loose WHERE ctid = (SELECT ctid FROM loose WHERE id = 3 AND f8 IS NOT NULL LIMIT 1)", on: db)
        try waitForTargets(lsn: end)
        XCTAssertEqual(try source.scalar("SELECT count(*) FROM loose"), "4")
        try assertTargetsEqualSource("public.loose")
        XCTAssertEqual(daemon.terminate(), 0, "clean exit on SIGTERM" + logTail)
    }

    /// Unchanged TOASTed values through a primary-key change, and in a keyless table under REPLICA
    /// IDENTITY FULL with two identical rows of which one is updated.
    func testUnchangedToastThroughKeyChangeAndKeylessTable() throws {
        try source.query("""
            CREATE TABLE docs (id int PRIMARY KEY, rev int, body text);
            ALTER TABLE docs ALTER COLUMN body SET STORAGE EXTERNAL;
            CREATE TABLE blobs (k int, tag text, body text);
            ALTER TABLE blobs ALTER COLUMN body SET STORAGE EXTERNAL;
            ALTER TABLE blobs REPLICA IDENTITY FULL;
            INSERT INTO docs SELECT 1, 1, string_agg(md5(i::text || 'doc1'), '') FROM generate_series(1, 40000) i;
            INSERT INTO blobs SELECT 1, 'twin', string_agg(md5(i::text || 'blob'), '') FROM generate_series(1, 40000) i;
            INSERT INTO blobs SELECT * FROM blobs;  -- two identical rows
            """)
        try writeConfig(tables: ["public.docs", "public.blobs"])
        let daemon = try startDaemon()
        try waitForSlotActive()
        let db = try source.connect()
        try db.execute("INSERT INTO docs SELECT 2, 1, string_agg(md5(i::text || 'doc2'), '') FROM generate_series(1, 40000) i")
        // Key changes that leave the big value alone (pgoutput sends it as unchanged TOAST).
        try db.execute("UPDATE docs SET id = 10, rev = 2 WHERE id = 1")
        try db.execute("UPDATE docs SET rev = 3 WHERE id = 2")
        try db.execute("UPDATE docs SET id = 20 WHERE id = 2")
        // One of two identical rows changes; the other must stay as it was.
        try db.execute("UPDATE blobs SET tag = 'changed' WHERE ctid = (SELECT ctid FROM blobs LIMIT 1)")
        try db.execute("INSERT INTO blobs SELECT 2, 'third', body FROM blobs WHERE tag = 'twin'")
        let end = try commitMarked("UPDATE blobs SET k = 3 WHERE tag = 'third'", on: db)
        try waitForTargets(lsn: end)

        let lengths = try source.query("SELECT id, rev, length(body) FROM docs ORDER BY id")
        XCTAssertEqual(lengths, [["10", "2", "1280000"], ["20", "3", "1280000"]])
        try assertTargetsEqualSource("public.docs")
        try assertTargetsEqualSource("public.blobs")
        XCTAssertEqual(daemon.terminate(), 0, "clean exit on SIGTERM" + logTail)
    }

    /// Value by value: each column's text form on the target equals the source's.
    func comparePostgresTarget(columns: [String]) throws {
        let list = columns.map(PGConnection.quoteIdentifier).joined(separator: ", ")
        let expected = try source.query("SELECT \(list) FROM types ORDER BY id")
        let actual = try target.query("SELECT \(list) FROM types ORDER BY id")
        XCTAssertEqual(actual.map { $0[0] }, expected.map { $0[0] }, "PostgreSQL target: the same rows" + logTail)
        for (row, wanted) in zip(actual, expected) where row[0] == wanted[0] {
            for (index, column) in columns.enumerated() where row[index] != wanted[index] {
                XCTFail("PostgreSQL target, id \(wanted[0]!), column \(column): expected \(show(wanted[index])), got \(show(row[index]))")
            }
        }
        // The big values, checked explicitly: kept through the update that did not carry them.
        let bigs = try target.query("SELECT id, length(big), md5(big) FROM types WHERE id IN (100, 101) ORDER BY id")
        let sourceBigs = try source.query("SELECT id, length(big), md5(big) FROM types WHERE id IN (100, 101) ORDER BY id")
        XCTAssertEqual(bigs, sourceBigs, "PostgreSQL target keeps the unchanged TOASTed values" + logTail)
        XCTAssertEqual(try target.scalar("SELECT i4 FROM types WHERE id = 100"), "42")
    }

    /// By storage class: integers as INTEGER, floats as REAL (numerically equal), booleans as 0/1,
    /// bytea as a BLOB, everything else as TEXT equal to the source's text form under canonical settings.
    func compareSQLiteTarget(columns: [String]) throws {
        let db = try source.connect()
        try db.execute("SET TimeZone = 'UTC'; SET DateStyle = 'ISO, YMD'; SET IntervalStyle = 'postgres'; SET extra_float_digits = 3; SET bytea_output = 'hex'")
        let sourceList = columns.map { column -> String in
            let quoted = PGConnection.quoteIdentifier(column)
            switch Self.storage[column] ?? .text {
            case .boolean: return "(\(quoted))::int"
            case .blob: return "upper(encode(\(quoted), 'hex'))"
            default: return quoted
            }
        }.joined(separator: ", ")
        let result = try db.execute("SELECT \(sourceList) FROM types ORDER BY id")
        let expected = (0..<result.rowCount).map { row in (0..<result.columnCount).map { result.string(row, $0) } }

        let lite = try SQLiteDatabase(path: sqlitePath)
        let liteList = columns.map { column -> String in
            let quoted = SQLiteDatabase.quoteIdentifier(column)
            let value = switch Self.storage[column] ?? .text {
            case .blob: "hex(\(quoted))"
            case .real: "printf('%!.17g', \(quoted))"
            default: quoted
            }
            return "typeof(\(quoted)), \(value)"
        }.joined(separator: ", ")
        let actual = try lite.query("SELECT \(liteList) FROM types ORDER BY id")
        XCTAssertEqual(actual.map { $0[1] }, expected.map { $0[0] }, "SQLite target: the same rows" + logTail)
        for (row, wanted) in zip(actual, expected) where row[1] == wanted[0] {
            for (index, column) in columns.enumerated() {
                let storedType = row[2 * index]!
                let stored = row[2 * index + 1]
                let want = wanted[index]
                let place = "SQLite target, id \(wanted[0]!), column \(column)"
                guard let want else {
                    XCTAssertEqual(storedType, "null", "\(place): NULL stays NULL, got \(show(stored))")
                    continue
                }
                switch Self.storage[column] ?? .text {
                case .integer, .boolean:
                    XCTAssertEqual(storedType, "integer", "\(place): storage class")
                    XCTAssertEqual(stored, want, "\(place)")
                case .real:
                    XCTAssertEqual(storedType, "real", "\(place): storage class (source \(want))")
                    let number = stored.flatMap { Double($0) }
                    XCTAssertNotNil(number, "\(place): not a number: \(show(stored))")
                    if let number, let wanted = Double(want) {
                        // float4 goes through its shortest text form; the double parsed from it must match exactly.
                        XCTAssertEqual(number, wanted, "\(place): expected \(want), got \(stored!)")
                    }
                case .blob:
                    XCTAssertEqual(storedType, "blob", "\(place): storage class")
                    XCTAssertEqual(stored, want, "\(place): bytes")
                case .text:
                    XCTAssertEqual(storedType, "text", "\(place): storage class")
                    if stored != want { XCTFail("\(place): expected \(show(want)), got \(show(stored))") }
                }
            }
        }
        let bigs = try lite.query("SELECT id, length(big) FROM types WHERE id IN (100, 101) ORDER BY id")
        XCTAssertEqual(bigs, [["100", "1280000"], ["101", "1280000"]], "SQLite target keeps the unchanged TOASTed values" + logTail)
        XCTAssertEqual(try lite.query("SELECT i4 FROM types WHERE id = 100"), [["42"]])
    }

    func show(_ value: String?) -> String {
        guard let value else { return "NULL" }
        return value.count > 200 ? "'\(value.prefix(100))…' (\(value.count) chars)" : "'\(value)'"
    }
}

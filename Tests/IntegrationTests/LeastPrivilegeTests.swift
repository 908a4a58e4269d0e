import Foundation
import SluiceWire
import XCTest

/// No superuser on either side: the source reads with a role that has only REPLICATION and SELECT on
/// its tables (the publication created by an admin), the PostgreSQL target writes with a role that
/// may only create in its database. `check` prints the exact statements a role lacks; with them
/// granted, snapshot, streaming and backfill end equal to the source.
final class LeastPrivilegeTests: SinkTestCase {
    override var fixtureName: String { "privilege" }

    private func config(sourceRole: String, name: String = "sluice") throws -> String {
        let path = directory + "/\(name).yml"
        try """
            data_dir: \(dataDirectory)
            sources:
              - {name: app, type: postgres, url: "postgresql://\(sourceRole)@127.0.0.1:\(source.port)/postgres", tables: [public.items, public.notes]}
            sinks:
              - {name: replica, type: postgres, url: "postgresql://writer@127.0.0.1:\(target.port)/postgres"}
              - {name: local, type: sqlite, path: \(sqlitePath)}
            """.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    /// A schema the role may not use: `check` prints the GRANT USAGE (not PostgreSQL's "permission
    /// denied for schema") and every other missing GRANT; it never says every privilege is there.
    func testCheckPrintsTheMissingSchemaUsageBesideTheOtherGrants() throws {
        try source.query("""
            CREATE SCHEMA "My Schema";
            CREATE TABLE "My Schema"."we""ird Tab" (id int PRIMARY KEY);
            CREATE TABLE items (id int PRIMARY KEY);
            CREATE PUBLICATION sluice_app FOR TABLE items, "My Schema"."we""ird Tab";
            CREATE ROLE hidden LOGIN REPLICATION;
            """)
        let path = directory + "/hidden.yml"
        try """
            data_dir: \(dataDirectory)
            sources:
              - {name: app, type: postgres, url: "postgresql://hidden@127.0.0.1:\(source.port)/postgres",
                 tables: [public.items, '"My Schema"."we""ird Tab"']}
            sinks:
              - {name: local, type: sqlite, path: \(sqlitePath)}
            """.write(toFile: path, atomically: true, encoding: .utf8)
        let hidden = try sluice(["check", "--config", path])
        XCTAssertEqual(hidden.status, 2, hidden.describe)
        XCTAssertTrue(hidden.out.contains("fix: GRANT USAGE ON SCHEMA \"My Schema\" TO \"hidden\";"), hidden.describe)
        XCTAssertTrue(hidden.out.contains("fix: GRANT SELECT ON \"public\".\"items\" TO \"hidden\";"), hidden.describe)
        XCTAssertFalse(hidden.all.contains("permission denied"), hidden.describe)
        XCTAssertFalse(hidden.out.contains("every privilege"), hidden.describe)
        let run = try sluice(["run", "--config", path], timeout: 60)
        XCTAssertEqual(run.status, 2, run.describe)
        XCTAssertTrue(run.all.contains("GRANT USAGE ON SCHEMA \"My Schema\""), run.describe)

        try source.query("GRANT USAGE ON SCHEMA \"My Schema\" TO hidden")
        let usable = try sluice(["check", "--config", path])
        XCTAssertFalse(usable.out.contains("GRANT USAGE"), usable.describe)
        XCTAssertTrue(usable.out.contains("fix: GRANT SELECT ON \"My Schema\".\"we\"\"ird Tab\" TO \"hidden\";"), usable.describe)
        XCTAssertFalse(usable.out.contains("every privilege"), "SELECT is still missing: \(usable.describe)")
    }

    func testReplicationAndSelectSuffice() throws {
        try source.query("""
            CREATE TABLE items (id int PRIMARY KEY, note text NOT NULL);
            CREATE TABLE notes (id int PRIMARY KEY, body text);
            INSERT INTO items SELECT i, 'item ' || i FROM generate_series(1, 40) i;
            INSERT INTO notes SELECT i, 'note ' || i FROM generate_series(1, 10) i;
            CREATE PUBLICATION sluice_app FOR TABLE items, notes WITH (publish_via_partition_root = true);
            CREATE ROLE cdc LOGIN REPLICATION;
            CREATE ROLE plain LOGIN;
            GRANT SELECT ON items TO cdc;
            """)
        try target.query("CREATE ROLE writer LOGIN; GRANT CREATE ON DATABASE postgres TO writer; GRANT CREATE, USAGE ON SCHEMA public TO writer")

        let plain = try sluice(["check", "--config", try config(sourceRole: "plain", name: "plain")])
        XCTAssertEqual(plain.status, 2, plain.describe)
        XCTAssertTrue(plain.out.contains("role plain may not use replication"), plain.describe)
        XCTAssertTrue(plain.out.contains("fix: ALTER ROLE \"plain\" WITH REPLICATION;"), plain.describe)
        XCTAssertTrue(plain.out.contains("fix: GRANT SELECT ON \"public\".\"items\" TO \"plain\";"), plain.describe)

        let path = try config(sourceRole: "cdc")
        let missing = try sluice(["check", "--config", path])
        XCTAssertTrue(missing.out.contains("fix: GRANT SELECT ON \"public\".\"notes\" TO \"cdc\";"), missing.describe)
        XCTAssertFalse(missing.out.contains("GRANT SELECT ON \"public\".\"items\""), "items is readable: \(missing.describe)")
        try source.query("GRANT SELECT ON notes TO cdc")
        let ready = try sluice(["check", "--config", path])
        XCTAssertEqual(ready.status, 0, ready.describe)
        XCTAssertFalse(ready.out.contains("GRANT"), ready.describe)
        XCTAssertEqual(try source.scalar("SELECT rolsuper::text FROM pg_roles WHERE rolname = 'cdc'"), "false")

        _ = try startDaemon()
        try eventually(timeout: 90, "the snapshot in both targets" + logTail) {
            try sqliteCount("public.items") == 40 && sqliteCount("public.notes") == 10
                && target.count("public.notes") == 10
        }
        let lsn = try commitMarked("INSERT INTO items VALUES (41, 'streamed'); UPDATE notes SET body = 'changed' WHERE id = 3")
        try waitForTargets(lsn: lsn)
        let backfill = try sluice(["backfill", "--config", path, "--table", "public.notes"], timeout: 120)
        XCTAssertEqual(backfill.status, 0, backfill.describe)
        let after = try commitMarked("DELETE FROM items WHERE id = 1")
        try waitForTargets(lsn: after)
        try assertTargetsEqualSource("public.items")
        try assertTargetsEqualSource("public.notes")
        XCTAssertEqual(try target.scalar("SELECT tableowner FROM pg_tables WHERE tablename = 'items'"), "writer")
    }
}

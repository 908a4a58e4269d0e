import Foundation
import SluiceWire
import XCTest

/// A column dropped by hand at a target: `sluice verify` names the table and the column and says how to
/// fix it (exit 1: a difference, not a crash with the database's error), the running sink takes the
/// next change to the table (it adds the column back instead of failing for good), and `--repair`
/// copies the table whole, after which both targets equal the source.
final class VerifyTargetSchemaTests: SinkTestCase {
    override var fixtureName: String { "verifyschema" }

    func testVerifyNamesAColumnDroppedAtTheTargetAndRepairRestoresIt() throws {
        try source.query("""
            CREATE TABLE accounts (id int PRIMARY KEY, name text, "Note" text);
            INSERT INTO accounts SELECT i, 'account ' || i, 'note ' || i FROM generate_series(1, 200) i;
            CREATE TABLE other (id int PRIMARY KEY, v int);
            INSERT INTO other SELECT i, i FROM generate_series(1, 50) i;
            """)
        try writeConfig(tables: ["public.accounts", "public.other"], sourceExtra: ["heartbeat_interval: 500ms"])
        _ = try startDaemon()
        try waitForSlotActive()
        try waitForTargets(lsn: try commitMarked("UPDATE accounts SET name = 'first' WHERE id = 1"))

        try target.query(#"ALTER TABLE public.accounts DROP COLUMN "Note""#)
        let lite = try SQLiteDatabase(path: sqlitePath)
        try lite.execute(#"ALTER TABLE accounts DROP COLUMN "Note""#)

        let text = try sluice(["verify", "--config", configPath, "--table", "public.accounts"], timeout: 120)
        XCTAssertEqual(text.status, 1, text.describe)
        XCTAssertFalse(text.all.contains("does not exist") || text.all.contains("no such column"), "no raw database error: \(text.describe)")
        for sink in ["replica", "local"] {
            let line = text.out.split(separator: "\n").first { $0.hasPrefix("sink \(sink) ") && $0.contains("public.accounts") }
            XCTAssertTrue(line?.contains("has no column \"Note\"") == true, "sink \(sink): \(text.out)")
            XCTAssertTrue(line?.contains("sluice verify --repair --table public.accounts") == true, "the fix: \(text.out)")
        }

        let json = try sluice(["verify", "--config", configPath, "--json"], timeout: 120)
        XCTAssertEqual(json.status, 1, json.describe)
        var missing: [String: [String]] = [:]
        var equal: [String: Bool] = [:]
        for line in json.out.split(separator: "\n") {
            guard let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
                  object["type"] as? String == "table" else { continue }
            let key = "\(object["sink"] ?? "") \(object["table"] ?? "")"
            missing[key] = object["target_columns_missing"] as? [String]
            equal[key] = object["equal"] as? Bool
        }
        XCTAssertEqual(missing["replica public.accounts"], ["Note"], json.out)
        XCTAssertEqual(missing["local public.accounts"], ["Note"], json.out)
        XCTAssertEqual(equal["replica public.other"], true, "the other table is still compared: \(json.out)")
        XCTAssertEqual(equal["local public.other"], true, json.out)

        // The running sinks take the next change to the table: they add the column back (its old values
        // are gone there), rather than failing for good on it.
        try waitForTargets(lsn: try commitMarked("UPDATE accounts SET name = 'after the drop' WHERE id = 2"), timeout: 60)
        XCTAssertEqual(try target.scalar("SELECT name FROM accounts WHERE id = 2"), "after the drop", logTail)

        let repaired = try sluice(["verify", "--config", configPath, "--repair", "--json"], timeout: 180)
        XCTAssertEqual(repaired.status, 0, repaired.describe + logTail)
        try waitForTargets(lsn: try commitMarked("UPDATE accounts SET name = 'last' WHERE id = 3"))
        try assertTargetsEqualSource("public.accounts")
    }
}

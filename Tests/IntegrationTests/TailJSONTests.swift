import Foundation
import XCTest

/// `sluice tail --json` embeds json and jsonb values as JSON (a multi-line json value stays on one
/// line; JSON null is told from SQL NULL), the file sink writes the same lines, the readable form shows
/// an update without old values as its new row, and `-n` counts whole transactions (the snapshot is one).
final class TailJSONTests: DaemonTestCase {
    override var fixtureName: String { "tailjson" }

    var outDirectory: String { directory + "/out" }

    func testJSONValuesAreEmbeddedAndUpdatesReadPlainly() throws {
        try source.query("""
            CREATE TABLE docs (id int PRIMARY KEY, prefs jsonb, doc json, note text);
            INSERT INTO docs SELECT i, '{"vip": true, "tier": 1}', '[1, 2]', 'n' || i FROM generate_series(1, 30) i;
            """)
        try writeSourceConfig(tables: ["public.docs"], sinks: [
            "  - name: files", "    type: file", "    path: \(outDirectory)", "    topics: [app]",
        ])
        let daemon = try startDaemon()
        try waitForSlotActive()

        // Right after the snapshot, -n 1 is the snapshot: one transaction of every row.
        var snapshot = try sluice(["tail", "app", "--config", configPath, "-n", "1"])
        try eventually("the snapshot's commit in the topic" + logTail) {
            snapshot = try sluice(["tail", "app", "--config", configPath, "-n", "1"])
            return snapshot.status == 0 && snapshot.out.contains("\tCOMMIT\t")
        }
        XCTAssertEqual(snapshot.out.components(separatedBy: "\tBEGIN\t").count - 1, 1, snapshot.out)
        XCTAssertEqual(snapshot.out.components(separatedBy: "\tREAD\t").count - 1, 30, snapshot.out)

        let db = try source.connect()
        try db.execute("UPDATE docs SET note = 'changed' WHERE id = 1")
        try db.execute(#"INSERT INTO docs VALUES (31, 'null', E'{\n  "multi": "line",\n  "n": [1, {"x": null}]\n}', NULL), (32, NULL, NULL, 'sql nulls')"#)
        try eventually("the file sink to write the streamed rows" + logTail) {
            pluginTopicText(outDirectory, topic: "app").contains(#""id":32"#)
        }

        let tail = try sluice(["tail", "app", "--config", configPath, "--from-beginning", "--json"])
        XCTAssertEqual(tail.status, 0, tail.err)
        var changes: [Int: [String: Any]] = [:]
        for line in tail.out.split(separator: "\n") {
            let object = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any], String(line))
            guard object["kind"] as? String == "change", let after = object["after"] as? [String: Any],
                  let id = after["id"] as? Int else { continue }
            changes[id] = object
        }
        let first = try XCTUnwrap(changes[1]?["after"] as? [String: Any])
        XCTAssertEqual(first["note"] as? String, "changed")
        XCTAssertEqual((first["prefs"] as? [String: Any])?["vip"] as? Bool, true, "jsonb is a JSON object, not a string")
        XCTAssertEqual((first["doc"] as? [Any])?.count, 2, "json is a JSON array")
        let multi = try XCTUnwrap(changes[31])
        XCTAssertEqual(((multi["after"] as? [String: Any])?["doc"] as? [String: Any])?["multi"] as? String, "line")
        XCTAssertEqual(multi["json_null"] as? [String], ["after.prefs"], "JSON null is told from SQL NULL")
        XCTAssertNil(changes[32]?["json_null"], "SQL NULLs are only null")
        XCTAssertEqual(pluginTopicText(outDirectory, topic: "app"), tail.out,
                       "the file sink writes what tail --json prints (one encoder)")

        let text = try sluice(["tail", "app", "--config", configPath, "-n", "2"])
        XCTAssertEqual(text.status, 0, text.err)
        let update = try XCTUnwrap(text.out.split(separator: "\n").first { $0.contains("\tUPDATE\t") }, text.out)
        XCTAssertFalse(update.contains("null ->"), String(update))
        XCTAssertTrue(update.hasSuffix(#"{"id":1,"prefs":{"vip":true,"tier":1},"doc":[1,2],"note":"changed"}"#), String(update))
        XCTAssertEqual(daemon.terminate(), 0, logTail)
    }

    /// `"a.b"."c"` and `"a"."b.c"` share the `table` text `a.b.c`: `table_schema` and `table_name` tell them
    /// apart in tail --json and the file sink, and the readable tail quotes the dotted part.
    func testDottedSchemaAndTableNamesAreToldApart() throws {
        try source.query("""
            CREATE SCHEMA "a.b"; CREATE SCHEMA a;
            CREATE TABLE "a.b".c (id int PRIMARY KEY, v text);
            CREATE TABLE a."b.c" (id int PRIMARY KEY, v text);
            """)
        try writeSourceConfig(tables: [#"'"a.b".c'"#, #"'a."b.c"'"#], sinks: [
            "  - name: files", "    type: file", "    path: \(outDirectory)", "    topics: [app]",
        ])
        let daemon = try startDaemon()
        try waitForSlotActive()
        try source.query(#"INSERT INTO "a.b".c VALUES (1, 'schema has the dot'); INSERT INTO a."b.c" VALUES (2, 'table has the dot')"#)
        try eventually("the file sink to write both rows" + logTail) {
            let text = pluginTopicText(outDirectory, topic: "app")
            return text.contains(#""id":1"#) && text.contains(#""id":2"#)
        }
        let tail = try sluice(["tail", "app", "--config", configPath, "--from-beginning", "--json", "--schema"])
        XCTAssertEqual(tail.status, 0, tail.err)
        var parts: [Int: [String]] = [:]
        var relations: Set<[String]> = []
        for line in tail.out.split(separator: "\n") {
            let object = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any], String(line))
            let names = [object["table"] as? String ?? "?", object["table_schema"] as? String ?? "?", object["table_name"] as? String ?? "?"]
            if object["kind"] as? String == "relation" { relations.insert(names) }
            if object["kind"] as? String == "change", let id = (object["after"] as? [String: Any])?["id"] as? Int { parts[id] = names }
        }
        XCTAssertEqual(parts[1], ["a.b.c", "a.b", "c"], tail.out)
        XCTAssertEqual(parts[2], ["a.b.c", "a", "b.c"], tail.out)
        XCTAssertEqual(relations, [["a.b.c", "a.b", "c"], ["a.b.c", "a", "b.c"]], tail.out)
        let fileLines = pluginTopicText(outDirectory, topic: "app").split(separator: "\n").filter { $0.contains(#""kind":"change""#) }
        XCTAssertTrue(fileLines.contains { $0.contains(#""table_schema":"a.b","table_name":"c""#) }, fileLines.joined(separator: "\n"))
        XCTAssertTrue(fileLines.contains { $0.contains(#""table_schema":"a","table_name":"b.c""#) }, fileLines.joined(separator: "\n"))

        let text = try sluice(["tail", "app", "--config", configPath, "--from-beginning"])
        XCTAssertEqual(text.status, 0, text.err)
        XCTAssertTrue(text.out.contains("\tINSERT\t\"a.b\".c\t"), text.out)
        XCTAssertTrue(text.out.contains("\tINSERT\ta.\"b.c\"\t"), text.out)
        XCTAssertEqual(daemon.terminate(), 0, logTail)
    }
}

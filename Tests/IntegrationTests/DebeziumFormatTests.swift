import Foundation
import SluiceWire
import XCTest

/// `format: debezium` end to end: the file sink writes Debezium's change events (snapshot read, insert,
/// update, primary-key change as a delete and a create, delete, truncate) framed by its BEGIN and END transaction events, with
/// Debezium's value representations, each transaction once across a SIGKILL of the daemon.
final class DebeziumFormatTests: DaemonTestCase {
    override var fixtureName: String { "debezium" }

    var outDirectory: String { directory + "/out" }

    /// Lines of the topic's files, parsed.
    func events() throws -> [[String: Any]] {
        try pluginTopicText(outDirectory, topic: "app").split(separator: "\n").map { line in
            try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any], String(line))
        }
    }

    /// Runs `statements` in one transaction; returns its xid.
    func transaction(_ statements: String, on db: PGConnection) throws -> Int {
        try db.execute("BEGIN")
        try db.execute(statements)
        let xid = try XCTUnwrap(Int(db.execute("SELECT txid_current()").string(0, 0) ?? ""))
        try db.execute("COMMIT")
        return xid
    }

    func waitForEnd(of xid: Int) throws {
        try eventually(timeout: 60, "the END event of transaction \(xid)" + logTail) {
            try events().contains { $0["status"] as? String == "END" && ($0["id"] as? String)?.hasPrefix("\(xid):") == true }
        }
    }

    func testFileSinkWritesDebeziumEventsForEveryOperation() throws {
        try source.query("""
            CREATE TABLE items (id int PRIMARY KEY, name text, price numeric(10,2), seen timestamptz, born date,
                                tags text[], data jsonb, raw bytea);
            INSERT INTO items VALUES (1, 'one', 12.50, '2024-02-29 13:45:30.5+05:30', '2024-02-29', '{a,"b c"}',
                                      '{"k": 1}', '\\x01ff');
            """)
        try writeSourceConfig(tables: ["public.items"], sinks: [
            "  - name: files", "    type: file", "    path: \(outDirectory)", "    format: debezium", "    topics: [app]",
        ])
        var daemon = try startDaemon()
        try waitForSlotActive()
        let db = try source.connect()
        let insert = try transaction("INSERT INTO items (id, name, price) VALUES (2, 'two', -1.00)", on: db)
        let update = try transaction("UPDATE items SET name = 'zwei' WHERE id = 2; UPDATE items SET id = 10 WHERE id = 1", on: db)
        try waitForEnd(of: update)
        daemon.kill()
        let delete = try transaction("DELETE FROM items WHERE id = 2", on: db)
        daemon = try startDaemon()
        let truncate = try transaction("TRUNCATE items", on: db)
        try waitForEnd(of: truncate)
        XCTAssertEqual(daemon.terminate(), 0, logTail)

        let lines = try events()
        let ends = lines.filter { $0["status"] as? String == "END" }
        XCTAssertEqual(Set(ends.compactMap { $0["id"] as? String }).count, ends.count, "each transaction once: \(ends)")
        XCTAssertEqual(ends.count, 5, "the snapshot and four transactions: \(ends)")
        func changes(_ xid: Int) -> [[String: Any]] {
            lines.filter { (($0["transaction"] as? [String: Any])?["id"] as? String)?.hasPrefix("\(xid):") == true }
        }
        func sourceBlock(_ event: [String: Any]) -> [String: Any] { event["source"] as? [String: Any] ?? [:] }

        // The snapshot: op r, no transaction block, the values as Debezium writes them.
        let read = try XCTUnwrap(lines.first { $0["op"] as? String == "r" }, "\(lines)")
        XCTAssertTrue(read["transaction"] is NSNull)
        XCTAssertEqual(sourceBlock(read)["snapshot"] as? String, "true")
        let row = try XCTUnwrap(read["after"] as? [String: Any])
        XCTAssertEqual(row["id"] as? Int, 1)
        XCTAssertEqual(row["price"] as? String, "BOI=", "numeric(10,2) 12.50: unscaled 1250 = 0x04E2, base64")
        XCTAssertEqual(row["seen"] as? String, "2024-02-29T08:15:30.5Z", "timestamptz: ZonedTimestamp in UTC")
        XCTAssertEqual(row["born"] as? Int, 19782, "date: days since the epoch")
        XCTAssertEqual(row["tags"] as? [String], ["a", "b c"])
        XCTAssertEqual(row["data"] as? String, #"{"k": 1}"#, "jsonb: io.debezium.data.Json, a string")
        XCTAssertEqual(row["raw"] as? String, "Af8=", "bytea: base64")

        let created = changes(insert)
        XCTAssertEqual(created.count, 1)
        XCTAssertEqual(created.first?["op"] as? String, "c")
        XCTAssertTrue(created.first?["before"] is NSNull)
        XCTAssertEqual((created.first?["after"] as? [String: Any])?["price"] as? String, "nA==", "numeric -1.00: unscaled -100 = 0x9C")
        let createdSource = sourceBlock(created.first ?? [:])
        XCTAssertEqual(createdSource["connector"] as? String, "postgresql")
        XCTAssertEqual(createdSource["name"] as? String, "app")
        XCTAssertEqual(createdSource["schema"] as? String, "public")
        XCTAssertEqual(createdSource["table"] as? String, "items")
        XCTAssertEqual(createdSource["txId"] as? Int, insert)
        XCTAssertEqual(createdSource["snapshot"] as? String, "false")

        let updated = changes(update)
        XCTAssertEqual(updated.map { $0["op"] as? String }, ["u", "d", "c"], "a key change is a delete, then a create")
        XCTAssertTrue(updated.first?["before"] is NSNull, "no old row under the default replica identity")
        XCTAssertEqual((updated.first?["after"] as? [String: Any])?["name"] as? String, "zwei")
        XCTAssertEqual((updated[1]["before"] as? [String: Any])?["id"] as? Int, 1, "the delete carries the old key")
        XCTAssertTrue((updated[1]["before"] as? [String: Any])?["name"] is NSNull)
        XCTAssertTrue(updated[1]["after"] is NSNull)
        XCTAssertTrue(updated.last?["before"] is NSNull)
        XCTAssertEqual((updated.last?["after"] as? [String: Any])?["id"] as? Int, 10)
        XCTAssertEqual((updated.last?["after"] as? [String: Any])?["name"] as? String, "one")
        XCTAssertEqual(updated.map { ($0["transaction"] as? [String: Any])?["total_order"] as? Int }, [1, 2, 3])
        XCTAssertEqual(updated.map { ($0["transaction"] as? [String: Any])?["data_collection_order"] as? Int }, [1, 2, 3])

        let deleted = changes(delete)
        XCTAssertEqual(deleted.first?["op"] as? String, "d")
        XCTAssertEqual((deleted.first?["before"] as? [String: Any])?["id"] as? Int, 2)
        XCTAssertTrue(deleted.first?["after"] is NSNull)

        let truncated = changes(truncate)
        XCTAssertEqual(truncated.first?["op"] as? String, "t")
        XCTAssertNil(truncated.first?["before"], "a truncate event has no rows")

        // BEGIN and END frame each transaction; END counts its events per table.
        let updateEnd = try XCTUnwrap(ends.first { ($0["id"] as? String)?.hasPrefix("\(update):") == true })
        XCTAssertEqual(updateEnd["event_count"] as? Int, 3)
        XCTAssertEqual(updateEnd["data_collections"] as? NSArray, [["data_collection": "public.items", "event_count": 3]] as NSArray)
        XCTAssertEqual(lines.filter { $0["status"] as? String == "BEGIN" }.count, 5)
    }
}

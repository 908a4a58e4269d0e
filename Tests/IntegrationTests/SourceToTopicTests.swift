import Foundation
import XCTest

/// The PostgreSQL source captures committed transactions into the topic: complete, in commit order,
/// framed by begin and commit markers.
final class SourceToTopicTests: DaemonTestCase {
    override var fixtureName: String { "source" }

    func testWorkloadAppearsInTailCompleteAndInCommitOrder() throws {
        try source.query("""
            CREATE TABLE accounts (id int PRIMARY KEY, owner text, balance numeric(12,2));
            CREATE TABLE events (id bigserial PRIMARY KEY, account int, note text);
            INSERT INTO accounts VALUES (1, 'ada', 100), (2, 'bob', 50);
            """)
        let config = try writeSourceConfig(tables: ["public.accounts", "public.events"])
        let daemon = try startDaemon()
        try eventually("the slot to exist") { try source.scalar("SELECT count(*) FROM pg_replication_slots") == "1" }

        let db = try source.connect()
        var xids: [Int] = []
        func transaction(_ statements: String) throws {
            try db.execute("BEGIN")
            xids.append(Int(try db.execute("SELECT txid_current()").string(0, 0)!)!)
            try db.execute(statements)
            try db.execute("COMMIT")
        }
        try transaction("INSERT INTO events (account, note) VALUES (1, 'opened'), (2, 'opened')")
        try transaction("UPDATE accounts SET balance = balance - 10 WHERE id = 1; UPDATE accounts SET balance = balance + 10 WHERE id = 2")
        try transaction("UPDATE accounts SET id = 3 WHERE id = 2")
        try db.execute("BEGIN; INSERT INTO events (account, note) VALUES (9, 'rolled back'); ROLLBACK")
        try transaction("DELETE FROM events WHERE note = 'opened' AND account = 1")
        try transaction("TRUNCATE events")
        try transaction("INSERT INTO events (account, note) VALUES (3, 'after truncate')")

        var dump = try TopicDump.read(topic: "app", config: config)
        try eventually("all transactions in the topic") {
            dump = try TopicDump.read(topic: "app", config: config)
            return dump.transactions.count == xids.count + 1
        }
        // The initial snapshot comes first, as one transaction of reads.
        let snapshot = dump.transactions[0]
        XCTAssertEqual(snapshot.xid, 0)
        XCTAssertEqual(snapshot.changes.map { $0["op"] as? String }, ["read", "read"])
        XCTAssertEqual(Set(snapshot.changes.compactMap { ($0["after"] as? [String: Any])?["owner"] as? String }), ["ada", "bob"])

        let streamed = Array(dump.transactions.dropFirst())
        XCTAssertEqual(streamed.map(\.xid), xids, "every committed transaction once, in commit order")
        XCTAssertEqual(streamed.map { lsnValue($0.lsn) }, streamed.map { lsnValue($0.lsn) }.sorted())
        XCTAssertFalse(dump.records.contains { ($0["after"] as? [String: Any])?["note"] as? String == "rolled back" })

        let ops = streamed.map { $0.changes.map { "\($0["op"]!) \($0["table"]!)" } }
        XCTAssertEqual(ops, [
            ["insert public.events", "insert public.events"],
            ["update public.accounts", "update public.accounts"],
            ["update public.accounts"],
            ["delete public.events"],
            ["truncate public.events"],
            ["insert public.events"],
        ])
        let keyChange = streamed[2].changes[0]
        XCTAssertEqual((keyChange["before"] as? [String: Any])?["id"] as? Int, 2, "the old key of a primary-key change")
        XCTAssertEqual((keyChange["after"] as? [String: Any])?["id"] as? Int, 3)
        XCTAssertEqual((streamed[1].changes[0]["after"] as? [String: Any])?["balance"] as? String, "90.00")
        XCTAssertEqual(((streamed[3].changes[0]["before"] as? [String: Any])?["id"] as? Int), 1)
        XCTAssertEqual(daemon.terminate(), 0, daemon.log)
    }
}

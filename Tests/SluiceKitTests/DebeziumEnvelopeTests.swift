import Foundation
@testable import SluiceKit
import XCTest

/// `format: debezium` against the examples of Debezium's PostgreSQL connector documentation
/// (docs/debezium-examples: create, update, delete, truncate, transaction metadata), and the exact
/// text of one event (field order included).
final class DebeziumEnvelopeTests: XCTestCase {
    /// The documentation's `customers` table: `id integer primary key, first_name, last_name, email text`.
    let customers = RelationSchema(id: 16_390, schema: "public", table: "customers", replicaIdentity: .default, columns: [
        column("id", key: true), column("first_name", oid: 25, type: "text"), column("last_name", oid: 25, type: "text"),
        column("email", oid: 25, type: "text"),
    ])
    let anne = cells("1", "Anne", "Kretchmar", "annek@noanswer.org")

    func fixture(_ name: String) throws -> Any {
        let path = kitRepositoryRoot + "/docs/debezium-examples/" + name + ".json"
        return try JSONSerialization.jsonObject(with: try Data(contentsOf: URL(fileURLWithPath: path)))
    }

    /// The event as a JSON object, `source.version` set to the fixture's (the one field Sluice writes its own way).
    func parsed(_ line: String, version: Any?) throws -> NSDictionary {
        var object = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any], line)
        if var source = object["source"] as? [String: Any] {
            XCTAssertEqual(source["version"] as? String, "sluice")
            source["version"] = version
            object["source"] = source
        }
        return object as NSDictionary
    }

    /// An envelope for the documentation's server, whose previous transaction committed at LSN 24023119
    /// (`source.sequence`), with the clock at `now` (ms).
    func envelope(now millis: Int64) -> DebeziumEnvelope {
        var envelope = DebeziumEnvelope(serverName: "PostgreSQL_server", database: "postgres", clock: { millis * 1000 })
        _ = envelope.begin(BeginRecord(xid: 554, commitLSN: LSN(24_023_119), commitTime: 0))
        _ = envelope.end(CommitRecord(xid: 554, commitLSN: LSN(24_023_119), endLSN: LSN(24_023_120), commitTime: 0,
                                      eventCount: 0, totalEvents: 0))
        return envelope
    }

    /// A change at `lsn` in transaction `xid` committed at the documentation's source time.
    func event(_ operation: ChangeOperation, xid: UInt32, lsn: UInt64, now: Int64, oldKind: OldValuesKind = .none,
               old: [TestCell]? = nil, new: [TestCell]? = nil) throws -> String {
        var envelope = envelope(now: now)
        _ = envelope.begin(BeginRecord(xid: xid, commitLSN: LSN(lsn), commitTime: 1_559_033_904_863_000))
        var change = try makeChange(operation, customers, oldKind: oldKind, old: old, new: new)
        change.lsn = LSN(lsn)
        return envelope.change(change)
    }

    func assertMatchesFixture(_ line: String, _ name: String, file: StaticString = #filePath, line number: UInt = #line) throws {
        let expected = try XCTUnwrap(try fixture(name) as? [String: Any], file: file, line: number)
        let version = (expected["source"] as? [String: Any])?["version"]
        XCTAssertEqual(try parsed(line, version: version), expected as NSDictionary, "\(name): \(line)", file: file, line: number)
    }

    func testCreateMatchesTheDocumentation() throws {
        let line = try event(.insert, xid: 555, lsn: 24_023_128, now: 1_559_033_904_863, new: anne)
        try assertMatchesFixture(line, "create")
        XCTAssertEqual(line, #"{"before":null,"after":{"id":1,"first_name":"Anne","last_name":"Kretchmar","email":"annek@noanswer.org"},"#
                       + #""source":{"version":"sluice","connector":"postgresql","name":"PostgreSQL_server","ts_ms":1559033904863,"#
                       + #""snapshot":"false","db":"postgres","sequence":"[\"24023119\",\"24023128\"]","schema":"public","#
                       + #""table":"customers","txId":555,"lsn":24023128,"xmin":null},"op":"c","ts_ms":1559033904863,"#
                       + #""transaction":{"id":"555:24023128","total_order":1,"data_collection_order":1}}"#)
    }

    func testUpdateWithFullOldRowMatchesTheDocumentation() throws {
        let line = try event(.update, xid: 556, lsn: 24_023_128, now: 1_465_584_025_523, oldKind: .full, old: anne,
                             new: cells("1", "Anne Marie", "Kretchmar", "annek@noanswer.org"))
        try assertMatchesFixture(line, "update")
    }

    func testDeleteWithOldKeyMatchesTheDocumentation() throws {
        let line = try event(.delete, xid: 556, lsn: 46_523_128, now: 1_465_581_902_461, oldKind: .key,
                             old: cells("1", nil, nil, nil))
        try assertMatchesFixture(line, "delete")
    }

    func testTruncateMatchesTheDocumentation() throws {
        let line = try event(.truncate, xid: 556, lsn: 24_023_128, now: 1_559_033_904_961)
        try assertMatchesFixture(line, "truncate")
        XCTAssertFalse(line.contains("\"before\""), "a truncate event has no rows: \(line)")
    }

    func testSnapshotReadsAreOpRWithoutTransaction() throws {
        var envelope = DebeziumEnvelope(serverName: "app", clock: { 5_000 })
        _ = envelope.begin(BeginRecord(xid: 0, commitLSN: LSN(100), commitTime: 2_000))
        let line = envelope.change(try makeChange(.read, customers, new: anne))
        let object = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
        XCTAssertEqual(object["op"] as? String, "r")
        XCTAssertTrue(object["transaction"] is NSNull, line)
        let source = try XCTUnwrap(object["source"] as? [String: Any])
        XCTAssertEqual(source["snapshot"] as? String, "true")
        XCTAssertTrue(source["txId"] is NSNull, line)
        XCTAssertEqual(source["db"] as? String, "app", "the topic stands in for the database")
        XCTAssertEqual(source["ts_ms"] as? Int, 2)
        XCTAssertEqual(object["ts_ms"] as? Int, 5)
    }

    /// BEGIN, the changes numbered in the transaction and per table, END with the counts per table.
    func testTransactionMetadataMatchesTheDocumentation() throws {
        let expected = try XCTUnwrap(try fixture("transaction") as? [[String: Any]])
        let table = { (schema: String) in
            RelationSchema(id: schema == "s1" ? 1 : 2, schema: schema, table: "a", replicaIdentity: .default, columns: [
                column("pk", oid: 25, type: "text", key: true), column("aa", oid: 25, type: "text"),
            ])
        }
        var envelope = DebeziumEnvelope(serverName: "server", clock: { 0 })
        let lsn = LSN(53_195_832)
        let commitTime: Micros = 1_486_500_577_125_000
        var lines = [envelope.begin(BeginRecord(xid: 571, commitLSN: lsn, commitTime: commitTime))]
        lines.append(envelope.change(try makeChange(.insert, table("s1"), new: cells("2", "1"))))
        lines.append(envelope.change(try makeChange(.insert, table("s2"), new: cells("3", "1"))))
        lines.append(envelope.end(CommitRecord(xid: 571, commitLSN: lsn, endLSN: LSN(53_195_900), commitTime: commitTime,
                                               eventCount: 2, totalEvents: 2)))
        XCTAssertEqual(lines.count, expected.count)
        for (line, wanted) in zip(lines, expected) {
            let object = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
            // The fixture's change events show only the fields the documentation's example does.
            let compared = object.filter { wanted[$0.key] != nil }
            XCTAssertEqual(compared as NSDictionary, wanted as NSDictionary, line)
        }
        // The next transaction starts counting again.
        _ = envelope.begin(BeginRecord(xid: 572, commitLSN: LSN(53_196_000), commitTime: commitTime))
        let next = envelope.change(try makeChange(.insert, table("s2"), new: cells("4", "1")))
        XCTAssertTrue(next.contains(#""transaction":{"id":"572:53196000","total_order":1,"data_collection_order":1}"#), next)
        XCTAssertTrue(next.contains(#""sequence":"[\"53195832\",\"97500059720\"]""#), "the previous commit, then this change: \(next)")
    }

    func testFormatRendererKeepsSluiceFramingAndTheFileSinksEndLine() throws {
        var renderer = ChangeRenderer(format: .debezium, topic: "app", clock: { 0 })
        let begin = BeginRecord(xid: 9, commitLSN: LSN(0x1000), commitTime: 1_000_000)
        XCTAssertTrue(renderer.begin(begin, offset: 3).hasPrefix(#"{"offset":3,"kind":"begin""#))
        XCTAssertTrue(renderer.events(try makeChange(.insert, customers, new: anne)).first?.hasPrefix(#"{"before":null,"after":{"id":1"#) == true)
        let end = renderer.debeziumEnd(CommitRecord(xid: 9, commitLSN: LSN(0x1000), endLSN: LSN(0x1100), commitTime: 1_000_000,
                                                    eventCount: 1, totalEvents: 1), offset: 5)
        XCTAssertEqual(end, #"{"status":"END","id":"9:4096","ts_ms":1000,"event_count":1,"#
                       + #""data_collections":[{"data_collection":"public.customers","event_count":1}],"#
                       + #""sluice":{"offset":5,"lsn":"0/1000","commit_time":"1970-01-01T00:00:01.000000Z"}}"#)
        var plain = ChangeRenderer(format: .sluice, topic: "app")
        XCTAssertTrue(plain.events(try makeChange(.insert, customers, new: anne)).first?.hasPrefix(#"{"offset":42,"kind":"change""#) == true)
        let keyChange = try makeChange(.update, customers, oldKind: .key, old: cells("1", nil, nil, nil),
                                       new: cells("7", "Anne", "Kretchmar", "annek@noanswer.org"))
        XCTAssertEqual(plain.events(keyChange).count, 1, "Sluice's own format keeps a key change one update")
    }

    /// Debezium emits an update of the primary key as a delete of the old key, then a create of the
    /// new row (no tombstone: there is no Kafka); both are numbered in the transaction.
    func testAPrimaryKeyChangeIsADeleteThenACreate() throws {
        var envelope = DebeziumEnvelope(serverName: "app", clock: { 0 })
        _ = envelope.begin(BeginRecord(xid: 9, commitLSN: LSN(0x1000), commitTime: 1_000_000))
        let keyChange = try makeChange(.update, customers, oldKind: .key, old: cells("1", nil, nil, nil),
                                       new: cells("7", "Anne", "Kretchmar", "annek@noanswer.org"))
        let events = try envelope.events(keyChange).map {
            try XCTUnwrap(try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any], $0)
        }
        XCTAssertEqual(events.map { $0["op"] as? String }, ["d", "c"])
        XCTAssertEqual((events[0]["before"] as? [String: Any])?["id"] as? Int, 1, "the delete carries the old key")
        XCTAssertTrue((events[0]["before"] as? [String: Any])?["email"] is NSNull, "only the key is known of the old row")
        XCTAssertTrue(events[0]["after"] is NSNull)
        XCTAssertTrue(events[1]["before"] is NSNull)
        XCTAssertEqual((events[1]["after"] as? [String: Any])?["id"] as? Int, 7)
        XCTAssertEqual((events[1]["after"] as? [String: Any])?["first_name"] as? String, "Anne")
        XCTAssertEqual(events.map { ($0["transaction"] as? [String: Any])?["total_order"] as? Int }, [1, 2])
        XCTAssertEqual(events.map { ($0["source"] as? [String: Any])?["lsn"] as? Int }, [0x16_B374_D848, 0x16_B374_D848])

        // The key kept: one update, whether the old key was sent (a full old row) or not.
        let sameKey = try makeChange(.update, customers, oldKind: .full, old: anne, new: cells("1", "Anne", "K", "a@b"))
        XCTAssertEqual(try envelope.events(sameKey).map { try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
            .map { $0?["op"] as? String }, ["u"])
        XCTAssertEqual(envelope.events(try makeChange(.update, customers, new: anne)).count, 1)
        // A keyless table under REPLICA IDENTITY FULL has no key to change.
        let keyless = RelationSchema(id: 1, schema: "public", table: "ledger", replicaIdentity: .full, columns: [
            column("account", identity: true), column("amount", identity: true),
        ])
        XCTAssertEqual(envelope.events(try makeChange(.update, keyless, oldKind: .full, old: cells("1", "2"), new: cells("3", "4"))).count, 1)
        let end = envelope.end(CommitRecord(xid: 9, commitLSN: LSN(0x1000), endLSN: LSN(0x1100), commitTime: 1_000_000,
                                            eventCount: 1, totalEvents: 1))
        XCTAssertTrue(end.contains(#""event_count":5"#), "every event counted: \(end)")
    }
}

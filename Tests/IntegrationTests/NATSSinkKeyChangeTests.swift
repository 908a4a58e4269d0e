import Foundation
import SluiceNATS
import XCTest

/// `format: debezium` on the NATS sink: an update of the primary key is two messages, Debezium's
/// delete event then its create event, each with its own message id, and a SIGKILL between the two
/// leaves the second (and the commit marker) to be published once by the next run.
extension NATSSinkTests {
    func testAKeyChangeIsADeleteThenACreateOnceAcrossAKillBetweenThem() throws {
        try source.query("CREATE TABLE keyed (id int PRIMARY KEY, name text); INSERT INTO keyed VALUES (1, 'one')")
        try writeNATSConfig(["format: debezium"], tables: ["public.keyed"])
        // The sink stops after publishing the delete event, before the create event; killed there.
        var daemon = try startDaemon(environment: ["SLUICE_FAILPOINTS": "sink.nats.between_events@1:sleep(600000)"])
        try waitForSlotActive()
        try source.query("UPDATE keyed SET id = 2, name = 'two' WHERE id = 1")
        let jetStream = try connect()
        defer { jetStream.connection.close() }
        try eventually(timeout: 60, "the stream to end with the key change's delete event" + logTail) {
            try lastMessage(jetStream)?.headers["Sluice-Event"] == "1"
        }
        XCTAssertTrue(logTail.contains("failpoint sink.nats.between_events fired at hit 1"), logTail)
        daemon.kill()

        daemon = try startDaemon()
        try source.query("INSERT INTO keyed VALUES (3, 'three')")
        _ = try waitForCaughtUp(["nats"])
        XCTAssertEqual(daemon.terminate(), 0, logTail)
        XCTAssertTrue(logTail.contains("skipped changes its stream already held"), "the restart skipped the delete event" + logTail)

        let messages = try readStream()
        let ids = messages.compactMap { $0.headers[NATSHeaders.messageID] }
        XCTAssertEqual(Set(ids).count, messages.count, "every message id once: \(ids)")
        let changes = messages.filter { !$0.subject.hasSuffix("._commit") }
        let events = try changes.map {
            try XCTUnwrap(try JSONSerialization.jsonObject(with: Data($0.data)) as? [String: Any], String(decoding: $0.data, as: UTF8.self))
        }
        XCTAssertEqual(events.map { $0["op"] as? String }, ["r", "d", "c", "c"], "\(events)")
        guard events.count == 4 else { return }
        XCTAssertEqual((events[1]["before"] as? [String: Any])?["id"] as? Int, 1, "the delete names the old key")
        XCTAssertTrue(events[1]["after"] is NSNull)
        XCTAssertTrue(events[2]["before"] is NSNull)
        XCTAssertEqual((events[2]["after"] as? [String: Any])?["name"] as? String, "two")
        let keyChange = changes[1].headers["Sluice-Offset"] ?? "?"
        XCTAssertEqual(changes[2].headers["Sluice-Offset"], keyChange, "both events are the one change")
        XCTAssertEqual(changes[1...2].map { $0.headers["Sluice-Event"] }, ["1", "2"])
        XCTAssertEqual(changes[1...2].map { $0.headers[NATSHeaders.messageID] }, ["nats:app:\(keyChange):1", "nats:app:\(keyChange):2"])
        XCTAssertNil(changes[3].headers["Sluice-Event"], "a change of one message has no event number")
        XCTAssertEqual(events[1...2].map { ($0["transaction"] as? [String: Any])?["total_order"] as? Int }, [1, 2])
        // Each transaction closed by one marker, right after its last event.
        let markers = messages.filter { $0.subject.hasSuffix("._commit") }
        XCTAssertEqual(markers.count, 3, "the snapshot, the key change and the insert: \(markers.map(\.headers.fields))")
        XCTAssertEqual(Set(markers.compactMap { $0.headers["Sluice-Commit-Offset"] }).count, 3)
        let keyMarker = try XCTUnwrap(messages.firstIndex { $0.subject.hasSuffix("._commit") && $0.sequence > changes[2].sequence })
        XCTAssertEqual(messages[keyMarker].sequence, changes[2].sequence + 1, "the marker follows the create event")
    }
}

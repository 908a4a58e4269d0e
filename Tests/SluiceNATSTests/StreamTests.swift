import SluiceNATS
import XCTest

/// Stream management against a real nats-server: create, info, nil for a missing stream, purge.
final class StreamTests: NATSTestCase {
    func testStreamInfoIsNilForAMissingStreamAndReportsConfigAndState() throws {
        let server = try startServer()
        let connection = try connect([server.url])
        XCTAssertEqual(connection.state, .connected)
        let js = try connection.jetStream()
        XCTAssertNil(try js.streamInfo("NOPE"))

        var config = StreamConfig(name: "APP", subjects: ["app.>"])
        config.maxBytes = 64 * 1024 * 1024
        config.maxAge = .seconds(3600)
        config.duplicateWindow = .seconds(120)
        let created = try js.addStream(config)
        XCTAssertEqual(created.config.name, "APP")
        // Adding the same stream again is not an error; another configuration under its name is.
        XCTAssertEqual(try js.addStream(config).config.subjects, ["app.>"])
        var other = config
        other.subjects = ["other.>"]
        XCTAssertThrowsError(try js.addStream(other)) { error in
            XCTAssertEqual((error as? NATSError)?.jetStreamCode, 10058, "\(error)")
        }

        for index in 0..<3 { try js.publish("app.x", body(index)) }
        let info = try XCTUnwrap(try js.streamInfo("APP"))
        XCTAssertEqual(info.config.subjects, ["app.>"])
        XCTAssertEqual(info.config.replicas, 1)
        XCTAssertEqual(info.config.maxBytes, 64 * 1024 * 1024)
        XCTAssertEqual(info.config.maxAge, .seconds(3600))
        XCTAssertEqual(info.config.duplicateWindow, .seconds(120))
        XCTAssertEqual(info.state.messages, 3)
        XCTAssertEqual(info.state.firstSequence, 1)
        XCTAssertEqual(info.state.lastSequence, 3)
        XCTAssertGreaterThan(info.state.bytes, 3 * 64)
        XCTAssertNil(info.cluster?.leader, "a server outside a cluster has no stream leader")

        // Limits change in place (retention: maps to them).
        var larger = config
        larger.maxBytes = 128 * 1024 * 1024
        larger.maxAge = nil
        let updated = try js.updateStream(larger)
        XCTAssertEqual(updated.config.maxBytes, 128 * 1024 * 1024)
        XCTAssertNil(updated.config.maxAge)
        XCTAssertEqual(updated.state.messages, 3)

        XCTAssertTrue(try js.deleteStream("APP"))
        XCTAssertFalse(try js.deleteStream("APP"))
        XCTAssertNil(try js.streamInfo("APP"))
    }

    func testPurgeBelowASequenceKeepsThatSequenceAndLater() throws {
        let server = try startServer()
        let js = try connect([server.url]).jetStream()
        try js.addStream(StreamConfig(name: "APP", subjects: ["app.>"]))
        for index in 1...100 { try js.publish("app.x", body(index)) }

        try js.purge("APP", below: 61)
        let state = try XCTUnwrap(try js.streamInfo("APP")).state
        XCTAssertEqual(state.firstSequence, 61)
        XCTAssertEqual(state.lastSequence, 100)
        XCTAssertEqual(state.messages, 40)
        XCTAssertNil(try js.message("APP", sequence: 60))
        XCTAssertEqual(try js.message("APP", sequence: 61)?.data, body(61))

        // Sequences go on from where they were: a purge never reuses one.
        XCTAssertEqual(try js.publish("app.x", body(101)).sequence, 101)
        // Up to the end: everything goes, the next message gets the next sequence.
        try js.purge("APP", below: 102)
        let empty = try XCTUnwrap(try js.streamInfo("APP")).state
        XCTAssertEqual(empty.messages, 0)
        XCTAssertEqual(empty.lastSequence, 101)
        XCTAssertEqual(try js.publish("app.x", body(102)).sequence, 102)
        // Past the end, the server moves the stream's sequence forward: the next message gets the
        // purge sequence (so retention must never purge past what was written).
        try js.purge("APP", below: 1_000)
        XCTAssertEqual(try XCTUnwrap(try js.streamInfo("APP")).state.lastSequence, 999)
        XCTAssertEqual(try js.publish("app.x", body(1_000)).sequence, 1_000)
    }

    func testConnectingToNoServerFailsAtOnceAsAConnectionError() throws {
        let port = try freePort()
        XCTAssertThrowsError(try connect(["nats://127.0.0.1:\(port)"])) { error in
            XCTAssertEqual((error as? NATSError)?.kind, .connection, "\(error)")
            XCTAssertTrue((error as? NATSError)?.isTransient == true)
        }
    }
}

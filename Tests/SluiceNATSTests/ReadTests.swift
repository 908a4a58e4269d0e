import SluiceNATS
import XCTest

/// Reading against a real nats-server: by sequence, the last on a subject, and sequentially from a
/// start sequence with both reader modes.
final class ReadTests: NATSTestCase {
    func testGetBySequenceAndLastOnSubjectWithAndWithoutDirectGet() throws {
        let server = try startServer()
        let js = try connect([server.url]).jetStream()
        var config = StreamConfig(name: "APP", subjects: ["app.>"])
        config.allowDirect = true
        try js.addStream(config)
        try js.publish("app.a", body(1), headers: ["k": "1"])
        try js.publish("app.b", body(2))
        try js.publish("app.a", body(3), headers: ["k": "3"])

        for direct in [false, true] {
            let second = try XCTUnwrap(try js.message("APP", sequence: 2, direct: direct))
            XCTAssertEqual(second.sequence, 2)
            XCTAssertEqual(second.subject, "app.b")
            XCTAssertEqual(second.data, body(2))
            XCTAssertNil(try js.message("APP", sequence: 4, direct: direct), "past the end: nil")

            let last = try XCTUnwrap(try js.lastMessage("APP", subject: "app.a", direct: direct))
            XCTAssertEqual(last.sequence, 3)
            XCTAssertEqual(last.headers["k"], "3")
            XCTAssertNil(try js.lastMessage("APP", subject: "app.none", direct: direct))
        }
        XCTAssertThrowsError(try js.message("NOPE", sequence: 1)) { error in
            XCTAssertEqual((error as? NATSError)?.kind, .streamNotFound, "\(error)")
        }
    }

    func testSequentialReadingOf10kMessagesFromAMiddleSequence() throws {
        let server = try startServer()
        let js = try connect([server.url]).jetStream()
        try js.addStream(StreamConfig(name: "APP", subjects: ["app.>"]))
        let total = 15_000
        for index in 1...total {
            try js.publishAsync("app.t", body(index, size: 256), headers: ["n": String(index)], tag: UInt64(index))
        }
        try js.waitForAsyncAcks(timeoutMilliseconds: 30_000)
        XCTAssertEqual(js.takeAsyncAcks().filter { if case .failure = $0.result { true } else { false } }.count, 0)

        let start: UInt64 = 5_001
        for mode in [StreamReader.Mode.pull(batch: 1_000), .orderedPush] {
            let began = Date()
            let reader = try StreamReader(js, stream: "APP", subject: "app.>", startSequence: start, mode: mode)
            var expected = start
            var read = 0
            while read < 10_000 {
                // Never past the 10,000th: an ordered push reader's batches need not add up to it.
                let batch = try reader.next(max: min(1_000, 10_000 - read), timeoutMilliseconds: 2_000)
                XCTAssertFalse(batch.isEmpty, "\(mode): nothing arrived at sequence \(expected)")
                if batch.isEmpty { break }
                for message in batch {
                    XCTAssertEqual(message.sequence, expected, "\(mode)")
                    XCTAssertEqual(message.data, body(Int(expected), size: 256))
                    XCTAssertEqual(message.headers["n"], String(expected))
                    expected += 1
                    read += 1
                }
            }
            let seconds = Date().timeIntervalSince(began)
            print("sequential read \(mode): \(read) messages of 256 bytes in \(String(format: "%.3f", seconds)) s"
                  + " = \(Int(Double(read) / seconds)) msg/s")
            XCTAssertEqual(read, 10_000)
            XCTAssertEqual(reader.nextSequence, start + 10_000)
            // The rest up to the end (the first mode's late message is there for the second), then an
            // empty batch after the wait, not an error.
            let last = try XCTUnwrap(try js.streamInfo("APP")).state.lastSequence
            var rest: [UInt64] = []
            while case let batch = try reader.next(max: 100, timeoutMilliseconds: 300), !batch.isEmpty {
                rest += batch.map(\.sequence)
            }
            XCTAssertEqual(rest, Array((start + 10_000)..<(last + 1)), "\(mode)")
            // And a new message reaches a reader that waits at the end.
            try js.publish("app.t", body(Int(last) + 1, size: 256), headers: ["n": String(last + 1)])
            let late = try reader.next(max: 10, timeoutMilliseconds: 5_000)
            XCTAssertEqual(late.map(\.sequence), [last + 1], "\(mode)")
        }
    }
}

import SluiceNATS
import XCTest

/// Publishing against a real nats-server: sequences, headers, duplicates by message id,
/// expected-last-sequence mismatches, and asynchronous publishing with a bound in flight.
final class PublishTests: NATSTestCase {
    private func openStream(duplicateWindow: Duration = .seconds(120)) throws -> JetStream {
        let server = try startServer()
        let js = try connect([server.url]).jetStream(options: {
            var options = JetStreamOptions()
            options.maxPendingAsync = 64
            return options
        }())
        var config = StreamConfig(name: "APP", subjects: ["app.>"])
        config.duplicateWindow = duplicateWindow
        try js.addStream(config)
        return js
    }

    func testSyncPublishReturnsTheSequenceAndAReplayedMessageIDIsADuplicate() throws {
        let js = try openStream()
        let first = try js.publish("app.t", body(1), messageID: "tx-1")
        XCTAssertEqual(first, PubAck(stream: "APP", sequence: 1, duplicate: false))
        XCTAssertEqual(try js.publish("app.t", body(2), messageID: "tx-2").sequence, 2)

        // The same id again, even with another body: reported duplicate, with the first sequence.
        let again = try js.publish("app.t", body(99), messageID: "tx-1")
        XCTAssertTrue(again.duplicate)
        XCTAssertEqual(again.sequence, 1)
        let state = try XCTUnwrap(try js.streamInfo("APP")).state
        XCTAssertEqual(state.messages, 2)
        XCTAssertEqual(try js.message("APP", sequence: 1)?.data, body(1))
    }

    func testHeadersAreStoredWithTheMessage() throws {
        let js = try openStream()
        var headers = NATSHeaders()
        headers["Sluice-Commit-LSN"] = "16/B374D848"
        headers.append("Sluice-Table", "public.orders")
        headers.append("Sluice-Table", "public.accounts")
        try js.publish("app.t", body(1), headers: headers, messageID: "tx-1", expectedLastSequence: 0)
        let stored = try XCTUnwrap(try js.message("APP", sequence: 1))
        XCTAssertEqual(stored.headers["Sluice-Commit-LSN"], "16/B374D848")
        XCTAssertEqual(stored.headers.values("Sluice-Table"), ["public.orders", "public.accounts"])
        XCTAssertEqual(stored.headers[NATSHeaders.messageID], "tx-1")
        XCTAssertEqual(stored.headers[NATSHeaders.expectedLastSequence], "0")
        XCTAssertEqual(stored.subject, "app.t")
        XCTAssertGreaterThan(stored.time, 1_600_000_000 * 1_000_000_000)
    }

    func testAWrongExpectedLastSequenceIsItsOwnErrorAndStoresNothing() throws {
        let js = try openStream()
        try js.publish("app.t", body(1), expectedLastSequence: 0)   // 0: the stream must be empty
        try js.publish("app.t", body(2), expectedLastSequence: 1)
        XCTAssertThrowsError(try js.publish("app.t", body(3), expectedLastSequence: 1)) { error in
            let error = error as? NATSError
            XCTAssertEqual(error?.kind, .wrongLastSequence, "\(String(describing: error))")
            XCTAssertEqual(error?.jetStreamCode, 10071)
            XCTAssertEqual(error?.lastSequence, 2, "the server says where the stream really is")
            XCTAssertEqual(error?.isTransient, false)
        }
        XCTAssertThrowsError(try js.publish("app.t", body(3), expectedLastSequence: 0)) { error in
            XCTAssertEqual((error as? NATSError)?.kind, .wrongLastSequence)
        }
        XCTAssertEqual(try XCTUnwrap(try js.streamInfo("APP")).state.messages, 2)

        // Asynchronously, the mismatch arrives as the ack's error.
        try js.publishAsync("app.t", body(3), expectedLastSequence: 7, tag: 3)
        try js.waitForAsyncAcks(timeoutMilliseconds: 5_000)
        let acks = js.takeAsyncAcks()
        XCTAssertEqual(acks.count, 1)
        guard case .failure(let error) = acks.first?.result else { return XCTFail("expected a failure: \(acks)") }
        XCTAssertEqual(error.kind, .wrongLastSequence)
        XCTAssertEqual(error.lastSequence, 2)
        XCTAssertEqual(acks.first?.tag, 3)
    }

    func testPublishingToASubjectNoStreamCapturesIsNotAcknowledged() throws {
        let js = try openStream()
        XCTAssertThrowsError(try js.publish("elsewhere.t", body(1), timeoutMilliseconds: 500)) { error in
            XCTAssertEqual((error as? NATSError)?.kind, .noResponders, "\(error)")
        }
    }

    func testAsyncPublishesAreAllAcknowledgedInOrderAndReplaysAreDuplicates() throws {
        let js = try openStream()
        let count = 5_000
        var maxInFlight = 0
        for index in 1...count {
            try js.publishAsync("app.t", body(index), messageID: "m-\(index)", tag: UInt64(index))
            maxInFlight = max(maxInFlight, js.pendingAsyncCount)
        }
        try js.waitForAsyncAcks(timeoutMilliseconds: 10_000)
        XCTAssertEqual(js.pendingAsyncCount, 0)
        XCTAssertLessThanOrEqual(maxInFlight, 65, "maxPendingAsync bounds what is in flight")
        let acks = js.takeAsyncAcks()
        XCTAssertEqual(acks.count, count)
        var sequenceByTag: [UInt64: UInt64] = [:]
        for ack in acks {
            guard case .success(let pubAck) = ack.result else { return XCTFail("\(ack)") }
            XCTAssertFalse(pubAck.duplicate)
            XCTAssertEqual(ack.messageID, "m-\(ack.tag)")
            sequenceByTag[ack.tag] = pubAck.sequence
        }
        XCTAssertEqual(sequenceByTag.count, count)
        XCTAssertTrue(sequenceByTag.allSatisfy { $0.key == $0.value }, "one connection: stored in publish order")
        XCTAssertTrue(js.takeAsyncAcks().isEmpty, "taken once")

        // Replaying the last 500 with the same ids inside the duplicate window adds nothing.
        for index in (count - 499)...count {
            try js.publishAsync("app.t", body(index), messageID: "m-\(index)", tag: UInt64(index))
        }
        try js.waitForAsyncAcks(timeoutMilliseconds: 10_000)
        let replays = js.takeAsyncAcks()
        XCTAssertEqual(replays.count, 500)
        for ack in replays {
            guard case .success(let pubAck) = ack.result else { return XCTFail("\(ack)") }
            XCTAssertTrue(pubAck.duplicate, "\(ack)")
            XCTAssertEqual(pubAck.sequence, ack.tag)
        }
        let state = try XCTUnwrap(try js.streamInfo("APP")).state
        XCTAssertEqual(state.messages, UInt64(count))
        XCTAssertEqual(state.lastSequence, UInt64(count))
    }

    func testTheAsyncAckCallbackSeesEveryOutcome() throws {
        let server = try startServer()
        let seen = Counter()
        var options = JetStreamOptions()
        options.onAsyncAck = { ack in if case .success = ack.result { seen.add() } }
        let js = try connect([server.url]).jetStream(options: options)
        try js.addStream(StreamConfig(name: "APP", subjects: ["app.>"]))
        for index in 1...100 { try js.publishAsync("app.t", body(index), tag: UInt64(index)) }
        try js.waitForAsyncAcks(timeoutMilliseconds: 5_000)
        XCTAssertEqual(seen.value, 100)
        XCTAssertEqual(js.takeAsyncAcks().count, 100, "collected as well")
    }
}

/// A count bumped from libnats' thread.
final class Counter: @unchecked Sendable {
    private let lock = NSLock()
    private var count = 0
    func add() { lock.lock(); count += 1; lock.unlock() }
    var value: Int { lock.lock(); defer { lock.unlock() }; return count }
}

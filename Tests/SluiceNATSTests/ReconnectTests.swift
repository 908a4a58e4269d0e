import Foundation
import SluiceNATS
import XCTest

/// The server killed (SIGKILL) and restarted while a client publishes: the client reconnects by
/// itself, and a publish retried with the same message id is stored once.
final class ReconnectTests: NATSTestCase {
    private func jetStream(_ connection: NATSConnection) throws -> JetStream {
        var options = JetStreamOptions()
        options.requestTimeoutMilliseconds = 2_000
        options.maxPendingAsync = 256
        options.stallWaitMilliseconds = 1_000
        options.asyncAckTimeoutMilliseconds = 2_000
        return try connection.jetStream(options: options)
    }

    func testAsyncPublishingThroughAKillAndRestartStoresEveryMessageOnce() throws {
        let server = try startServer()
        let connection = try connect([server.url])
        let js = try jetStream(connection)
        try js.addStream(StreamConfig(name: "APP", subjects: ["app.>"]))   // 2 min duplicate window

        let total: UInt64 = 20_000
        var next: UInt64 = 1
        var retry: [UInt64] = []
        var acked = Set<UInt64>()
        var duplicates = 0, failures = 0
        var killed = false, restarted = false
        let deadline = Date().addingTimeInterval(120)
        while acked.count < Int(total) && Date() < deadline {
            // Retries first, then new messages; stop at the first publish the client refuses.
            var batch = retry.sorted()
            retry.removeAll()
            while next <= total && batch.count < 500 {
                batch.append(next)
                next += 1
            }
            for (position, number) in batch.enumerated() {
                if let error = failure({ () throws(NATSError) in
                    try js.publishAsync("app.t", body(Int(number)), messageID: "m-\(number)", tag: number)
                }) {
                    guard error.isTransient else { throw error }
                    retry += batch[position...]
                    failures += 1
                    break
                }
            }
            if !killed && next > total / 3 {
                server.kill()   // with up to 256 publishes in flight
                killed = true
            } else if killed && !restarted && connection.state == .reconnecting {
                try server.start()
                restarted = true
            }
            try? js.waitForAsyncAcks(timeoutMilliseconds: 50)
            for ack in js.takeAsyncAcks() {
                switch ack.result {
                case .success(let pubAck):
                    if pubAck.duplicate { duplicates += 1 }
                    acked.insert(ack.tag)
                case .failure(let error):
                    XCTAssertTrue(error.isTransient, "\(error)")
                    failures += 1
                    retry.append(ack.tag)
                }
            }
        }
        XCTAssertTrue(killed && restarted)
        XCTAssertEqual(acked.count, Int(total), "every message acknowledged within the deadline")
        XCTAssertEqual(connection.state, .connected)
        let events = connection.events
        XCTAssertGreaterThanOrEqual(events.disconnects, 1)
        XCTAssertGreaterThanOrEqual(events.reconnects, 1)
        XCTAssertNotNil(events.lastError, "why it disconnected")
        print("restart mid-publish: \(failures) failed attempts retried, \(duplicates) duplicates dropped by the server; \(events)")

        try assertEachMessageOnce(js, total: total)
    }

    func testSyncPublishRetriedWithTheSameMessageIDAcrossAKillIsStoredOnce() throws {
        let server = try startServer()
        let connection = try connect([server.url])
        let js = try jetStream(connection)
        try js.addStream(StreamConfig(name: "APP", subjects: ["app.>"]))

        // Another thread kills the server at a moment the publishing thread does not choose, and
        // restarts it once the publisher has seen a failure.
        let progress = PublishProgress()
        let killer = ServerKiller(server: server, progress: progress, killAfter: 1_000)
        let thread = Thread { killer.run() }
        thread.start()

        let total: UInt64 = 3_000
        var retries = 0
        for number in 1...total {
            let deadline = Date().addingTimeInterval(60)
            while let error = failure({ () throws(NATSError) in try js.publish("app.t", body(Int(number)), messageID: "m-\(number)") }) {
                guard error.isTransient && Date() < deadline else { throw error }
                progress.sawFailure()
                retries += 1
                usleep(20_000)
            }
            progress.published(number)
        }
        XCTAssertTrue(killer.waitUntilDone(timeout: 30), "the killer thread restarted the server")
        XCTAssertGreaterThan(retries, 0, "the kill was seen")
        XCTAssertGreaterThanOrEqual(connection.events.reconnects, 1)
        try assertEachMessageOnce(js, total: total)
    }

    /// The stream holds messages 1…total, each message id exactly once.
    private func assertEachMessageOnce(_ js: JetStream, total: UInt64) throws {
        let state = try XCTUnwrap(try js.streamInfo("APP")).state
        XCTAssertEqual(state.messages, total)
        XCTAssertEqual(state.lastSequence, total)
        let reader = try StreamReader(js, stream: "APP", subject: "app.>", startSequence: 1)
        var ids = Set<String>()
        while case let batch = try reader.next(max: 1_000, timeoutMilliseconds: 500), !batch.isEmpty {
            for message in batch {
                let id = try XCTUnwrap(message.headers[NATSHeaders.messageID])
                XCTAssertTrue(ids.insert(id).inserted, "\(id) stored twice")
                XCTAssertEqual(message.data, body(Int(id.dropFirst(2))!))
            }
        }
        XCTAssertEqual(ids.count, Int(total))
    }
}

/// What the publishing thread has done, for the killer thread.
private final class PublishProgress: @unchecked Sendable {
    private let lock = NSLock()
    private var count: UInt64 = 0
    private var failed = false
    func published(_ number: UInt64) { lock.lock(); count = number; lock.unlock() }
    func sawFailure() { lock.lock(); failed = true; lock.unlock() }
    var snapshot: (count: UInt64, failed: Bool) { lock.lock(); defer { lock.unlock() }; return (count, failed) }
}

/// Kills the server once `killAfter` messages are published, restarts it once a failure was seen.
/// Owns the server while it runs; the test reads it again only after `waitUntilDone`.
private final class ServerKiller: @unchecked Sendable {
    let server: NATSServer
    let progress: PublishProgress
    let killAfter: UInt64
    private let done = DispatchSemaphore(value: 0)

    init(server: NATSServer, progress: PublishProgress, killAfter: UInt64) {
        self.server = server
        self.progress = progress
        self.killAfter = killAfter
    }

    func run() {
        defer { done.signal() }
        let deadline = Date().addingTimeInterval(60)
        while progress.snapshot.count < killAfter && Date() < deadline { usleep(1_000) }
        server.kill()
        while !progress.snapshot.failed && Date() < deadline { usleep(1_000) }
        try? server.start()
    }

    func waitUntilDone(timeout: TimeInterval) -> Bool { done.wait(timeout: .now() + timeout) == .success }
}

import Foundation
import SluiceNATS
import XCTest

/// Rates of the hot paths against real servers on this machine, printed (`swift test -c release
/// --filter ThroughputTests` for figures worth quoting; SLUICE_NATS_BENCH_MESSAGES sets the count,
/// SLUICE_NATS_BENCH_PENDING the asynchronous publishes in flight). Each also checks that every
/// message made it, so they are tests too.
final class ThroughputTests: NATSTestCase {
    private var count: Int { Int(ProcessInfo.processInfo.environment["SLUICE_NATS_BENCH_MESSAGES"] ?? "") ?? 20_000 }
    private var maxPending: Int { Int(ProcessInfo.processInfo.environment["SLUICE_NATS_BENCH_PENDING"] ?? "") ?? 1_024 }

    private func jetStream(_ urls: [String]) throws -> JetStream {
        var options = JetStreamOptions()
        options.maxPendingAsync = maxPending
        return try connect(urls).jetStream(options: options)
    }

    /// Publishes `count` messages of `size` bytes asynchronously; returns messages per second.
    private func publishAsync(_ js: JetStream, count: Int, size: Int, first: Int = 1) throws -> Double {
        let payloads = (0..<16).map { body($0, size: size) }
        let began = Date()
        for number in first..<(first + count) {
            try js.publishAsync("app.t", payloads[number % 16], messageID: "m-\(number)", tag: UInt64(number))
        }
        try js.waitForAsyncAcks(timeoutMilliseconds: 60_000)
        let seconds = Date().timeIntervalSince(began)
        let acks = js.takeAsyncAcks()
        XCTAssertEqual(acks.count, count)
        XCTAssertTrue(acks.allSatisfy { if case .success(let ack) = $0.result { !ack.duplicate } else { false } })
        return Double(count) / seconds
    }

    private func report(_ what: String, _ rate: Double, size: Int) {
        print(String(format: "%@: %.0f msg/s, %.1f MB/s", what, rate, rate * Double(size) / 1_000_000))
    }

    func testAsyncAndSyncPublishRatesOfOneKilobyteMessagesWithOneReplica() throws {
        let server = try startServer()
        let js = try jetStream([server.url])
        try js.addStream(StreamConfig(name: "APP", subjects: ["app.>"]))
        let rate = try publishAsync(js, count: count, size: 1_024)
        report("async publish, 1 KB, replicas 1, \(maxPending) in flight", rate, size: 1_024)

        let syncCount = min(count, 5_000)
        let payload = body(0, size: 1_024)
        let began = Date()
        for number in 1...syncCount { try js.publish("app.t", payload, messageID: "s-\(number)") }
        report("sync publish, 1 KB, replicas 1", Double(syncCount) / Date().timeIntervalSince(began), size: 1_024)
        XCTAssertEqual(try js.streamInfo("APP")?.state.messages, UInt64(count + syncCount))
    }

    func testAsyncPublishRateOfOneKilobyteMessagesWithThreeReplicas() throws {
        let cluster = try startCluster()
        let js = try jetStream(cluster.urls)
        var config = StreamConfig(name: "APP", subjects: ["app.>"])
        config.replicas = 3
        try retrying(timeout: 60, "create a stream with 3 replicas") { () throws(NATSError) in try js.addStream(config) }
        let rate = try publishAsync(js, count: count, size: 1_024)
        report("async publish, 1 KB, replicas 3, \(maxPending) in flight", rate, size: 1_024)
        XCTAssertEqual(try js.streamInfo("APP")?.state.messages, UInt64(count))
    }

    func testSequentialReadRates() throws {
        let server = try startServer()
        let js = try jetStream([server.url])
        try js.addStream(StreamConfig(name: "APP", subjects: ["app.>"]))
        _ = try publishAsync(js, count: count, size: 1_024)
        for mode in [StreamReader.Mode.pull(batch: 100), .pull(batch: 1_000), .pull(batch: 4_000), .orderedPush] {
            let began = Date()
            let reader = try StreamReader(js, stream: "APP", subject: "app.>", startSequence: 1, mode: mode)
            var read = 0
            var last: UInt64 = 0
            while read < count {
                let batch = try reader.next(max: 4_000, timeoutMilliseconds: 2_000)
                guard !batch.isEmpty else { break }
                read += batch.count
                last = batch[batch.count - 1].sequence
            }
            XCTAssertEqual(read, count, "\(mode)")
            XCTAssertEqual(last, UInt64(count))
            report("sequential read, 1 KB, \(mode)", Double(read) / Date().timeIntervalSince(began), size: 1_024)
        }
    }
}

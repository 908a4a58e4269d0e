import Foundation
import XCTest

/// The HTTP sink (`type: http`) against a real local HTTP server that fails a seeded 30% of requests
/// with 503, then rejects with 400.
final class HTTPSinkTests: PluginSinkTestCase {
    override var fixtureName: String { "httpsink" }

    static let token = "tok-83a1f-secret"
    let environment = ["SLUICE_TEST_HTTP_TOKEN": HTTPSinkTests.token]

    struct Request {
        var n: Int
        var status: Int
        var path: String
        var headers: [String: String]
        var body: String
        var slow: Bool
        var key: String { headers["idempotency-key"] ?? "" }
    }

    var requestLog: String { directory + "/requests.jsonl" }
    var controlPath: String { directory + "/control" }

    func requests() throws -> [Request] {
        let text = (try? String(contentsOfFile: requestLog, encoding: .utf8)) ?? ""
        return try text.split(separator: "\n").map { line in
            guard let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else {
                throw TestFailure("bad request log line: \(line)")
            }
            return Request(n: object["n"] as? Int ?? 0, status: object["status"] as? Int ?? 0, path: object["path"] as? String ?? "",
                           headers: object["headers"] as? [String: String] ?? [:], body: object["body"] as? String ?? "",
                           slow: object["slow"] as? Bool ?? false)
        }
    }

    /// The transactions of a request body, checking each one's shape.
    func transactions(of request: Request, file: StaticString = #filePath, line: UInt = #line) -> [TopicDump.Transaction] {
        guard let object = try? JSONSerialization.jsonObject(with: Data(request.body.utf8)) as? [String: Any],
              let list = object["transactions"] as? [[String: Any]] else {
            XCTFail("request \(request.n): body is not {\"sink\", \"transactions\": [...]}: \(request.body.prefix(300))",
                    file: file, line: line)
            return []
        }
        XCTAssertEqual(object["sink"] as? String, "hook", "request \(request.n): the sink's name", file: file, line: line)
        return list.compactMap { entry in
            guard let begin = entry["begin"] as? [String: Any], let commit = entry["commit"] as? [String: Any],
                  let changes = entry["changes"] as? [[String: Any]], let xid = begin["xid"] as? Int else {
                XCTFail("request \(request.n): a transaction lacks begin/changes/commit: \(entry)", file: file, line: line)
                return nil
            }
            XCTAssertEqual(entry["topic"] as? String, "app", file: file, line: line)
            XCTAssertEqual(begin["kind"] as? String, "begin", file: file, line: line)
            XCTAssertEqual(commit["kind"] as? String, "commit", file: file, line: line)
            XCTAssertEqual(commit["xid"] as? Int, xid, file: file, line: line)
            XCTAssertEqual(commit["events"] as? Int, changes.count, file: file, line: line)
            XCTAssertEqual(entry["offset"] as? Int, commit["offset"] as? Int, "offset is the commit's", file: file, line: line)
            let offsets = [begin["offset"] as? Int ?? -1] + changes.map { $0["offset"] as? Int ?? -1 } + [commit["offset"] as? Int ?? -1]
            XCTAssertEqual(offsets, offsets.sorted(), "offsets increase within a transaction", file: file, line: line)
            XCTAssertTrue(changes.allSatisfy { $0["kind"] as? String == "change" }, file: file, line: line)
            return TopicDump.Transaction(xid: xid, lsn: begin["lsn"] as? String ?? "", changes: changes)
        }
    }

    func startReceiver() throws -> Int {
        let port = try freePort()
        let output = directory + "/receiver.out"
        _ = try startHelper([pluginPython, pluginFixture("http_receiver.py"), String(port), requestLog, "20260", "0.3",
                             controlPath], output: output)
        try eventually(timeout: 20, "the receiver to listen") {
            ((try? String(contentsOfFile: output, encoding: .utf8)) ?? "").contains("listening")
        }
        return port
    }

    func testDeliveryThroughFailuresWithIdempotencyKeysThenA400FailsTheSink() throws {
        let port = try startReceiver()
        try writeConfig([
            "  - name: hook",
            "    type: http",
            "    url: http://127.0.0.1:\(port)/ingest",
            "    topics: [app]",
            "    headers:",
            "      Authorization: Bearer ${SLUICE_TEST_HTTP_TOKEN}",
            "      X-Sluice-Test: yes",
            "    timeout: 1s",
            "    retry_for: 60s",
            "  - name: files",
            "    type: file",
            "    path: \(directory!)/files",
            "    topics: [app]",
        ])
        var daemon = try startDaemon(environment: environment)
        try waitForSlotActive()
        let workload = PluginWorkload(url: source.url)
        // Paced, so the sink sends many small batches.
        workload.run(1...150, pauseMicros: 20_000)
        XCTAssertNil(workload.error)
        let expected = workload.committed
        XCTAssertEqual(expected.count, 150)

        try eventually(timeout: 90, "the receiver to get every transaction" + logTail) {
            let delivered = Set(try requests().filter { $0.status == 200 }.flatMap { transactions(of: $0) }.map(\.xid))
            return expected.allSatisfy { delivered.contains($0.xid) }
        }
        let status = try waitForCaughtUp(["hook", "files"], environment: environment)
        XCTAssertEqual(status.state(sink: "hook"), "running", status.text)

        let all = try requests()
        let failed = all.filter { $0.status == 503 }
        let succeeded = all.filter { $0.status == 200 }
        print("http sink: \(all.count) requests, \(failed.count) answered 503, \(succeeded.count) answered 200")
        let retriedTwice = Dictionary(grouping: failed, by: \.key).values.filter { $0.count > 1 }.count
        print("http sink: \(retriedTwice) batches failed more than once before delivery")
        XCTAssertGreaterThan(failed.count, 0, "the receiver failed some requests")
        XCTAssertGreaterThan(succeeded.count, 1, "more than one batch")

        // Headers: Authorization with ${VAR} expanded, the other configured header, a key on each.
        for request in all {
            XCTAssertEqual(request.path, "/ingest")
            XCTAssertEqual(request.headers["authorization"], "Bearer \(Self.token)", "request \(request.n)")
            XCTAssertEqual(request.headers["x-sluice-test"], "yes", "request \(request.n)")
            XCTAssertFalse(request.key.isEmpty, "request \(request.n) has an Idempotency-Key")
            XCTAssertTrue(request.headers["content-type"]?.hasPrefix("application/json") ?? false, "request \(request.n)")
        }
        XCTAssertFalse(daemon.log.contains(Self.token), "the token is not logged")

        // Retries: a failed request is retried next with the same key and the same body; one key, one body;
        // different batches, different keys.
        var bodies: [String: String] = [:]
        for request in all {
            if let body = bodies[request.key] {
                XCTAssertEqual(body, request.body, "requests with key \(request.key) carry the same body")
            } else {
                bodies[request.key] = request.body
            }
        }
        XCTAssertEqual(Set(succeeded.map(\.key)).count, succeeded.count, "each delivered batch has its own key")
        for request in failed {
            guard let next = all.first(where: { $0.n == request.n + 1 }) else {
                XCTFail("request \(request.n) (503) was never retried")
                continue
            }
            XCTAssertEqual(next.key, request.key, "request \(next.n) retries request \(request.n) with its Idempotency-Key")
        }
        let delivered = Set(succeeded.map(\.key))
        for key in Set(failed.map(\.key)) {
            XCTAssertTrue(delivered.contains(key), "the batch of key \(key) was delivered after its failures")
        }

        // Every source transaction delivered: the same set (and here, with no crash, once each in order).
        let deliveredTransactions = succeeded.flatMap { transactions(of: $0) }
        XCTAssertEqual(Set(deliveredTransactions.map(\.xid).filter { $0 != 0 }), Set(expected.map(\.xid)),
                       "the delivered transactions are the source's")
        pluginAssertExactlyOnce(deliveredTransactions, expected, logTail)

        // The position after the last 2xx.
        let endOffset = try XCTUnwrap(status.endOffset("app"))
        let positionFile = directory + "/data/sinks/hook/position.json"
        let stored = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: positionFile))) as? [[String: Any]]
        XCTAssertEqual(stored?.first { $0["topic"] as? String == "app" }?["offset"] as? Int, endOffset,
                       "position.json holds the last delivered commit: \(stored ?? [])")
        XCTAssertEqual(status.committedOffset("hook", "app"), endOffset, status.text)

        // SIGKILL the daemon twice while it delivers (503s go on): after restarts every transaction is
        // still delivered at least once, and a key still always stands for the same body.
        let phase2 = workload.start(151...250, pauseMicros: 20_000)
        for _ in 0..<2 {
            usleep(UInt32.random(in: 500_000...1_200_000))
            daemon.kill()
            daemon = try startDaemon(environment: environment)
        }
        phase2.join()
        XCTAssertNil(workload.error)
        let expectedAll = workload.committed
        XCTAssertEqual(expectedAll.count, 250)
        try eventually(timeout: 90, "the receiver to get every transaction after the restarts" + logTail) {
            let delivered = Set(try requests().filter { $0.status == 200 }.flatMap { transactions(of: $0) }.map(\.xid))
            return expectedAll.allSatisfy { delivered.contains($0.xid) }
        }
        let caughtUp = try waitForCaughtUp(["hook", "files"], environment: environment)
        let afterKills = try requests()
        var keyBodies: [String: String] = [:]
        for request in afterKills where request.status == 200 || request.status == 503 {
            if let body = keyBodies[request.key] {
                XCTAssertEqual(body, request.body, "after restarts, requests with key \(request.key) carry the same body")
            } else {
                keyBodies[request.key] = request.body
            }
        }
        let deliveredAll = afterKills.filter { $0.status == 200 }.flatMap { transactions(of: $0) }
        XCTAssertEqual(Set(deliveredAll.map(\.xid).filter { $0 != 0 }), Set(expectedAll.map(\.xid)),
                       "after restarts the delivered transactions are still the source's")
        let duplicates = deliveredAll.count - Set(deliveredAll.map(\.xid)).count
        print("http sink after 2 SIGKILLs: \(afterKills.count) requests, \(duplicates) transactions delivered again (allowed)")
        let newEnd = try XCTUnwrap(caughtUp.endOffset("app"))
        XCTAssertEqual(caughtUp.committedOffset("hook", "app"), newEnd, caughtUp.text)

        // 429 and 408 answers, then the receiver down (connection refused): retried until delivered.
        let receiverOutput = directory + "/receiver.out"
        try "429\n".write(toFile: controlPath, atomically: true, encoding: .utf8)
        workload.run(251...255, pauseMicros: 20_000)
        try eventually(timeout: 20, "a 429 answer") { try requests().contains { $0.status == 429 } }
        try "408\n".write(toFile: controlPath, atomically: true, encoding: .utf8)
        try eventually(timeout: 20, "a 408 answer") { try requests().contains { $0.status == 408 } }
        try FileManager.default.removeItem(atPath: controlPath)
        try eventually(timeout: 30, "the 429/408 batches to be delivered" + logTail) {
            let delivered = Set(try requests().filter { $0.status == 200 }.flatMap { transactions(of: $0) }.map(\.xid))
            return workload.committed.allSatisfy { delivered.contains($0.xid) }
        }
        // A response slower than `timeout: 1s` (the receiver did take the batch): retried with the
        // same key and body, so the receiver can tell it already has it.
        try "slow\n".write(toFile: controlPath, atomically: true, encoding: .utf8)
        workload.run(256...258, pauseMicros: 20_000)
        try eventually(timeout: 30, "a timed-out attempt and its retry" + logTail) {
            let all = try requests()
            return all.contains { slow in slow.slow && all.contains { $0.n > slow.n && $0.key == slow.key } }
        }
        try FileManager.default.removeItem(atPath: controlPath)
        try eventually(timeout: 30, "the batches answered slowly to be delivered" + logTail) {
            let delivered = Set(try requests().filter { $0.status == 200 && !$0.slow }.flatMap { transactions(of: $0) }.map(\.xid))
            return workload.committed.allSatisfy { delivered.contains($0.xid) }
        }
        let withSlow = try requests()
        for slow in withSlow where slow.slow {
            guard let next = withSlow.first(where: { $0.n > slow.n }) else { continue }
            XCTAssertEqual(next.key, slow.key, "request \(next.n) retries timed-out request \(slow.n) with its Idempotency-Key")
            XCTAssertEqual(next.body, slow.body, "request \(next.n) retries timed-out request \(slow.n) with its body")
        }

        let receiver = try XCTUnwrap(helpers.last)
        receiver.kill()
        workload.run(259...268, pauseMicros: 20_000)
        // The sink has met the outage (a refused connection) before the receiver comes back.
        var refused: StatusView?
        try eventually(timeout: 30, "sink hook to retry while the receiver is down: \(refused?.text ?? "-")" + logTail) {
            let status = try sluiceStatus(configPath, environment: environment)
            refused = status
            return status.state(sink: "hook") == "retrying"
        }
        try "".write(toFile: receiverOutput, atomically: true, encoding: .utf8)
        _ = try startHelper([pluginPython, pluginFixture("http_receiver.py"), String(port), requestLog, "20261", "0.3",
                             controlPath], output: receiverOutput)
        try eventually(timeout: 20, "the receiver to listen again") {
            ((try? String(contentsOfFile: receiverOutput, encoding: .utf8)) ?? "").contains("listening")
        }
        XCTAssertNil(workload.error)
        let expectedOutage = workload.committed
        XCTAssertEqual(expectedOutage.count, 268)
        try eventually(timeout: 60, "every transaction delivered after the receiver's outage" + logTail) {
            let delivered = Set(try requests().filter { $0.status == 200 }.flatMap { transactions(of: $0) }.map(\.xid))
            return expectedOutage.allSatisfy { delivered.contains($0.xid) }
        }
        let recovered = try waitForCaughtUp(["hook"], environment: environment)
        XCTAssertEqual(recovered.state(sink: "hook"), "running", recovered.text)
        let outageEnd = try XCTUnwrap(recovered.endOffset("app"))
        XCTAssertEqual(recovered.committedOffset("hook", "app"), outageEnd, recovered.text)
        keyBodies = [:]
        for request in try requests() where request.status != 400 {
            if let body = keyBodies[request.key] {
                XCTAssertEqual(body, request.body, "requests with key \(request.key) carry the same body")
            } else {
                keyBodies[request.key] = request.body
            }
        }

        // A 400 with a body: the sink fails with both in its error; the daemon and the file sink go on.
        try "reject\n".write(toFile: controlPath, atomically: true, encoding: .utf8)
        workload.run(269...278)
        XCTAssertNil(workload.error)
        var last: StatusView?
        try eventually(timeout: 30, "sink hook to fail: \(last?.text ?? "-")" + logTail) {
            let status = try sluiceStatus(configPath, environment: environment)
            last = status
            return status.state(sink: "hook") == "failed"
        }
        let error = last?.error(sink: "hook") ?? ""
        XCTAssertTrue(error.contains("400"), "the status is in the error: \(error)")
        XCTAssertTrue(error.contains("REJECT-MARKER-5521: field amount must be positive"), "the body is in the error: \(error)")
        XCTAssertFalse(error.hasPrefix("sink hook"), "the sink's own status entry does not repeat its name: \(error)")
        XCTAssertFalse(error.contains(Self.token), "the error does not show the token")

        let after = try waitForCaughtUp(["files"], environment: environment)
        XCTAssertTrue(daemon.isRunning, logTail)
        XCTAssertEqual(after.daemonRunning, true, after.text)
        XCTAssertEqual(after.state(sink: "files"), "running", after.text)
        XCTAssertEqual(after.state(sink: "hook"), "failed", after.text)
        XCTAssertEqual(after.committedOffset("hook", "app"), outageEnd, "the rejected batch is not acknowledged")

        // No retry of the 400, over a window bounded by events: the file sink applies a batch committed
        // after hook failed, then the daemon exits; the receiver got nothing after the 400 in between.
        workload.run(279...283)
        XCTAssertNil(workload.error)
        let later = try waitForCaughtUp(["files"], environment: environment)
        XCTAssertGreaterThan(later.committedOffset("files", "app") ?? 0, after.committedOffset("files", "app") ?? 0, later.text)
        XCTAssertEqual(later.state(sink: "hook"), "failed", later.text)
        XCTAssertEqual(daemon.terminate(), 0, logTail)
        let answered = try requests()
        XCTAssertEqual(answered.filter { $0.status == 400 }.count, 1, "a 400 is not retried")
        // (The log is in the order requests came; `n` starts again at 1 with the restarted receiver.)
        XCTAssertEqual(answered.last?.status, 400,
                       "the receiver got nothing after the 400: \(answered.suffix(3).map { ($0.n, $0.status) })")
    }
}

import Foundation
import XCTest

/// The HTTP sink over TLS against a real HTTPS receiver (Python's ssl, certificates made by openssl
/// in the test) that requires a client certificate: a missing file is exit 2 naming its key; a wrong
/// `ca_file` stops the start (exit 2) saying the receiver's certificate is not signed by it; the right
/// CA with `client_cert`/`client_key` delivers every transaction (the receiver saw the client's
/// certificate); an answer whose body never ends is cut at 1 MiB and retried, the daemon's memory
/// bounded; without a client certificate the sink fails saying the receiver requires one.
final class HTTPSinkTLSTests: PluginSinkTestCase {
    override var fixtureName: String { "httpsinktls" }

    var requestLog: String { directory + "/requests.jsonl" }

    func requests() -> [[String: Any]] {
        let text = (try? String(contentsOfFile: requestLog, encoding: .utf8)) ?? ""
        return text.split(separator: "\n").compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
    }

    /// Every workload transaction id in the bodies of the requests answered 200.
    func deliveredXids() -> Set<Int> {
        Set(requests().filter { $0["status"] as? Int == 200 && $0["endless"] as? Bool != true }.flatMap { request -> [Int] in
            guard let body = request["body"] as? String,
                  let object = try? JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any],
                  let transactions = object["transactions"] as? [[String: Any]] else { return [] }
            return transactions.compactMap { ($0["begin"] as? [String: Any])?["xid"] as? Int }
        })
    }

    func testCAFileAndClientCertificates() throws {
        let certificates = try TLSCertificates(directory: directory)
        let port = try freePort()
        let output = directory + "/receiver.out"
        // No failures (rate 0); a client certificate signed by the test CA is required.
        _ = try startHelper([pluginPython, pluginFixture("http_receiver.py"), String(port), requestLog, "1", "0",
                             directory + "/control", certificates.serverCertificate, certificates.serverKey, certificates.caFile],
                            output: output)
        try eventually(timeout: 20, "the receiver to listen") {
            ((try? String(contentsOfFile: output, encoding: .utf8)) ?? "").contains("listening")
        }
        func configure(_ tls: [String]) throws {
            try writeConfig(["  - name: hook", "    type: http", "    url: https://127.0.0.1:\(port)/ingest",
                             "    topics: [app]", "    timeout: 5s"] + tls.map { "    " + $0 })
        }
        let rightTLS = ["ca_file: \(certificates.caFile)", "client_cert: \(certificates.clientCertificate)",
                        "client_key: \(certificates.clientKey)"]

        // A file that is not there: exit 2 before any database, naming the key and the file.
        for (key, tls) in [("ca_file", ["ca_file: \(directory!)/no-such-ca.crt"]),
                           ("client_key", ["ca_file: \(certificates.caFile)", "client_cert: \(certificates.clientCertificate)",
                                           "client_key: \(directory!)/no-such.key"])] {
            try configure(tls)
            let run = try sluice(["run", "--config", configPath], timeout: 30)
            XCTAssertEqual(run.status, 2, "a missing \(key): \(run.describe)")
            XCTAssertTrue(run.all.contains("(hook).\(key)") && run.all.contains("does not exist"), "names \(key): \(run.describe)")
        }

        // The wrong CA: the start stops (exit 2), saying the receiver's certificate is not signed by it.
        try configure(["ca_file: \(certificates.otherCAFile)", "client_cert: \(certificates.clientCertificate)",
                       "client_key: \(certificates.clientKey)"])
        let wrong = try startDaemon()
        XCTAssertEqual(wrong.wait(timeout: 60), 2, "a wrong ca_file is a configuration to fix" + logTail)
        XCTAssertTrue(logTail.contains("is not signed by the CA of ca_file \(certificates.otherCAFile)"),
                      "the error says which CA did not verify the receiver" + logTail)
        XCTAssertTrue(requests().isEmpty, "nothing was posted to an unverified receiver")

        // The right CA and a client certificate: every transaction delivered, the certificate presented.
        try configure(rightTLS)
        let check = try sluice(["check", "--config", configPath])
        XCTAssertTrue(check.all.contains("TLS handshake done, receiver verified against ca_file \(certificates.caFile), client certificate presented"),
                      check.describe)
        var daemon = try startDaemon()
        try waitForSlotActive()
        let workload = PluginWorkload(url: source.url)
        workload.run(1...20, pauseMicros: 10_000)
        XCTAssertNil(workload.error)
        let expected = Set(workload.committed.map(\.xid))
        try eventually(timeout: 60, "the receiver to get every transaction over TLS" + logTail) { expected.isSubset(of: deliveredXids()) }
        _ = try waitForCaughtUp(["hook"])
        let delivered = requests()
        XCTAssertFalse(delivered.isEmpty)
        for request in delivered {
            XCTAssertEqual(request["client"] as? String, "sluice-client", "request \(request["n"] ?? "?") came with the client certificate")
        }

        // An answer whose body does not end: read up to 1 MiB, then retried like a 5xx; memory stays bounded.
        let control = directory + "/control"
        try "endless\n".write(toFile: control, atomically: true, encoding: .utf8)
        workload.run(21...22)
        XCTAssertNil(workload.error)
        var endless: StatusView?
        try eventually(timeout: 60, "the sink to retry an endless answer: \(endless?.text ?? "-")" + logTail) {
            endless = try sluiceStatus(configPath)
            return endless?.state(sink: "hook") == "retrying"
                && endless?.error(sink: "hook")?.contains("the answer's body exceeds 1024 KiB, the limit of what is read") == true
        }
        XCTAssertTrue(requests().contains { $0["endless"] as? Bool == true })
        let rss = try String(contentsOfFile: "/proc/\(daemon.pid)/status", encoding: .utf8).split(separator: "\n")
            .first { $0.hasPrefix("VmRSS:") }.flatMap { Int($0.split(whereSeparator: \.isWhitespace)[1]) } ?? 0
        XCTAssertTrue(rss > 0 && rss < 200 * 1024, "the daemon's resident memory (\(rss) KiB) while answers are endless")
        try FileManager.default.removeItem(atPath: control)
        let withEndless = Set(workload.committed.map(\.xid))
        try eventually(timeout: 60, "the batch to be delivered once answers end" + logTail) { withEndless.isSubset(of: deliveredXids()) }
        XCTAssertEqual(daemon.terminate(), 0, logTail)

        // No client certificate: the receiver refuses the handshake; the sink says what is missing.
        try configure(["ca_file: \(certificates.caFile)"])
        let before = requests().count
        daemon = try startDaemon()
        workload.run(23...27)
        XCTAssertNil(workload.error)
        let fix = "the receiver requires a client certificate: set client_cert and client_key"
        var status: StatusView?
        try eventually(timeout: 60, "the sink to fail for want of a client certificate: \(status?.text ?? "-")" + logTail) {
            // TLS 1.3 refuses a missing certificate after the client's handshake ends: at the first POST
            // (the sink shows failed) or, when the refusal is seen at the start, the start stops (exit 2).
            if !daemon.isRunning { return logTail.contains(fix) }
            status = try sluiceStatus(configPath)
            return status?.state(sink: "hook") == "failed" && status?.error(sink: "hook")?.contains(fix) == true
        }
        XCTAssertEqual(requests().count, before, "the receiver took no request without a client certificate")
        // The stop retries the batch once more: refused again it exits 2 (a configuration to fix); if the
        // receiver only closed the connection that time, it stops at the deadline (0).
        let code = daemon.isRunning ? daemon.terminate() : daemon.wait()
        XCTAssertTrue(code == 2 || code == 0, "exit \(code)" + logTail)
    }
}

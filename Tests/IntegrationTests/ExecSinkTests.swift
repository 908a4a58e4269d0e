import Foundation
import XCTest

/// The exec sink (`type: exec`): a plugin subprocess speaking JSON lines over stdin/stdout. Plugin
/// crashes, malformed output, hangs past `ack_timeout` and fatal errors, each with its outcome.
final class ExecSinkTests: PluginSinkTestCase {
    override var fixtureName: String { "execsink" }

    var outputPath: String { directory + "/transactions.jsonl" }
    var startsPath: String { directory + "/starts.txt" }
    var flagPath: String { directory + "/behave.flag" }
    var helloPath: String { directory + "/hello.jsonl" }

    /// The sink lines of an exec sink running the fixture plugin in `mode`.
    func fixtureSink(_ name: String, mode: String, ackTimeout: String? = nil) -> [String] {
        var lines = [
            "  - name: \(name)",
            "    type: exec",
            "    command: [\(pluginPython), \(pluginFixture("exec_plugin.py"))]",
            "    topics: [app]",
            "    config:",
            "      mode: \(mode)",
            "      path: \(outputPath)",
            "      flag: \(flagPath)",
            "      starts: \(startsPath)",
            "      hello: \(helloPath)",
            "      nested: {retries: 3, tags: [a, b]}",
        ]
        if let ackTimeout { lines.append("    ack_timeout: \(ackTimeout)") }
        return lines
    }

    /// The times (the plugin's clock, seconds) of the fixture plugin's starts by `daemon` (not by
    /// `sluice status`, which starts one to read positions), in order.
    func startTimes(by daemon: SluiceProcess) -> [Double] {
        let text = (try? String(contentsOfFile: startsPath, encoding: .utf8)) ?? ""
        let parent = "\(daemon.pid)"
        return text.split(separator: "\n").compactMap { line -> Double? in
            let fields = line.split(separator: " ").map(String.init)
            return fields.count == 4 && fields[1] == parent ? Double(fields[3]) : nil
        }
    }

    func startsBy(_ daemon: SluiceProcess) -> Int { startTimes(by: daemon).count }

    func readOutput(file: StaticString = #filePath, line: UInt = #line) throws -> TopicDump {
        let text = (try? String(contentsOfFile: outputPath, encoding: .utf8)) ?? ""
        pluginAssertEndsOnCommit(text, outputPath, file: file, line: line)
        return try TopicDump(json: text, file: file, line: line)
    }

    var outputText: String { (try? String(contentsOfFile: outputPath, encoding: .utf8)) ?? "" }

    // MARK: (a) the example plugin, SIGKILLed

    func testKillingTheExamplePluginRepeatedlyWritesEveryTransactionOnce() throws {
        let script = repositoryRoot + "/examples/exec-sink/jsonl_sink.py"
        try writeConfig([
            "  - name: py",
            "    type: exec",
            "    command: [\(pluginPython), \(script)]",
            "    topics: [app]",
            "    config:",
            "      path: \(outputPath)",
        ])
        let workload = PluginWorkload(url: source.url)
        let daemon = try startDaemon()
        try waitForSlotActive()
        let writer = workload.start(1...500, pauseMicros: 10_000)
        defer { writer.join() }

        // Kill the plugin while the workload runs (a killed plugin is restarted at the next batch).
        var kills = 0
        var killsAfterOutput = 0
        var lastSize = 0
        var killed: Set<Int32> = []
        while !workload.isDone {
            var plugin: Int32?
            try eventually(timeout: 30, "the daemon to (re)start the plugin" + logTail) {
                plugin = pluginChildren(of: daemon.pid, commandContaining: "jsonl_sink.py").first { !killed.contains($0) }
                return plugin != nil || workload.isDone
            }
            if plugin == nil { break }
            usleep(UInt32.random(in: 200_000...600_000))
            guard let pid = pluginChildren(of: daemon.pid, commandContaining: "jsonl_sink.py").first(where: { !killed.contains($0) }) else { continue }
            kill(pid, SIGKILL)
            killed.insert(pid)
            kills += 1
            let size = outputText.utf8.count
            if size != lastSize { killsAfterOutput += 1 }
            lastSize = size
            XCTAssertTrue(daemon.isRunning, "sluice keeps running while its plugin is killed" + logTail)
        }
        writer.join()
        XCTAssertNil(workload.error)
        print("exec sink plugin kill loop: \(kills) kills, \(killsAfterOutput) after the plugin wrote; "
              + "\(workload.committed.count) transactions")
        XCTAssertGreaterThanOrEqual(kills, 5)
        XCTAssertGreaterThanOrEqual(killsAfterOutput, 2, "plugins got to write between kills" + logTail)

        let expected = workload.committed
        try eventually(timeout: 90, "the plugin's file to hold every transaction" + logTail) {
            pluginHoldsAll(outputText, xids: expected.suffix(1).map(\.xid))
        }
        var status = try waitForCaughtUp(["py"])
        // The last kill may have been noticed just now: the restarted plugin shows `running` within a
        // second or two (the daemon rewrites its status file every second).
        try eventually(timeout: 15, "sink py to be running: \(status.text)" + logTail) {
            status = try sluiceStatus(configPath)
            return status.state(sink: "py") == "running" && status.caughtUp("py", "app")
        }
        XCTAssertNil(status.error(sink: "py"), status.text)
        let endOffset = try XCTUnwrap(status.endOffset("app"))
        XCTAssertEqual(status.committedOffset("py", "app"), endOffset, status.text)
        XCTAssertEqual(daemon.terminate(), 0, logTail)

        let dump = try readOutput()
        pluginAssertExactlyOnce(dump.transactions, expected, logTail)
        XCTAssertEqual(dump.records.last?["offset"] as? Int, endOffset, "the plugin's last commit is the topic's end")
        XCTAssertTrue(dump.records.allSatisfy { $0["topic"] as? String == "app" }, "exec records name their topic")
    }

    // MARK: (b) malformed output

    func testMalformedPluginOutputPutsTheSinkInRetryingWithTheLine() throws {
        try writeConfig(fixtureSink("bad", mode: "malformed"))
        let daemon = try startDaemon()
        try waitForSlotActive()
        let workload = PluginWorkload(url: source.url)
        workload.run(1...5)
        XCTAssertNil(workload.error)

        var last: StatusView?
        try eventually(timeout: 30, "status to show sink bad retrying with the line: \(last?.text ?? "-")" + logTail) {
            let status = try sluiceStatus(configPath)
            last = status
            guard status.state(sink: "bad") == "retrying", let error = status.error(sink: "bad") else { return false }
            // The status entry is the sink's own: its reason need not repeat the name.
            return !error.hasPrefix("sink bad") && error.contains("MALFORMED-MARKER-7731")
        }
        let error = last?.error(sink: "bad") ?? ""
        XCTAssertTrue(error.contains("this is not the exec protocol: MALFORMED-MARKER-7731"), "the line is quoted: \(error)")
        XCTAssertTrue(daemon.isRunning, logTail)
        XCTAssertEqual(last?.daemonRunning, true)
        XCTAssertNil(last?.committedOffset("bad", "app"), "nothing was acknowledged")
        try eventually(timeout: 15, "the plugin to be restarted" + logTail) { startsBy(daemon) >= 2 }
        XCTAssertTrue(daemon.log.contains("fixture plugin started in mode malformed"), "plugin log lines are relayed" + logTail)
        XCTAssertEqual(daemon.terminate(), 0, logTail)
    }

    /// "Restarted with backoff": a plugin that fails every batch is not restarted in a tight loop;
    /// the pauses grow (0.2 s doubling to 10 s) as for every other retried connector.
    func testAPluginFailingEveryBatchIsRestartedWithGrowingBackoff() throws {
        try writeConfig(fixtureSink("bad", mode: "malformed"))
        let daemon = try startDaemon()
        try waitForSlotActive()
        let workload = PluginWorkload(url: source.url)
        workload.run(1...5)
        XCTAssertNil(workload.error)
        try eventually(timeout: 30, "the plugin to be started" + logTail) { startsBy(daemon) >= 1 }
        // The window is measured by the plugin's own start times: the 5 s after its first start are over
        // once a start is later than that (and at least four starts are in, to compare pauses).
        var times: [Double] = []
        try eventually(timeout: 60, "a plugin start more than 5 s after the first; starts at \(times)" + logTail) {
            times = startTimes(by: daemon)
            return times.count >= 4 && times.last! > times[0] + 5
        }
        let restarts = times.filter { $0 > times[0] && $0 <= times[0] + 5 }.count
        let pauses = zip(times, times.dropFirst()).map { String(format: "%.2f", $1 - $0) }
        // With 0.2 s doubling pauses (jittered down to half: 0.1, 0.2, 0.4, 0.8, 1.6, 3.2 s), 5 s hold at most 6.
        print("malformed plugin restarted \(restarts) times in 5 s; pauses between starts: \(pauses)")
        XCTAssertLessThanOrEqual(restarts, 7, "a plugin that fails every batch is restarted with growing backoff, "
                                 + "not \(restarts) times in 5 s (pauses \(pauses))" + logTail)
        XCTAssertGreaterThanOrEqual(restarts, 2, "the plugin is restarted" + logTail)
        // The first pause may include waiting for the first batch; from the second on they grow.
        let gaps = zip(times, times.dropFirst()).map { $1 - $0 }
        XCTAssertGreaterThan(gaps.last!, gaps[1], "the pauses between restarts grow: \(pauses)" + logTail)
        XCTAssertEqual(daemon.terminate(), 0, logTail)
    }

    // MARK: (c) hang past ack_timeout, then recovery

    func testAPluginHangingOnFlushTimesOutAndRecoversOnceItBehaves() throws {
        try writeConfig(fixtureSink("slow", mode: "hang", ackTimeout: "2s"))
        let daemon = try startDaemon()
        try waitForSlotActive()
        let workload = PluginWorkload(url: source.url)
        workload.run(1...20)
        XCTAssertNil(workload.error)

        var last: StatusView?
        var seen: [String] = []
        try eventually(timeout: 60, "status to show sink slow retrying with a timeout; saw \(seen.suffix(10))" + logTail) {
            let status = try sluiceStatus(configPath)
            last = status
            seen.append("\(status.state(sink: "slow") ?? "-"): \(status.error(sink: "slow") ?? "-")")
            guard status.state(sink: "slow") == "retrying", let error = status.error(sink: "slow") else { return false }
            return !error.hasPrefix("sink slow") && (error.contains("within 2 s") || error.lowercased().contains("timeout")
                                                   || error.lowercased().contains("timed out"))
        }
        print("hanging plugin, status states seen: \(seen)")
        XCTAssertNil(last?.committedOffset("slow", "app"), "nothing was acknowledged")
        XCTAssertTrue(daemon.isRunning, logTail)
        XCTAssertFalse(FileManager.default.fileExists(atPath: outputPath) && !outputText.isEmpty, "nothing written yet")

        // Swap the plugin's behaviour: from its next start it writes and acknowledges.
        XCTAssertTrue(FileManager.default.createFile(atPath: flagPath, contents: Data("behave\n".utf8)))
        workload.run(21...40)
        XCTAssertNil(workload.error)
        let expected = workload.committed
        try eventually(timeout: 60, "the recovered plugin to write every transaction" + logTail) {
            pluginHoldsAll(outputText, xids: expected.suffix(1).map(\.xid))
        }
        let status = try waitForCaughtUp(["slow"])
        XCTAssertEqual(status.state(sink: "slow"), "running", status.text)
        XCTAssertNil(status.error(sink: "slow"), status.text)
        XCTAssertTrue(daemon.log.contains("recovered"), "the recovery is logged" + logTail)
        XCTAssertEqual(daemon.terminate(), 0, logTail)
        pluginAssertExactlyOnce(try readOutput().transactions, expected, logTail)
    }

    /// While every batch times out, the sink has applied nothing: `status` must keep showing it
    /// `retrying` with the timeout, not `running` between attempts.
    func testAPluginThatKeepsTimingOutIsShownRetryingBetweenAttempts() throws {
        try writeConfig(fixtureSink("slow", mode: "hang", ackTimeout: "1s"))
        let daemon = try startDaemon()
        try waitForSlotActive()
        let workload = PluginWorkload(url: source.url)
        workload.run(1...5)
        XCTAssertNil(workload.error)
        try eventually(timeout: 30, "the first ack timeout" + logTail) { daemon.log.contains("no answer from the plugin within 1 s") }
        func sample() throws -> String {
            let status = try sluiceStatus(configPath)
            return "\(status.state(sink: "slow") ?? "-"): \(status.error(sink: "slow") ?? "-")"
        }
        var first = ""
        try eventually(timeout: 15, "status to show the first timeout (last: \(first))" + logTail) {
            first = try sample()
            return first.hasPrefix("retrying: no answer from the plugin")
        }
        // Sampled over three more attempts, each a plugin start, an ack timeout and a pause.
        var samples = [first]
        let startsBefore = startsBy(daemon)
        let deadline = Date().addingTimeInterval(60)
        while startsBy(daemon) < startsBefore + 3 {
            guard Date() < deadline else {
                XCTFail("the plugin was not restarted 3 times within 60 s: \(startsBy(daemon) - startsBefore) restarts" + logTail)
                break
            }
            samples.append(try sample())
            usleep(200_000)
        }
        let retrying = samples.filter { $0.hasPrefix("retrying: no answer from the plugin") }.count
        print("status of a sink whose plugin never acks, \(samples.count) samples: \(samples)")
        XCTAssertEqual(retrying, samples.count, "every status sample shows the sink retrying with its timeout; got "
                       + "\(samples.count - retrying) of \(samples.count) otherwise: \(samples)")
        XCTAssertEqual(daemon.terminate(), 0, logTail)
    }

    /// A plugin that stops reading its input while a large batch (several MB) is being sent is a hang
    /// too: it must be detected after `ack_timeout`, not after some longer built-in limit.
    func testAPluginThatStopsReadingMidBatchTimesOutAfterAckTimeout() throws {
        try writeConfig(fixtureSink("stall", mode: "stall", ackTimeout: "2s"))
        let daemon = try startDaemon()
        try waitForSlotActive()
        // Until the big batch, every (small) batch times out and the plugin is restarted.
        try eventually(timeout: 20, "the first ack timeout" + logTail) { daemon.log.contains("sink stall is retrying") }
        // One transaction of 5000 rows of ~500 bytes: a batch of ~3 MB, far beyond a pipe's buffer.
        try source.query("INSERT INTO orders SELECT g, g, repeat('x', 500) FROM generate_series(1, 5000) g")
        let before = startsBy(daemon)
        // Sending that batch blocks once the pipe is full: the wait must give up after ack_timeout, and the
        // plugin be restarted again and again as before (each attempt: 2 s, then a pause of at most 10 s).
        try eventually(timeout: 40, "the plugin to be restarted twice more once the big batch is sent, "
                       + "after \(before) starts before it" + logTail) { startsBy(daemon) >= before + 2 }
        let status = try sluiceStatus(configPath)
        XCTAssertEqual(status.state(sink: "stall"), "retrying", status.text)
        XCTAssertTrue(status.error(sink: "stall")?.contains("2 s") ?? false,
                      "the error names the 2 s ack_timeout: \(status.text)")
        XCTAssertTrue(daemon.isRunning, logTail)
        // SIGTERM stops the daemon gracefully even though this plugin never reads again.
        daemon.signal(SIGTERM)
        let exit = daemon.wait(timeout: 15)
        XCTAssertNotNil(exit, "SIGTERM stops the daemon within 15 s although its plugin stopped reading" + logTail)
        if let exit { XCTAssertEqual(exit, 0, logTail) } else { daemon.kill() }
    }

    // MARK: (d) a fatal plugin error

    func testAFatalPluginErrorFailsThatSinkAloneWhileTheRestGoesOn() throws {
        try writeConfig(fixtureSink("strict", mode: "fatal") + [
            "  - name: files",
            "    type: file",
            "    path: \(directory!)/files",
            "    topics: [app]",
        ])
        let daemon = try startDaemon()
        try waitForSlotActive()
        let workload = PluginWorkload(url: source.url)
        workload.run(1...30)
        XCTAssertNil(workload.error)

        var last: StatusView?
        try eventually(timeout: 30, "status to show sink strict failed: \(last?.text ?? "-")" + logTail) {
            let status = try sluiceStatus(configPath)
            last = status
            return status.state(sink: "strict") == "failed"
        }
        let error = last?.error(sink: "strict") ?? ""
        XCTAssertFalse(error.hasPrefix("sink strict"), "the sink's own status entry does not repeat its name: \(error)")
        XCTAssertTrue(error.contains("FATAL-MARKER-4410: the target rejected column amount"), "the plugin's message: \(error)")
        let startsWhenFailed = startsBy(daemon)

        // The handshake the plugin got: protocol 1, the sink's name and its `config:` as JSON.
        let hello = try XCTUnwrap(try String(contentsOfFile: helloPath, encoding: .utf8).split(separator: "\n").first)
        let message = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(hello.utf8)) as? [String: Any])
        XCTAssertEqual(message["kind"] as? String, "hello", "\(hello)")
        XCTAssertEqual(message["protocol"] as? Int, 1, "\(hello)")
        XCTAssertEqual(message["sink"] as? String, "strict", "\(hello)")
        let config = message["config"] as? [String: Any]
        XCTAssertEqual(config?["mode"] as? String, "fatal", "\(hello)")
        XCTAssertEqual(config?["path"] as? String, outputPath, "\(hello)")
        let nested = config?["nested"] as? [String: Any]
        XCTAssertNotNil(nested?["retries"], "nested config maps arrive: \(hello)")
        XCTAssertEqual((nested?["tags"] as? [Any])?.count, 2, "nested config lists arrive: \(hello)")

        // The daemon and the other sink go on.
        workload.run(31...60)
        XCTAssertNil(workload.error)
        let status = try waitForCaughtUp(["files"])
        XCTAssertTrue(daemon.isRunning, logTail)
        XCTAssertEqual(status.daemonRunning, true, status.text)
        XCTAssertEqual(status.state(sink: "files"), "running", status.text)
        XCTAssertEqual(status.state(sink: "strict"), "failed", status.text)
        XCTAssertNil(status.committedOffset("strict", "app"), status.text)
        XCTAssertEqual(startsBy(daemon), startsWhenFailed, "a failed sink's plugin is not started again" + logTail)
        let files = pluginTopicText(directory + "/files", topic: "app")
        pluginAssertExactlyOnce(try TopicDump(json: files).transactions, workload.committed, logTail)
        XCTAssertEqual(daemon.terminate(), 0, logTail)
    }
}

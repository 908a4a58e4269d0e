import Foundation
import XCTest

/// `type: exec` sources: examples/exec-source/jsonl_source.py follows a JSON-lines file into a topic,
/// and an SQLite sink applies it. Positions are the plugin's and live in the topic, so SIGKILLs of the
/// daemon and of the plugin leave every line in the target exactly once.
final class ExecSourceTests: DaemonTestCase {
    override var fixtureName: String { "execsource" }
    override var startsSourceCluster: Bool { false }

    var nats: NATSNode?

    override func tearDown() {
        super.tearDown()  // the daemons first, so none reconnects to a server about to go
        nats?.kill()
    }

    var inputPath: String { directory + "/incoming.jsonl" }
    var sqlitePath: String { directory + "/replica.db" }

    override func setUpWithError() throws {
        try super.setUpWithError()
        try """
            data_dir: \(dataDirectory)
            sources:
              - name: feed
                type: exec
                command: [\(pluginPython), \(repositoryRoot)/examples/exec-source/jsonl_source.py]
                config:
                  path: \(inputPath)
                  table: public.events
                  columns: [{name: id, type: bigint, key: true}, {name: body, type: text}, {name: tags, type: "text[]"}]
            sinks:
              - name: local
                type: sqlite
                path: \(sqlitePath)
                topics: [feed]
            """.write(toFile: configPath, atomically: true, encoding: .utf8)
        XCTAssertTrue(FileManager.default.createFile(atPath: inputPath, contents: nil), inputPath)
    }

    func appendLines(_ ids: ClosedRange<Int>) throws { try Self.append(ids, to: inputPath) }

    static func append(_ ids: ClosedRange<Int>, to inputPath: String) throws {
        let handle = try XCTUnwrap(FileHandle(forWritingAtPath: inputPath))
        defer { try? handle.close() }
        try handle.seekToEnd()
        for id in ids {
            // One write per line: the plugin may read between lines but never sees half of one.
            try handle.write(contentsOf: Data("{\"id\": \(id), \"body\": \"row \(id) \\u00e9\", \"tags\": [\"a\", \"b \(id)\"]}\n".utf8))
        }
    }

    func targetRows() -> [String] {
        (try? sqliteRows(path: sqlitePath, table: "events", columns: ["id", "body", "tags"])) ?? []
    }

    func testKillingTheDaemonAndThePluginLeavesEveryLineOnceInTheTarget() throws {
        try appendLines(1...50)
        var daemon = try startDaemon()
        try eventually(timeout: 60, "the first lines to reach SQLite" + logTail) { targetRows().count >= 50 }

        // Lines keep arriving while the daemon is killed at random moments (and once only its plugin).
        let total = 1_500
        let path = inputPath
        let appender = Thread {
            for first in stride(from: 51, through: total, by: 10) {
                try? Self.append(first...min(first + 9, total), to: path)
                usleep(15_000)
            }
        }
        appender.start()
        var kills = 0
        var killsWhileApplying = 0
        var lastCount = targetRows().count
        while kills < 6 || targetRows().count < 200 {
            usleep(UInt32.random(in: 100_000...400_000))
            if kills == 2 {
                // The plugin alone: the daemon restarts it and resumes from the topic's last position.
                var plugins: [Int32] = []
                try eventually(timeout: 30, "the plugin to run under the daemon" + logTail) {
                    plugins = pluginChildren(of: daemon.pid, commandContaining: "jsonl_source.py")
                    return !plugins.isEmpty
                }
                for pid in plugins { kill(pid, SIGKILL) }
            } else {
                daemon.kill()
                daemon = try startDaemon()
            }
            kills += 1
            let count = targetRows().count
            if count != lastCount { killsWhileApplying += 1 }
            lastCount = count
        }
        print("exec source crash loop: \(kills) kills, \(killsWhileApplying) while rows were arriving")
        XCTAssertGreaterThanOrEqual(killsWhileApplying, 2, "kills landed while the pipeline was moving" + logTail)
        let expected = (1...total).map { "'\($0)' | 'row \($0) é' | '{a,\"b \($0)\"}'" }.sorted()
        try eventually(timeout: 60, "all \(total) lines to reach SQLite, have \(targetRows().count)" + logTail) {
            targetRows().count >= total
        }
        XCTAssertEqual(daemon.terminate(), 0, logTail)
        let rows = targetRows()
        XCTAssertNil(rowsDifference(expected: expected, actual: rows), "every line once, values intact" + logTail)

        // The topic holds each line as one transaction, exactly once, positions in order.
        let tail = try sluice(["tail", "feed", "--config", configPath, "--from-beginning", "--json"])
        XCTAssertEqual(tail.status, 0, tail.all)
        let commits = tail.out.split(separator: "\n").filter { $0.contains("\"kind\":\"commit\"") }
        XCTAssertEqual(commits.count, total, "one transaction per line in the topic")
    }

    /// A plugin that ignores `hello`'s position and sends everything again on each start: Sluice drops
    /// what the topic holds already. Updates (one leaving a column out) and deletes by key go through.
    func testTransactionsSentAgainAfterARestartAreDropped() throws {
        let script = directory + "/resending_source.py"
        try """
            import json, sys
            def send(m):
                sys.stdout.write(json.dumps(m) + "\\n"); sys.stdout.flush()
            hello = json.loads(sys.stdin.readline())
            with open(sys.argv[1], "a") as f:
                f.write("%s\\n" % hello["position"])
            send({"kind": "ready", "protocol": 1})
            send({"kind": "relation", "table": "public.items", "columns": [
                {"name": "id", "type": "integer", "key": True}, {"name": "label", "type": "text"},
                {"name": "done", "type": "boolean"}, {"name": "meta", "type": "jsonb"}]})
            position = 0
            def tx(*changes):
                global position
                position += 10
                send({"kind": "begin", "position": position, "commit_time": "2026-11-29T10:00:00.000001Z"})
                for c in changes:
                    send(dict(kind="change", table="public.items", **c))
                send({"kind": "commit"})
            for i in range(1, 51):
                tx({"op": "insert", "after": {"id": i, "label": "item %d" % i, "done": False, "meta": {"n": i}}})
            for i in range(1, 11):
                tx({"op": "update", "after": {"id": i, "done": True}})
            tx(*[{"op": "delete", "before": {"id": i}} for i in range(11, 21)])
            tx({"op": "update", "before": {"id": 21}, "after": {"id": 121, "label": "moved", "done": True, "meta": None}})
            send({"kind": "log", "message": "RESENT-ALL-7316"})
            for line in sys.stdin:
                if json.loads(line)["kind"] == "shutdown":
                    break
            """.write(toFile: script, atomically: true, encoding: .utf8)
        let hellos = directory + "/hellos.txt"
        try """
            data_dir: \(dataDirectory)
            sources:
              - {name: items, type: exec, command: [\(pluginPython), \(script), \(hellos)]}
            sinks:
              - {name: local, type: sqlite, path: \(sqlitePath), topics: [items]}
            """.write(toFile: configPath, atomically: true, encoding: .utf8)
        func rows() -> [String] { (try? sqliteRows(path: sqlitePath, table: "items", columns: ["id", "label", "done", "meta"])) ?? [] }
        var expected = (1...50).filter { !(11...20).contains($0) && $0 != 21 }.map { id in
            "'\(id)' | 'item \(id)' | '\(id <= 10 ? 1 : 0)' | '{\"n\": \(id)}'"
        }
        expected.append("'121' | 'moved' | '1' | NULL")
        expected.sort()
        func starts() -> Int { ((try? String(contentsOfFile: hellos, encoding: .utf8)) ?? "").split(separator: "\n").count }
        for round in 1...3 {
            let daemon = try startDaemon()
            try eventually(timeout: 30, "round \(round): the plugin to start" + logTail) { starts() == round }
            // The plugin's log line after its last transaction reaches the daemon's log only once the
            // daemon has read (and dropped or written) everything the plugin sent before it.
            try eventually(timeout: 30, "round \(round): the daemon to take in everything the plugin sent" + logTail) {
                daemon.log.components(separatedBy: "RESENT-ALL-7316").count - 1 == round
            }
            try eventually(timeout: 30, "round \(round): the target to hold every change; has \(rows())" + logTail) {
                rowsDifference(expected: expected, actual: rows()) == nil
            }
            if round < 3 { daemon.kill() } else { XCTAssertEqual(daemon.terminate(), 0, logTail) }
        }
        let positions = try String(contentsOfFile: hellos, encoding: .utf8).split(separator: "\n")
        XCTAssertEqual(positions.first, "None", "the first start has no position")
        XCTAssertEqual(positions.last, "620", "later starts are told the last stored position")
        let tail = try sluice(["tail", "items", "--config", configPath, "--from-beginning", "--json"])
        XCTAssertEqual(tail.status, 0, tail.all)
        let commits = tail.out.split(separator: "\n").filter { $0.contains("\"kind\":\"commit\"") }
        XCTAssertEqual(commits.count, 62, "each transaction once in the topic although sent three times")
    }

    func testAPluginWritingGarbageIsRetriedAndNamedInStatus() throws {
        let script = directory + "/bad_source.sh"
        try "#!/bin/sh\nread hello\necho '{\"kind\":\"ready\",\"protocol\":1}'\necho 'GARBAGE-LINE-5521'\nsleep 30\n"
            .write(toFile: script, atomically: true, encoding: .utf8)
        chmod(script, 0o755)
        try """
            data_dir: \(dataDirectory)
            sources:
              - {name: bad, type: exec, command: [\(script)]}
            sinks:
              - {name: local, type: sqlite, path: \(sqlitePath), topics: [bad]}
            """.write(toFile: configPath, atomically: true, encoding: .utf8)
        let daemon = try startDaemon()
        try eventually(timeout: 30, "the bad line in the log" + logTail) {
            daemon.log.contains("source bad is retrying") && daemon.log.contains("GARBAGE-LINE-5521")
        }
        let status = try sluice(["status", "--config", configPath, "--json"])
        XCTAssertEqual(status.status, 0, status.all)
        XCTAssertTrue(status.out.contains("GARBAGE-LINE-5521"), "status names the line: \(status.out)")
        XCTAssertTrue(daemon.isRunning, "a misbehaving plugin is retried, not fatal" + logTail)
        XCTAssertEqual(daemon.terminate(), 0, logTail)
    }

    /// The topic's nats-server stopped under an idle exec source: the source says so without appending,
    /// stays `retrying` through its restarts (a plugin's `ready` is not a recovery while the broker
    /// refuses the commits), and recovers once the commits it held are stored.
    func testAJetStreamOutageIsNotReportedAsRecoveredUntilCommitsAreStored() throws {
        try skipUnlessNATSServerIsInstalled()
        let node = try NATSNode(name: "n1", directory: directory)
        nats = node
        try node.start()
        let port = try freePort()
        var config = try String(contentsOfFile: configPath, encoding: .utf8)
        config = "metrics: {listen: \"127.0.0.1:\(port)\"}\ntopics: {backend: jetstream, servers: [\(node.url)], replicas: 1}\n" + config
        try config.write(toFile: configPath, atomically: true, encoding: .utf8)
        try appendLines(1...5)
        let daemon = try startDaemon()
        try eventually(timeout: 60, "the first lines to reach SQLite" + logTail) { targetRows().count == 5 }

        node.kill()
        try appendLines(6...10)
        try eventually(timeout: 30, "the source to report the outage while idle" + logTail) {
            try sluiceStatus(configPath).source("feed")?["state"] as? String == "retrying"
        }
        try eventually(timeout: 60, "the source to retry three times" + logTail) {
            let metrics = opsParseMetrics(try opsHTTPGet(port: port, path: "/metrics").body)
            return opsMetric(metrics, "sluice_source_retries_total", ["source": "feed"]) ?? 0 >= 3
        }
        XCTAssertFalse(daemon.log.contains("source feed recovered"), "not running while no commit can be stored" + logTail)
        XCTAssertEqual(try sluiceStatus(configPath).source("feed")?["state"] as? String, "retrying")

        try node.start()
        try eventually(timeout: 60, "the lines written during the outage to reach SQLite" + logTail) { targetRows().count == 10 }
        try eventually(timeout: 30, "the source to recover" + logTail) { daemon.log.contains("source feed recovered") }
        XCTAssertEqual(daemon.terminate(), 0, logTail)
        XCTAssertNil(rowsDifference(expected: (1...10).map { "'\($0)' | 'row \($0) é' | '{a,\"b \($0)\"}'" }.sorted(),
                                    actual: targetRows()), "every line once" + logTail)
    }

    func testBackfillingAnExecSourceExits2SayingWhy() throws {
        let result = try sluice(["backfill", "--config", configPath])
        XCTAssertEqual(result.status, 2, result.describe)
        XCTAssertTrue(result.err.contains("source feed (type exec) cannot backfill: its connector cannot copy a table's current rows"),
                      result.describe)
        XCTAssertTrue(result.err.contains("No source in \(configPath) can"), result.describe)
    }
}

import Foundation
import XCTest

/// `sluice tail --follow` on a JetStream topic whose servers cannot be reached: it says so once on
/// stderr, naming the servers, keeps trying, and prints the topic's transactions once a server answers
/// and a source writes them. The topic is written by an exec source (no PostgreSQL needed).
final class TailFollowOutageTests: DaemonTestCase {
    override var fixtureName: String { "tailoutage" }
    override var startsSourceCluster: Bool { false }
    var nats: NATSNode?

    override func setUpWithError() throws {
        try skipUnlessNATSServerIsInstalled()
        try super.setUpWithError()
    }

    override func tearDown() {
        super.tearDown()
        nats?.kill()
    }

    func testFollowSaysOnceThatTheServersCannotBeReachedAndPrintsOnceTheyAnswer() throws {
        let node = try NATSNode(name: "n1", directory: directory)
        nats = node
        let script = directory + "/three_source.py"
        try """
            import json, sys
            def send(m):
                sys.stdout.write(json.dumps(m) + "\\n"); sys.stdout.flush()
            sys.stdin.readline()
            send({"kind": "ready", "protocol": 1})
            send({"kind": "relation", "table": "public.items", "columns": [{"name": "id", "type": "integer", "key": True}]})
            for i in range(1, 4):
                send({"kind": "begin", "position": i * 10})
                send({"kind": "change", "table": "public.items", "op": "insert", "after": {"id": 7700 + i}})
                send({"kind": "commit"})
            for line in sys.stdin:
                if json.loads(line)["kind"] == "shutdown":
                    break
            """.write(toFile: script, atomically: true, encoding: .utf8)
        try """
            data_dir: \(dataDirectory)
            topics: {backend: jetstream, servers: [\(node.url)], replicas: 1}
            sources:
              - {name: items, type: exec, command: [\(pluginPython), \(script)]}
            """.write(toFile: configPath, atomically: true, encoding: .utf8)

        // The server is not started yet: nothing listens on its port.
        let outPath = directory + "/tail.out", errPath = directory + "/tail.err"
        let follower = try SluiceProcess(program: sluiceBinary, ["tail", "items", "--config", configPath, "--follow"],
                                         logPath: outPath, errorPath: errPath)
        defer { follower.kill() }
        func read(_ path: String) -> String { (try? String(contentsOfFile: path, encoding: .utf8)) ?? "" }
        let unreachable = "topic items: cannot read JetStream at \(node.url)"
        try eventually(timeout: 30, "tail --follow to say it cannot reach \(node.url): \(read(errPath))") {
            read(errPath).contains(unreachable) || !follower.isRunning
        }
        XCTAssertTrue(follower.isRunning, "tail --follow keeps trying (exit \(follower.status.map(String.init) ?? "-")): \(read(errPath))")
        XCTAssertTrue(read(errPath).contains("keeps trying"), read(errPath))
        // It retries every second; three more seconds are three more failures, said only once.
        let firstSaid = Date()
        try eventually(timeout: 10, "three seconds to pass") { Date().timeIntervalSince(firstSaid) >= 3 }
        XCTAssertEqual(read(errPath).components(separatedBy: unreachable).count - 1, 1, "said once: \(read(errPath))")
        XCTAssertTrue(follower.isRunning, read(errPath))

        try node.start()
        try eventually(timeout: 30, "tail --follow to notice the server answers: \(read(errPath))") {
            read(errPath).contains("JetStream at \(node.url) answers again")
        }
        let daemon = try startDaemon()
        try eventually(timeout: 60, "the three transactions to reach tail --follow: \(read(outPath)) \(read(errPath))" + logTail) {
            (7701...7703).allSatisfy { read(outPath).contains(String($0)) }
                && read(outPath).components(separatedBy: "\tCOMMIT\t").count - 1 == 3
        }
        XCTAssertTrue(follower.isRunning, read(errPath))
        XCTAssertEqual(read(errPath).components(separatedBy: unreachable).count - 1, 1, "still said once: \(read(errPath))")

        // The server goes away while tail follows a quiet topic: said again (once), then that it answers.
        node.kill()
        try eventually(timeout: 30, "tail --follow to say the server went away: \(read(errPath))") {
            read(errPath).components(separatedBy: unreachable).count - 1 == 2 || !follower.isRunning
        }
        XCTAssertTrue(follower.isRunning, read(errPath))
        try node.start()
        try eventually(timeout: 30, "tail --follow to say the server answers again: \(read(errPath))") {
            read(errPath).components(separatedBy: "answers again").count - 1 == 2
        }
        XCTAssertEqual(read(errPath).components(separatedBy: unreachable).count - 1, 2, read(errPath))
        XCTAssertTrue(follower.isRunning, read(errPath))
        XCTAssertEqual(daemon.terminate(), 0, logTail)
    }
}

import Foundation
import XCTest

/// `sluice tail -n`: a count of transactions, the last ones, or the first ones with `--from-beginning`
/// (like head(1)); a bad count is a usage error naming `-n`. The topic is written by an exec source
/// (no PostgreSQL needed): five transactions at positions 10..50, one row each.
final class TailCountTests: DaemonTestCase {
    override var fixtureName: String { "tailcount" }
    override var startsSourceCluster: Bool { false }

    func testCountsTransactionsFromEitherEndAndRejectsBadCounts() throws {
        let script = directory + "/five_source.py"
        try """
            import json, sys
            def send(m):
                sys.stdout.write(json.dumps(m) + "\\n"); sys.stdout.flush()
            sys.stdin.readline()
            send({"kind": "ready", "protocol": 1})
            send({"kind": "relation", "table": "public.items", "columns": [{"name": "id", "type": "integer", "key": True}]})
            for i in range(1, 6):
                send({"kind": "begin", "position": i * 10})
                send({"kind": "change", "table": "public.items", "op": "insert", "after": {"id": i}})
                send({"kind": "commit"})
            send({"kind": "log", "message": "SENT-FIVE-4410"})
            for line in sys.stdin:
                if json.loads(line)["kind"] == "shutdown":
                    break
            """.write(toFile: script, atomically: true, encoding: .utf8)
        try """
            data_dir: \(dataDirectory)
            sources:
              - {name: items, type: exec, command: [\(pluginPython), \(script)]}
            """.write(toFile: configPath, atomically: true, encoding: .utf8)
        let daemon = try startDaemon()
        try eventually(timeout: 30, "the daemon to take in the five transactions" + logTail) { daemon.log.contains("SENT-FIVE-4410") }
        XCTAssertEqual(daemon.terminate(), 0, logTail)

        func ids(_ arguments: [String]) throws -> [Int] {
            let result = try sluice(["tail", "items", "--config", configPath, "--json"] + arguments)
            XCTAssertEqual(result.status, 0, result.describe)
            let lines = result.out.split(separator: "\n")
            XCTAssertEqual(lines.filter { $0.contains("\"kind\":\"begin\"") }.count,
                           lines.filter { $0.contains("\"kind\":\"commit\"") }.count, "whole transactions: \(result.out)")
            return try lines.compactMap { line in
                let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
                return (object?["after"] as? [String: Any])?["id"] as? Int
            }
        }
        XCTAssertEqual(try ids([]), [1, 2, 3, 4, 5])
        XCTAssertEqual(try ids(["-n", "2"]), [4, 5], "the last two")
        XCTAssertEqual(try ids(["--from-beginning"]), [1, 2, 3, 4, 5])
        XCTAssertEqual(try ids(["--from-beginning", "-n", "2"]), [1, 2], "the first two, like head(1)")
        XCTAssertEqual(try ids(["-n", "2", "--from-beginning"]), [1, 2], "in either order")
        XCTAssertEqual(try ids(["--from-beginning", "-n", "9"]), [1, 2, 3, 4, 5])
        XCTAssertEqual(try ids(["--from-beginning", "-n", "0"]), [])

        for bad in ["-3", "three"] {
            let result = try sluice(["tail", "items", "--config", configPath, "-n", bad])
            XCTAssertEqual(result.status, 2, result.describe)
            XCTAssertTrue(result.err.contains("-n/--last '\(bad)' is not a count of transactions"), result.describe)
            XCTAssertTrue(result.err.contains("e.g. -n 3"), "says what to write instead: \(result.describe)")
            XCTAssertTrue(result.out.isEmpty, result.describe)
        }
        // A reader that is gone (`| head`): exit 0 quietly, not a trap on EPIPE (it was SIGILL, 132).
        let gone = try execute([pluginPython, "-c", """
            import os, subprocess, sys
            r, w = os.pipe()
            os.close(r)
            p = subprocess.run(sys.argv[1:], stdout=w, stderr=subprocess.PIPE)
            print(p.returncode)
            sys.stdout.write(p.stderr.decode())
            """, sluiceBinary, "tail", "items", "--config", configPath, "--from-beginning"], timeout: 60)
        XCTAssertEqual(gone.out.split(separator: "\n").first, "0", gone.describe)
        XCTAssertFalse(gone.out.contains("Fatal error") || gone.out.contains("crashed"), gone.describe)
        // Output that cannot be written for another reason (a full disk) is a failure, said as such.
        let full = try execute(["/bin/sh", "-c", "'\(sluiceBinary)' tail items --config '\(configPath)' --from-beginning > /dev/full"], timeout: 60)
        XCTAssertEqual(full.status, 1, full.describe)
        XCTAssertTrue(full.err.contains("cannot write the output: No space left on device"), full.describe)
        let both = try sluice(["tail", "items", "--config", configPath, "--from-beginning", "-n", "2", "--follow"], timeout: 20)
        XCTAssertEqual(both.status, 2, both.describe)
        XCTAssertTrue(both.err.contains("--from-beginning") && both.err.contains("--follow") && both.err.contains("-n"), both.describe)
    }

    func testFollowingATopicThatDoesNotExistYetSaysSo() throws {
        try """
            data_dir: \(dataDirectory)
            sources:
              - {name: items, type: exec, command: [/bin/true]}
            """.write(toFile: configPath, atomically: true, encoding: .utf8)
        let follower = try SluiceProcess(program: sluiceBinary, ["tail", "items", "--config", configPath, "--follow"],
                                         logPath: directory + "/tail.out", errorPath: directory + "/tail.err")
        defer { follower.kill() }
        func errors() -> String { (try? String(contentsOfFile: directory + "/tail.err", encoding: .utf8)) ?? "" }
        try eventually(timeout: 30, "tail --follow to say the topic does not exist yet: \(errors())") {
            errors().contains("topic items does not exist in embedded log in \(dataDirectory)/topics yet: waiting for its first transaction")
        }
        XCTAssertTrue(follower.isRunning, "it keeps waiting: \(errors())")
    }
}

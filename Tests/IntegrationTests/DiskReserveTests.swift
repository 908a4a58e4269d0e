import Foundation
import XCTest

/// data_dir on an 8 MB tmpfs that something else fills to the last byte, then fills again once the
/// daemon has given back its space reserve: the daemon can no longer rewrite its status file, yet
/// `sluice status` must not keep showing the source "running" from before — it says disk full and
/// why, and so does /health. When the source then has rows to write, /health says disk full too (an exec source's full
/// disk pauses capture like any other, instead of flapping between running and retrying), and once
/// the space is back capture resumes with nothing lost.
final class DiskReserveTests: DaemonTestCase {
    override var fixtureName: String { "diskreserve" }
    override var startsSourceCluster: Bool { false }

    private var mountPoint: String?

    override func tearDown() {
        for daemon in daemons where daemon.isRunning { daemon.kill() }
        if let mountPoint { _ = try? IntegrationTests.run(["/usr/bin/umount", "-l", mountPoint]) }
        mountPoint = nil
        super.tearDown()
    }

    /// Writes into `path` until the filesystem refuses another byte.
    private func fill(_ path: String) {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        XCTAssertGreaterThanOrEqual(fd, 0, path)
        for size in [64 << 10, 4 << 10, 512, 1] {
            let block = [UInt8](repeating: 7, count: size)
            while block.withUnsafeBytes({ write(fd, $0.baseAddress!, $0.count) }) == size {}
        }
        close(fd)
    }

    func testStatusSaysDiskFullWhenTheReserveIsTakenToo() throws {
        try mountTmpfs(on: dataDirectory, size: "8m")
        mountPoint = dataDirectory
        let input = directory + "/incoming.jsonl"
        let port = try freePort()
        try """
            data_dir: \(dataDirectory)
            sources:
              - name: feed
                type: exec
                command: [\(pluginPython), \(repositoryRoot)/examples/exec-source/jsonl_source.py]
                config: {path: \(input), table: public.events, columns: [{name: id, type: bigint, key: true}, {name: body, type: text}]}
            metrics:
              listen: "127.0.0.1:\(port)"
            """.write(toFile: configPath, atomically: true, encoding: .utf8)
        XCTAssertTrue(FileManager.default.createFile(atPath: input, contents: nil))
        try ExecSourceTests.append(1...20, to: input)
        func inserts() throws -> Int {
            try sluice(["tail", "feed", "--config", configPath, "--from-beginning"]).out.components(separatedBy: "\tINSERT\t").count - 1
        }
        let daemon = try startDaemon()
        let reserve = dataDirectory + "/space-reserve"
        try eventually(timeout: 60, "the first lines in the topic and the reserve in place" + logTail) {
            try inserts() == 20 && FileManager.default.fileExists(atPath: reserve)
        }

        // Full to the last byte: the daemon gives back its reserve to write its status; then that is taken too.
        fill(dataDirectory + "/filler")
        try eventually(timeout: 30, "the daemon to give back its reserve" + logTail) { !FileManager.default.fileExists(atPath: reserve) }
        fill(dataDirectory + "/filler-2")
        var status = try sluiceStatus(configPath)
        try eventually(timeout: 40, "status to say the source cannot capture: disk full (last: \(status.text))" + logTail) {
            status = try sluiceStatus(configPath)
            let source = status.source("feed")
            return source?["state"] as? String == "retrying" && (source?["error"] as? String ?? "").contains("disk full")
        }
        XCTAssertTrue((status.source("feed")?["error"] as? String ?? "").contains(dataDirectory), "names data_dir: \(status.text)")
        var idle = (status: 0, body: "")
        try eventually(timeout: 10, "/health to say disk full while the idle source has not written yet (last: \(idle))" + logTail) {
            idle = try opsHTTPGet(port: port, path: "/health")
            return idle.status == 503 && idle.body.contains("disk full") && idle.body.contains(dataDirectory)
        }

        // Rows to write: the source pauses for room, and /health says so until there is room again.
        try ExecSourceTests.append(21...40, to: input)
        var health = (status: 0, body: "")
        try eventually(timeout: 30, "/health to report the full disk (last: \(health))" + logTail) {
            health = try opsHTTPGet(port: port, path: "/health")
            return health.status == 503 && health.body.contains("disk full")
        }
        for _ in 0..<3 {
            usleep(500_000)
            health = try opsHTTPGet(port: port, path: "/health")
            XCTAssertEqual(health.status, 503, "capture stays paused while the disk is full, not running again: \(health)" + logTail)
        }

        try FileManager.default.removeItem(atPath: dataDirectory + "/filler")
        try FileManager.default.removeItem(atPath: dataDirectory + "/filler-2")
        try eventually(timeout: 60, "capture to resume with every line" + logTail) { try inserts() == 40 }
        try eventually(timeout: 30, "/health to be 200 again" + logTail) { try opsHTTPGet(port: port, path: "/health").status == 200 }
        XCTAssertEqual(daemon.terminate(), 0, logTail)
    }
}

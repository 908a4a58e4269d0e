import Foundation
import SluiceWire
import XCTest

/// A distinctive password, read with `${file:…}` and `${VAR}`, never shows up in anything Sluice
/// prints or writes: every command (run, status, status --json, check, tail, tail --json, backfill),
/// /metrics and /health, logs at trace level in JSON and in human form, the failure paths (a wrong
/// password, an unreachable host, a bad sink URL, a crash at a failpoint) and every file under the
/// test's directory (data_dir, targets).
final class SecretLeakTests: DaemonTestCase {
    override var fixtureName: String { "secrets" }

    static let password = "Sl-Canary-9f2e7Kq"
    static let role = "sluice_app"

    private var outputs: [(String, String)] = []
    private var passwordFile: String { directory + "/secrets/db_password" }
    private var environment: [String: String] { ["SLUICE_TARGET_PASSWORD": Self.password, "SLUICE_LOG_LEVEL": "trace"] }

    private func url(port: Int? = nil, database: String = "postgres", password: String = "${file:secrets/db_password}",
                     query: String = "") -> String {
        "postgresql://\(Self.role):\(password)@127.0.0.1:\(port ?? source.port)/\(database)\(query)"
    }

    /// The configuration; `hookPort` adds an http sink with a password in its URL.
    @discardableResult
    private func writeConfig(sourceURL: String, sinkURL: String, hookPort: Int? = nil, metricsPort: Int, format: String,
                             to path: String? = nil) throws -> String {
        let path = path ?? configPath
        let hook = hookPort.map {
            "\n  - {name: hook, type: http, url: \"http://hook:${SLUICE_TARGET_PASSWORD}@127.0.0.1:\($0)/events\", timeout: 1s}"
        } ?? ""
        try """
            data_dir: \(dataDirectory)
            logging: {format: \(format), level: trace}
            metrics: {listen: "127.0.0.1:\(metricsPort)"}
            sources:
              - {name: app, type: postgres, url: "\(sourceURL)", tables: [public.accounts]}
            sinks:
              - {name: replica, type: postgres, url: "\(sinkURL)"}
              - {name: local, type: sqlite, path: \(directory!)/local.db}\(hook)
            """.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    /// Runs a command to completion and keeps what it printed.
    @discardableResult
    private func command(_ label: String, _ arguments: [String], timeout: TimeInterval = 60) throws -> CommandResult {
        let result = try sluice(arguments, environment: environment, timeout: timeout)
        outputs.append((label, result.all))
        return result
    }

    /// Runs `sluice run` until its output contains `text` (or it exits), then kills it; keeps the output.
    private func runUntil(_ label: String, config: String, _ text: String, failpoints: String? = nil,
                          whileRunning: () throws -> Void = {}) throws {
        let log = directory + "/\(label).log"
        var environment = environment
        if let failpoints { environment["SLUICE_FAILPOINTS"] = failpoints }
        let daemon = try SluiceProcess(["run", "--config", config], logPath: log, environment: environment)
        daemons.append(daemon)
        try eventually(timeout: 60, "\(label): '\(text)' in the output") { daemon.log.contains(text) || !daemon.isRunning }
        if daemon.isRunning { try whileRunning() }
        if daemon.isRunning { daemon.kill() }
        outputs.append((label, daemon.log))
        XCTAssertTrue(daemon.log.contains(text), "\(label):\n\(daemon.log)")
    }

    /// data_dir is 0700 and nothing in it may be read by group or others.
    private func assertOwnerOnly(_ path: String, file: StaticString = #filePath, line: UInt = #line) throws {
        var checked = 0
        for name in [""] + (FileManager.default.subpaths(atPath: path) ?? []) {
            var info = stat()
            guard lstat(path + "/" + name, &info) == 0, (info.st_mode & S_IFMT) != S_IFLNK else { continue }
            checked += 1
            let mode = info.st_mode & 0o777
            if name.isEmpty { XCTAssertEqual(mode, 0o700, "data_dir's mode", file: file, line: line) }
            XCTAssertEqual(mode & 0o077, 0, "\(name) has mode \(String(mode, radix: 8))", file: file, line: line)
        }
        XCTAssertGreaterThan(checked, 5, "data_dir holds the topic, positions and status", file: file, line: line)
    }

    func testPasswordNeverPrintedOrWritten() throws {
        try source.query("""
            CREATE ROLE \(Self.role) LOGIN SUPERUSER REPLICATION PASSWORD '\(Self.password)';
            """)
        try source.query("CREATE DATABASE replica OWNER \(Self.role)")
        try source.query("""
            CREATE TABLE accounts (id int PRIMARY KEY, owner text NOT NULL);
            INSERT INTO accounts SELECT i, 'owner ' || i FROM generate_series(1, 50) i;
            """)
        try source.prependHBA(["host all \(Self.role) 127.0.0.1/32 scram-sha-256",
                               "host replication \(Self.role) 127.0.0.1/32 scram-sha-256"])
        try eventually(timeout: 30, "pg_hba.conf to require a password") {
            (try? PGConnection(url: "postgresql://\(Self.role)@127.0.0.1:\(source.port)/postgres")) == nil
        }
        try FileManager.default.createDirectory(atPath: directory + "/secrets", withIntermediateDirectories: true)
        try (Self.password + "\n").write(toFile: passwordFile, atomically: true, encoding: .utf8)

        let metricsPort = try freePort()
        let sinkURL = url(database: "replica", password: "${SLUICE_TARGET_PASSWORD}")
        try writeConfig(sourceURL: url(), sinkURL: sinkURL, metricsPort: metricsPort, format: "json")

        chmod(passwordFile, 0o644)
        let check = try command("check", ["check", "--config", configPath])
        XCTAssertTrue(check.err.contains("is readable by every user") && check.err.contains("chmod 600"), check.describe)
        chmod(passwordFile, 0o600)
        // An empty target file, as polling it with `sqlite3 local.db` before the sink opens leaves it.
        let localTarget = directory + "/local.db"
        XCTAssertTrue(FileManager.default.createFile(atPath: localTarget, contents: nil, attributes: [.posixPermissions: 0o644]))
        let daemon = try startDaemon(environment: environment)
        let replica = "postgresql://postgres@127.0.0.1:\(source.port)/replica"
        try eventually(timeout: 90, "the replica to hold the 50 rows" + logTail) {
            try PGConnection(url: replica).execute("SELECT count(*) FROM accounts").string(0, 0) == "50"
        }
        try source.query("INSERT INTO accounts VALUES (51, 'late')")
        outputs.append(("/health", try opsHTTPGet(port: metricsPort, path: "/health").body))
        outputs.append(("/metrics", try opsHTTPGet(port: metricsPort, path: "/metrics").body))
        let status = try command("status", ["status", "--config", configPath])
        XCTAssertTrue(status.out.contains("replica"), status.describe)
        let json = try command("status --json", ["status", "--config", configPath, "--json"])
        XCTAssertTrue(json.out.contains("\"local\""), json.describe)
        let tail = try command("tail", ["tail", "app", "--config", configPath, "--from-beginning"])
        XCTAssertTrue(tail.out.contains("late"), tail.describe)
        try command("tail --json", ["tail", "app", "--config", configPath, "--from-beginning", "--json"])
        try command("backfill", ["backfill", "--config", configPath, "--table", "public.accounts"], timeout: 120)
        XCTAssertEqual(daemon.terminate(), 0, logTail)
        outputs.append(("run (json, trace)", daemon.log))
        try assertOwnerOnly(dataDirectory)
        for file in [localTarget, localTarget + "-wal", localTarget + "-shm"] where FileManager.default.fileExists(atPath: file) {
            var info = stat()
            XCTAssertEqual(stat(file, &info), 0)
            XCTAssertEqual(info.st_mode & 0o777, 0o600, "\(file): the SQLite target Sluice made is the owner's only")
        }

        // The same configuration with human log lines, then each failure path.
        let human = try writeConfig(sourceURL: url(), sinkURL: sinkURL, metricsPort: try freePort(),
                                    format: "human", to: directory + "/human.yml")
        try source.query("INSERT INTO accounts VALUES (52, 'crash')")
        chmod(dataDirectory, 0o755)
        try runUntil("run (human, failpoint)", config: human, "failpoint", failpoints: "sink.postgres.after_commit@1")
        XCTAssertTrue(outputs.last!.1.contains("may be read by other users (mode 755)"), outputs.last!.1)
        chmod(dataDirectory, 0o700)
        let wrong = try writeConfig(sourceURL: url(password: Self.password + "-wrong"),
                                    sinkURL: url(database: "replica", password: Self.password + "x"),
                                    metricsPort: try freePort(), format: "human", to: directory + "/wrong.yml")
        try command("check (bad password)", ["check", "--config", wrong])
        try command("status (bad password)", ["status", "--config", wrong, "--json"])
        try runUntil("run (bad password)", config: wrong, "password authentication failed")
        // Nothing listens at the source's port nor at the hook's: /health gives both reasons.
        let unreachablePort = try freePort()
        let unreachable = try writeConfig(sourceURL: url(port: try freePort()), sinkURL: sinkURL, hookPort: try freePort(),
                                          metricsPort: unreachablePort, format: "json", to: directory + "/unreachable.yml")
        try command("check (unreachable)", ["check", "--config", unreachable])
        try command("status (unreachable)", ["status", "--config", unreachable])
        try runUntil("run (unreachable)", config: unreachable, "retrying") {
            var health = (status: 0, body: "")
            try eventually(timeout: 30, "/health to say why the source retries: \(health)") {
                health = try opsHTTPGet(port: unreachablePort, path: "/health")
                return health.status == 503 && health.body.contains("source app: retrying") && health.body.contains("***")
            }
            outputs.append(("/health (unreachable)", health.body))
        }
        let badSink = try writeConfig(sourceURL: url(), sinkURL: url(port: 99999, database: "replica"),
                                      metricsPort: try freePort(), format: "human", to: directory + "/bad-sink.yml")
        let bad = try command("run (bad sink URL)", ["run", "--config", badSink])
        XCTAssertEqual(bad.status, 2, bad.describe)
        try command("check (bad sink URL)", ["check", "--config", badSink])

        for (label, text) in outputs {
            XCTAssertFalse(text.contains(Self.password), "\(label) shows the password:\n\(text)")
            XCTAssertFalse(text.isEmpty && !label.hasPrefix("/"), "\(label) printed nothing")
        }
        XCTAssertTrue(outputs.contains { $0.1.contains("***") }, "some message shows a hidden password")
        let skipped = [passwordFile] + [configPath, human, wrong, unreachable, badSink]
        var scanned = 0
        for case let name as String in FileManager.default.enumerator(atPath: directory)! {
            let path = directory + "/" + name
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), !isDirectory.boolValue,
                  !skipped.contains(path), let data = FileManager.default.contents(atPath: path) else { continue }
            scanned += 1
            XCTAssertNil(data.range(of: Data(Self.password.utf8)), "\(name) holds the password")
        }
        XCTAssertGreaterThan(scanned, 5, "the data directory, the SQLite target and the logs were scanned")
    }
}

import Foundation
import SluiceWire
import XCTest

/// `sluice check` reports what blocks a run, with the SQL that fixes it, and exits 2; on a good setup
/// it exits 0 with "Ready to run."; `--file-only` validates the file without connecting.
/// It never changes anything in the databases it probes.
final class CheckCommandTests: SinkTestCase {
    var replicaCluster: PostgresCluster?

    override var fixtureName: String { "check" }

    override func setUpWithError() throws {
        try super.setUpWithError()
        try source.query("""
            CREATE TABLE accounts (id int PRIMARY KEY, owner text);
            CREATE TABLE ledger (k int, amount numeric);
            CREATE TABLE audit (k int, note text);
            ALTER TABLE audit REPLICA IDENTITY FULL;
            """)
        if name.contains("WalLevel") {
            // wal_level=replica: the server logical replication cannot use.
            replicaCluster = try PostgresCluster(name: "check-replica", settings: [("wal_level", "replica")])
        }
    }

    override func tearDown() {
        replicaCluster?.destroy()
        super.tearDown()
    }

    @discardableResult
    func writeConfig(sourceURL: String, tables: [String], targetURL: String? = nil, name: String = "sluice.yml") throws -> String {
        let path = directory + "/" + name
        try """
            data_dir: \(dataDirectory)
            sources:
              - name: app
                type: postgres
                url: \(sourceURL)
                tables: [\(tables.joined(separator: ", "))]
            sinks:
              - name: replica
                type: postgres
                url: \(targetURL ?? target.url)
              - name: local
                type: sqlite
                path: \(sqlitePath)
            """.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    /// The output lines that start with `label` (ok, warn, ERROR) and mention `text`.
    func lines(_ output: String, _ label: String, containing text: String) -> [String] {
        output.split(separator: "\n").map(String.init).filter { $0.hasPrefix(label) && $0.contains(text) }
    }

    /// The `fix:` line right after the first line that starts with `label` and mentions `text`.
    func fix(_ output: String, after label: String, containing text: String) -> String? {
        let all = output.split(separator: "\n").map(String.init)
        guard let index = all.firstIndex(where: { $0.hasPrefix(label) && $0.contains(text) }), index + 1 < all.count else { return nil }
        let next = all[index + 1].trimmingCharacters(in: .whitespaces)
        return next.hasPrefix("fix:") ? next : nil
    }

    func assertUntouched(_ cluster: (String) throws -> [[String?]], _ label: String, file: StaticString = #filePath, line: UInt = #line) throws {
        XCTAssertEqual(try cluster("SELECT count(*) FROM pg_replication_slots").first?.first, "0", "\(label): check created a slot",
                       file: file, line: line)
        XCTAssertEqual(try cluster("SELECT count(*) FROM pg_publication").first?.first, "0", "\(label): check created a publication",
                       file: file, line: line)
    }

    func assertTargetUntouched(file: StaticString = #filePath, line: UInt = #line) throws {
        XCTAssertEqual(try target.scalar("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"), "0",
                       "check created a table in the PostgreSQL target", file: file, line: line)
        XCTAssertFalse(FileManager.default.fileExists(atPath: sqlitePath), "check created the SQLite target", file: file, line: line)
    }

    func testWalLevelReplicaIsReportedWithTheAlterSystemFix() throws {
        let cluster = try XCTUnwrap(replicaCluster)
        XCTAssertEqual(try cluster.scalar("SHOW wal_level"), "replica")
        try cluster.query("CREATE TABLE accounts (id int PRIMARY KEY, owner text)")
        let config = try writeConfig(sourceURL: cluster.url, tables: ["public.accounts"])
        let result = try sluice(["check", "--config", config])
        XCTAssertEqual(result.status, 2, result.describe)
        XCTAssertEqual(lines(result.out, "ERROR", containing: "wal_level").count, 1, "one ERROR line about wal_level: \(result.describe)")
        XCTAssertTrue(result.out.contains("replica"), "the current wal_level is shown: \(result.describe)")
        let fixLine = fix(result.out, after: "ERROR", containing: "wal_level")
        XCTAssertNotNil(fixLine, "a fix: line follows the wal_level error: \(result.describe)")
        XCTAssertTrue(fixLine?.contains("ALTER SYSTEM SET wal_level = logical") ?? false, "the fix is ALTER SYSTEM: \(result.describe)")
        XCTAssertTrue(fixLine?.lowercased().contains("restart") ?? false, "the fix says to restart PostgreSQL: \(result.describe)")
        // The rest of the probe still ran: the good parts are reported ok.
        XCTAssertFalse(lines(result.out, "ok", containing: "accounts").isEmpty, "the keyed table is ok: \(result.describe)")
        XCTAssertTrue(result.out.contains("must be fixed before `sluice run`"), result.describe)
        XCTAssertFalse(result.out.contains("Ready to run"), result.describe)
        try assertUntouched({ try cluster.query($0) }, "replica cluster")
        try assertTargetUntouched()

        // `run` refuses the same server with exit 2 and the same explanation, creating nothing.
        let run = try sluice(["run", "--config", config], timeout: 30)
        XCTAssertEqual(run.status, 2, run.describe)
        XCTAssertTrue(run.err.contains("wal_level"), run.describe)
        try assertUntouched({ try cluster.query($0) }, "replica cluster after run")
    }

    func testKeylessTableWithoutReplicaIdentityFullIsReported() throws {
        let config = try writeConfig(sourceURL: source.url, tables: ["public.accounts", "public.ledger", "public.audit"])
        let result = try sluice(["check", "--config", config])
        XCTAssertEqual(result.status, 2, result.describe)
        let errors = result.out.split(separator: "\n").filter { $0.hasPrefix("ERROR") }
        XCTAssertEqual(errors.count, 1, "only the keyless table is a problem: \(result.describe)")
        XCTAssertEqual(lines(result.out, "ERROR", containing: "public.ledger").count, 1, result.describe)
        let fixLine = fix(result.out, after: "ERROR", containing: "public.ledger") ?? ""
        XCTAssertTrue(fixLine.contains("ALTER TABLE") && fixLine.contains("ledger") && fixLine.contains("REPLICA IDENTITY FULL"),
                      "the fix is ALTER TABLE … REPLICA IDENTITY FULL: \(result.describe)")
        XCTAssertFalse(lines(result.out, "ok", containing: "public.accounts").isEmpty, "the keyed table is ok: \(result.describe)")
        XCTAssertFalse(lines(result.out, "ok", containing: "public.audit").isEmpty,
                       "the keyless table with REPLICA IDENTITY FULL is ok: \(result.describe)")
        XCTAssertTrue(result.out.contains("1 problem must be fixed"), result.describe)
        try assertUntouched({ try source.query($0) }, "source")
        try assertTargetUntouched()

        // The fix it prints works: after applying it, check passes.
        let sql = String(fixLine.dropFirst("fix:".count)).components(separatedBy: "--")[0]
        try source.query(sql)
        let fixed = try sluice(["check", "--config", config])
        XCTAssertEqual(fixed.status, 0, "after running the printed fix: \(fixed.describe)")
        XCTAssertTrue(fixed.out.contains("Ready to run."), fixed.describe)
    }

    func testRoleWithoutReplicationPrivilegeIsReported() throws {
        try source.query("""
            CREATE ROLE plain LOGIN;
            GRANT SELECT ON ALL TABLES IN SCHEMA public TO plain;
            """)
        let config = try writeConfig(sourceURL: "postgresql://plain@127.0.0.1:\(source.port)/postgres", tables: ["public.accounts"])
        let result = try sluice(["check", "--config", config])
        XCTAssertEqual(result.status, 2, result.describe)
        XCTAssertEqual(lines(result.out, "ERROR", containing: "replication").count, 1, result.describe)
        XCTAssertTrue(lines(result.out, "ERROR", containing: "plain").count >= 1, "the role is named: \(result.describe)")
        let fixLine = fix(result.out, after: "ERROR", containing: "replication") ?? ""
        XCTAssertTrue(fixLine.contains("ALTER ROLE") && fixLine.contains("plain") && fixLine.contains("REPLICATION"),
                      "the fix is ALTER ROLE … WITH REPLICATION: \(result.describe)")
        try assertUntouched({ try source.query($0) }, "source")
    }

    /// A role with REPLICATION but no CREATE on the database, not owning the tables, without SELECT;
    /// a target role that may not create in schema public: `check` names each missing privilege with its
    /// GRANT (exit 2), `run` exits 2 with the same fix and creates nothing, and once an admin applies the
    /// fixes the pipeline runs.
    func testEveryPrivilegeRunUsesIsCheckedWithItsGrant() throws {
        try source.query("CREATE ROLE capture LOGIN REPLICATION")
        try target.query("CREATE ROLE writer LOGIN")
        let sourceURL = "postgresql://capture@127.0.0.1:\(source.port)/postgres"
        let targetURL = "postgresql://writer@127.0.0.1:\(target.port)/postgres"
        let config = try writeConfig(sourceURL: sourceURL, tables: ["public.accounts"], targetURL: targetURL)

        let result = try sluice(["check", "--config", config])
        XCTAssertEqual(result.status, 2, result.describe)
        let expected: [(error: String, fix: String)] = [
            ("CREATE on database", "GRANT CREATE ON DATABASE \"postgres\" TO \"capture\""),
            ("only a table's owner", "CREATE PUBLICATION \"sluice_app\" FOR TABLE \"public\".\"accounts\""),
            ("may not SELECT from table public.accounts", "GRANT SELECT ON \"public\".\"accounts\" TO \"capture\""),
            ("may not create public.sluice_offsets", "GRANT USAGE, CREATE ON SCHEMA public TO \"writer\""),
        ]
        for (error, grant) in expected {
            XCTAssertEqual(lines(result.out, "ERROR", containing: error).count, 1, "an ERROR says \(error): \(result.describe)")
            XCTAssertTrue(fix(result.out, after: "ERROR", containing: error)?.contains(grant) == true,
                          "its fix is \(grant): \(result.describe)")
        }
        XCTAssertFalse(result.out.contains("Ready to run"), result.describe)
        try assertUntouched({ try source.query($0) }, "source")

        // run stops with the first of them, exit 2, before creating anything.
        let run = try sluice(["run", "--config", config], timeout: 30)
        XCTAssertEqual(run.status, 2, run.describe)
        XCTAssertTrue(run.err.contains("GRANT CREATE ON DATABASE"), run.describe)
        try assertUntouched({ try source.query($0) }, "source after run")

        // An admin creates the publication and grants SELECT: the source is fine, the target still is not.
        try source.query("""
            CREATE PUBLICATION sluice_app FOR TABLE public.accounts WITH (publish_via_partition_root = true);
            GRANT SELECT ON public.accounts TO capture;
            INSERT INTO accounts VALUES (1, 'first');
            """)
        let sourceFixed = try sluice(["check", "--config", config])
        XCTAssertEqual(sourceFixed.status, 2, sourceFixed.describe)
        XCTAssertTrue(lines(sourceFixed.out, "ERROR", containing: "source app").isEmpty, "no source errors left: \(sourceFixed.describe)")
        let targetRun = try sluice(["run", "--config", config], timeout: 60)
        XCTAssertEqual(targetRun.status, 2, "the target refusal stops run at start: \(targetRun.describe)")
        XCTAssertTrue(targetRun.err.contains("GRANT USAGE, CREATE ON SCHEMA"), "run prints the same GRANT: \(targetRun.describe)")

        try target.query("GRANT USAGE, CREATE ON SCHEMA public TO writer")
        let ready = try sluice(["check", "--config", config])
        XCTAssertEqual(ready.status, 0, ready.describe)
        let daemon = try startDaemon()
        try eventually(timeout: 60, "the row to reach the target as writer" + logTail) {
            (try? target.scalar("SELECT owner FROM public.accounts WHERE id = 1")) == "first"
        }
        XCTAssertEqual(daemon.terminate(timeout: 20), 0, logTail)
    }

    func testGoodSetupIsReadyToRun() throws {
        let config = try writeConfig(sourceURL: source.url, tables: ["public.accounts", "public.audit"])
        let result = try sluice(["check", "--config", config])
        XCTAssertEqual(result.status, 0, result.describe)
        XCTAssertTrue(result.out.hasSuffix("Ready to run.\n"), result.describe)
        XCTAssertFalse(result.out.contains("ERROR"), result.describe)
        for expected in ["wal_level is logical", "public.accounts", "public.audit", "sink replica", "sink local", config] {
            XCTAssertTrue(result.out.contains(expected), "check mentions \"\(expected)\": \(result.describe)")
        }
        for line in result.out.split(separator: "\n") where !line.hasPrefix(" ") && line != "Ready to run." {
            XCTAssertTrue(line.hasPrefix("ok ") || line.hasPrefix("warn "), "every finding is ok or warn: \(line)")
        }
        try assertUntouched({ try source.query($0) }, "source")
        try assertTargetUntouched()
        XCTAssertFalse(FileManager.default.fileExists(atPath: directory + "/data/topics"), "check created topics")
    }

    func testFileOnlyConnectsToNothing() throws {
        // Nothing listens on these ports: a connecting check would fail.
        let deadSource = "postgresql://postgres@127.0.0.1:\(try freePort())/postgres"
        let deadTarget = "postgresql://postgres@127.0.0.1:\(try freePort())/postgres"
        let config = try writeConfig(sourceURL: deadSource, tables: ["public.accounts"], targetURL: deadTarget)

        let started = Date()
        let fileOnly = try sluice(["check", "--config", config, "--file-only"], timeout: 30)
        XCTAssertEqual(fileOnly.status, 0, fileOnly.describe)
        XCTAssertTrue(fileOnly.out.contains("The configuration file is valid."), fileOnly.describe)
        XCTAssertTrue(fileOnly.out.contains(config), "names the file: \(fileOnly.describe)")
        XCTAssertFalse(fileOnly.out.contains("connected") || fileOnly.out.contains("cannot connect"), fileOnly.describe)
        XCTAssertLessThan(Date().timeIntervalSince(started), 10)

        // Without --file-only the same file fails: the URLs really are unreachable.
        let full = try sluice(["check", "--config", config], timeout: 60)
        XCTAssertEqual(full.status, 2, full.describe)
        XCTAssertFalse(lines(full.out, "ERROR", containing: "source app").isEmpty, full.describe)
        XCTAssertFalse(lines(full.out, "ERROR", containing: "sink replica").isEmpty, full.describe)

        // --file-only still rejects a bad file.
        try "data_dir: x\nsources:\n  - name: app\n    type: postgres\n    url: \(deadSource)\n    snapshot: always\n"
            .write(toFile: config, atomically: true, encoding: .utf8)
        let bad = try sluice(["check", "--config", config, "--file-only"])
        XCTAssertEqual(bad.status, 2, bad.describe)
        XCTAssertTrue(bad.err.contains("snapshot") && bad.err.contains("'always'"), bad.describe)
    }
}

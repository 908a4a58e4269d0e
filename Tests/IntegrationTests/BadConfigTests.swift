import Foundation
import SluiceWire
import XCTest

/// Bad configuration files: `sluice run`, `sluice check` (and `sluice status` where the file itself is
/// bad) exit 2, name the offending key or value, and leave every database untouched: no replication
/// slot, no publication on the source, no table on the PostgreSQL target, no SQLite file.
/// Passwords in URLs never appear in any output.
final class BadConfigTests: SinkTestCase {
    override var fixtureName: String { "badconfig" }

    override func setUpWithError() throws {
        try super.setUpWithError()
        try source.query("""
            CREATE TABLE orders (id int PRIMARY KEY, note text);
            CREATE TABLE keyless (k int, label text);
            INSERT INTO orders VALUES (1, 'one'), (2, 'two');
            INSERT INTO keyless VALUES (1, 'a');
            """)
    }

    // MARK: Config pieces

    func sourceBlock(name: String = "app", type: String = "postgres", url: String? = nil, extra: [String] = []) -> String {
        (["  - name: \(name)", "    type: \(type)", "    url: \(url ?? source.url)"] + extra.map { "    " + $0 })
            .joined(separator: "\n")
    }

    func postgresSink(name: String = "replica", type: String = "postgres", url: String? = nil, topics: String = "[app]",
                      extra: [String] = []) -> String {
        (["  - name: \(name)", "    type: \(type)", "    url: \(url ?? target.url)", "    topics: \(topics)"] + extra.map { "    " + $0 })
            .joined(separator: "\n")
    }

    func sqliteSink(name: String = "local") -> String {
        ["  - name: \(name)", "    type: sqlite", "    path: \(sqlitePath)", "    topics: [app]"].joined(separator: "\n")
    }

    func config(top: [String] = [], sources: [String]? = nil, sinks: [String]? = nil) -> String {
        var lines = ["data_dir: \(dataDirectory)"] + top
        lines.append("sources:")
        lines += sources ?? [sourceBlock(extra: ["tables: [public.orders]"])]
        lines.append("sinks:")
        lines += sinks ?? [postgresSink(), sqliteSink()]
        return lines.joined(separator: "\n") + "\n"
    }

    struct Case {
        var name: String
        /// The file's text; nil: the file does not exist.
        var yaml: String?
        /// Substrings the error must contain (stderr of run, output of check).
        var expect: [String]
        /// The mistake is in the file itself (so `status` must refuse it too, and the message names the file).
        var fileError = true
        var environment: [String: String] = [:]
    }

    // MARK: Tests

    /// Mistakes `sluice` can see in the file alone.
    func testMistakesInTheFileExit2AndTouchNothing() throws {
        let cases: [Case] = [
            Case(name: "unknown top-level key", yaml: config(top: ["colour: blue"]), expect: ["colour", "unknown key"]),
            Case(name: "unknown key in a source",
                 yaml: config(sources: [sourceBlock(extra: ["tables: [public.orders]", "slot_nmae: app_slot"])]),
                 expect: ["slot_nmae", "unknown key"]),
            Case(name: "unknown key in a sink",
                 yaml: config(sinks: [postgresSink(extra: ["batch_sise: 100"]), sqliteSink()]),
                 expect: ["batch_sise", "unknown key"]),
            Case(name: "unknown source type", yaml: config(sources: [sourceBlock(type: "mysql")]),
                 expect: ["unknown source type 'mysql'"]),
            Case(name: "unknown sink type", yaml: config(sinks: [postgresSink(type: "kafka"), sqliteSink()]),
                 expect: ["unknown sink type 'kafka'"]),
            Case(name: "malformed URL: port is not a number",
                 yaml: config(sources: [sourceBlock(url: "postgresql://127.0.0.1:notaport/postgres")]),
                 expect: ["url", "notaport"]),
            Case(name: "malformed URL: not postgresql://",
                 yaml: config(sinks: [postgresSink(url: "mysql://x"), sqliteSink()]),
                 expect: ["url", "mysql://x"]),
            Case(name: "missing config file", yaml: nil, expect: ["does-not-exist.yml", "does not exist"]),
            Case(name: "invalid YAML", yaml: "data_dir: \(dataDirectory)\nsources:\n  - name: app\n    type: [postgres\n    url: x\n",
                 expect: ["not valid YAML"]),
            Case(name: "duplicate source names",
                 yaml: config(sources: [sourceBlock(extra: ["tables: [public.orders]"]),
                                        sourceBlock(extra: ["tables: [public.orders]", "slot: other", "publication: other"])]),
                 expect: ["duplicate source name 'app'"]),
            Case(name: "duplicate sink names",
                 yaml: config(sinks: [postgresSink(), postgresSink()]),
                 expect: ["duplicate sink name 'replica'"]),
            Case(name: "sink naming an unknown topic",
                 yaml: config(sinks: [postgresSink(topics: "[app, billing]"), sqliteSink()]),
                 expect: ["topics", "'billing' is not a topic"]),
            Case(name: "unset environment variable in a url",
                 yaml: config(sources: [sourceBlock(url: "postgresql://postgres:${SLUICE_OPS_UNSET_VAR}@127.0.0.1:\(source.port)/postgres")]),
                 expect: ["url", "SLUICE_OPS_UNSET_VAR", "not set"]),
            Case(name: "bad snapshot value",
                 yaml: config(sources: [sourceBlock(extra: ["snapshot: sometimes"])]),
                 expect: ["snapshot", "'sometimes'"]),
            Case(name: "bad heartbeat_interval duration",
                 yaml: config(sources: [sourceBlock(extra: ["heartbeat_interval: often"])]),
                 expect: ["heartbeat_interval", "'often'"]),
            Case(name: "bad catch_up_threshold",
                 yaml: config(sources: [sourceBlock(extra: ["catch_up_threshold: lots"])]),
                 expect: ["catch_up_threshold", "'lots'", "off"]),
            Case(name: "several mistakes reported at once",
                 yaml: config(top: ["colur: blue"], sinks: [postgresSink(extra: ["batch_sise: 100"]), postgresSink(name: "other", type: "sqlit")]),
                 expect: ["colur", "batch_sise", "'sqlit'", "did you mean 'sqlite'?", "3 mistakes"]),
            Case(name: "an empty slot name", yaml: config(sources: [sourceBlock(extra: ["tables: [public.orders]", "slot: ''"])]),
                 expect: ["slot", "must not be empty"]),
            Case(name: "an empty publication name", yaml: config(sources: [sourceBlock(extra: ["tables: [public.orders]", "publication: \"\""])]),
                 expect: ["publication", "must not be empty"]),
            Case(name: "a number as a sink name", yaml: config(sinks: [postgresSink(name: "12345"), sqliteSink()]),
                 expect: ["sinks[0].name", "expected a name, found a number (12345)", "quote it"]),
            Case(name: "a boolean as a slot name", yaml: config(sources: [sourceBlock(extra: ["tables: [public.orders]", "slot: yes"])]),
                 expect: ["sources[0].slot", "found a boolean"]),
            // Values that make no sense, and keys written with no value (YAML null is not the default).
            Case(name: "a zero max_file_bytes",
                 yaml: config(sinks: [sqliteSink(), "  - {name: files, type: file, path: \(directory)/out, max_file_bytes: 0, topics: [app]}"]),
                 expect: ["sinks[1] (files).max_file_bytes", "'0' is too small", "at least 1KB"]),
            Case(name: "a zero http timeout",
                 yaml: config(sinks: [sqliteSink(), "  - {name: hook, type: http, url: 'http://127.0.0.1:9/x', timeout: 0, topics: [app]}"]),
                 expect: ["sinks[1] (hook).timeout", "'0' is too short", "at least 100ms"]),
            Case(name: "a zero heartbeat_interval",
                 yaml: config(sources: [sourceBlock(extra: ["tables: [public.orders]", "heartbeat_interval: 0"])]),
                 expect: ["heartbeat_interval", "'0' is too short"]),
            Case(name: "a slot with no value", yaml: config(sources: [sourceBlock(extra: ["tables: [public.orders]", "slot:"])]),
                 expect: ["sources[0] (app).slot", "has no value", "leave the key out for the default"]),
            Case(name: "a data_dir with no value",
                 yaml: config().replacingOccurrences(of: "data_dir: \(dataDirectory)", with: "data_dir: ~"),
                 expect: ["data_dir", "has no value"]),
            Case(name: "empty sources list",
                 yaml: "data_dir: \(dataDirectory)\nsources: []\nsinks:\n\(sqliteSink())\n",
                 expect: ["sources", "at least one source"]),
        ]
        for testCase in cases { try check(testCase) }
    }

    /// Mistakes only the source database reveals: `run` and `check` still exit 2 before anything is created.
    func testMistakesTheDatabaseRevealsExit2AndTouchNothing() throws {
        let cases: [Case] = [
            Case(name: "a configured table that does not exist",
                 yaml: config(sources: [sourceBlock(extra: ["tables: [public.orders, public.missing]"])]),
                 expect: ["public.missing", "does not exist"], fileError: false),
            Case(name: "a keyless table without REPLICA IDENTITY FULL",
                 yaml: config(sources: [sourceBlock(extra: ["tables: [public.orders, public.keyless]"])]),
                 expect: ["public.keyless", "REPLICA IDENTITY FULL"], fileError: false),
            // Not a database, but only the machine reveals it: the exec sink's program does not exist.
            Case(name: "an exec sink whose program does not exist",
                 yaml: config(sinks: [postgresSink(), sqliteSink(),
                                      "  - name: py\n    type: exec\n    command: [/nonexistent/sluice-plugin]\n    topics: [app]"]),
                 expect: ["sinks[2] (py).command", "/nonexistent/sluice-plugin is not an executable program"], fileError: false),
        ]
        for testCase in cases { try check(testCase) }
    }

    /// Row filters and column lists (`tables:` mappings): mistakes in the file, and those PostgreSQL reveals —
    /// a filter or a column list PostgreSQL would make reject the table's UPDATE and DELETE.
    func testPushDownMistakesExit2AndTouchNothing() throws {
        func tables(_ entry: String) -> String { config(sources: [sourceBlock(extra: ["tables: [\(entry)]"])]) }
        let cases: [Case] = [
            Case(name: "unknown key in a table mapping", yaml: tables("{name: public.orders, wher: \"id > 1\"}"),
                 expect: ["tables[0].wher", "unknown key", "name, where, columns"]),
            Case(name: "a list as the row filter", yaml: tables("{name: public.orders, where: [1, 2]}"),
                 expect: ["tables[0].where", "found a list"]),
            Case(name: "a table mapping without a name", yaml: tables("{where: \"id > 1\"}"),
                 expect: ["tables[0].name", "is required"]),
            Case(name: "a number as the column list", yaml: tables("{name: public.orders, columns: 5}"),
                 expect: ["tables[0].columns", "found a value"]),
            Case(name: "a row filter outside the replica identity", yaml: tables("{name: public.orders, where: \"note <> 'x'\"}"),
                 expect: ["public.orders", "note", "replica identity", "reject every UPDATE and DELETE"], fileError: false),
            Case(name: "a column list without the key", yaml: tables("{name: public.orders, columns: [note]}"),
                 expect: ["public.orders", "leaves out id", "replica identity"], fileError: false),
            Case(name: "a row filter on an unknown column", yaml: tables("{name: public.orders, where: \"nope > 1\"}"),
                 expect: ["where", "nope", "does not exist"], fileError: false),
            Case(name: "a column list naming an unknown column", yaml: tables("{name: public.orders, columns: [id, nope]}"),
                 expect: ["columns", "nope"], fileError: false),
        ]
        for testCase in cases { try check(testCase) }
    }

    /// Runs the case through run, check (and status) and checks the exit status, the message and that
    /// nothing was created.
    func check(_ testCase: Case, file: StaticString = #filePath, line: UInt = #line) throws {
        let path = directory + "/" + (testCase.yaml == nil ? "does-not-exist.yml" : "sluice-\(UUID().uuidString.prefix(6)).yml")
        if let yaml = testCase.yaml { try yaml.write(toFile: path, atomically: true, encoding: .utf8) }
        let label = "[\(testCase.name)]"

        var commands: [(String, [String])] = [("run", ["run", "--config", path]), ("check", ["check", "--config", path])]
        if testCase.fileError {
            commands.append(("check --file-only", ["check", "--config", path, "--file-only"]))
            commands.append(("status", ["status", "--config", path]))
            commands.append(("status --json", ["status", "--config", path, "--json"]))
        }
        for (name, arguments) in commands {
            let result = try sluice(arguments, environment: testCase.environment, timeout: 20)
            XCTAssertFalse(result.timedOut, "\(label) sluice \(name) did not exit within 20 s: \(result.describe)", file: file, line: line)
            XCTAssertEqual(result.status, 2, "\(label) sluice \(name): exit status: \(result.describe)", file: file, line: line)
            // run reports on stderr; check prints its findings on stdout.
            let message = name.hasPrefix("check") ? result.all : result.err
            for expected in testCase.expect {
                XCTAssertTrue(message.contains(expected),
                              "\(label) sluice \(name) does not mention \"\(expected)\": \(result.describe)", file: file, line: line)
            }
            if testCase.fileError {
                XCTAssertTrue(result.err.contains(path), "\(label) sluice \(name) does not name the file \(path): \(result.describe)",
                              file: file, line: line)
            }
            XCTAssertFalse(result.all.contains("Fatal error") || result.all.contains("Stack dump"),
                           "\(label) sluice \(name) crashed: \(result.describe)", file: file, line: line)
            if testCase.fileError {
                XCTAssertFalse(FileManager.default.fileExists(atPath: dataDirectory) || FileManager.default.fileExists(atPath: directory + "/out"),
                               "\(label) sluice \(name) created the data directory or a sink's directory", file: file, line: line)
            }
            try assertNothingCreated(label + " after sluice \(name)", file: file, line: line)
        }
        try? FileManager.default.removeItem(atPath: dataDirectory)
    }

    func assertNothingCreated(_ label: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let slots = try source.query("SELECT slot_name FROM pg_replication_slots").map { $0[0] ?? "" }
        XCTAssertEqual(slots, [], "\(label): the source has replication slots", file: file, line: line)
        let publications = try source.query("SELECT pubname FROM pg_publication").map { $0[0] ?? "" }
        XCTAssertEqual(publications, [], "\(label): the source has publications", file: file, line: line)
        let tables = try target.query("""
            SELECT schemaname || '.' || tablename FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema')
            """).map { $0[0] ?? "" }
        XCTAssertEqual(tables, [], "\(label): the PostgreSQL target has tables", file: file, line: line)
        XCTAssertFalse(FileManager.default.fileExists(atPath: sqlitePath), "\(label): the SQLite target was created", file: file, line: line)
        // Clean up whatever a failing case created, so the next case starts from nothing.
        for slot in slots { _ = try? source.query("SELECT pg_drop_replication_slot($1)", [slot]) }
        for publication in publications { _ = try? source.query("DROP PUBLICATION \(PGConnection.quoteIdentifier(publication))") }
        for table in tables { _ = try? target.query("DROP TABLE \(table)") }
        try? FileManager.default.removeItem(atPath: sqlitePath)
        try? FileManager.default.removeItem(atPath: sqlitePath + "-wal")
        try? FileManager.default.removeItem(atPath: sqlitePath + "-shm")
    }

    /// A password in the URLs never shows in the output of run, check, status or tail, in the
    /// daemon's log, or in the files of the data directory.
    func testPasswordsNeverAppearInOutputOrLogs() throws {
        let secret = "s3cret"
        let sourceURL = "postgresql://postgres:\(secret)@127.0.0.1:\(source.port)/postgres"
        let deadPort = try freePort()
        let deadURL = "postgresql://postgres:\(secret)@127.0.0.1:\(deadPort)/postgres"
        let targetURL = "postgresql://postgres:\(secret)@127.0.0.1:\(target.port)/postgres"
        var outputs: [(String, String)] = []

        // 1. An error found after the URLs are parsed: a missing table.
        let broken = directory + "/broken.yml"
        try config(sources: [sourceBlock(url: sourceURL, extra: ["tables: [public.orders, public.missing]"])],
                   sinks: [postgresSink(url: targetURL), sqliteSink()])
            .write(toFile: broken, atomically: true, encoding: .utf8)
        for arguments in [["run", "--config", broken], ["check", "--config", broken], ["status", "--config", broken],
                          ["status", "--config", broken, "--json"]] {
            let result = try sluice(arguments, environment: ["SLUICE_LOG_LEVEL": "debug"], timeout: 30)
            XCTAssertFalse(result.timedOut, result.describe)
            outputs.append((arguments.joined(separator: " "), result.all))
        }
        try? FileManager.default.removeItem(atPath: dataDirectory)

        // 2. A running daemon whose PostgreSQL target is unreachable (retrying, with errors naming the URL).
        let running = directory + "/running.yml"
        try config(sources: [sourceBlock(url: sourceURL, extra: ["tables: [public.orders]"])],
                   sinks: [postgresSink(url: deadURL), sqliteSink()])
            .write(toFile: running, atomically: true, encoding: .utf8)
        let daemon = try SluiceProcess(["run", "--config", running], logPath: logPath, environment: ["SLUICE_LOG_LEVEL": "debug"])
        daemons.append(daemon)
        try eventually(timeout: 60, "the slot to be active\n" + daemon.log) {
            try source.scalar("SELECT bool_or(active)::text FROM pg_replication_slots") == "true"
        }
        try eventually(timeout: 30, "sink replica to be retrying") {
            try sluiceStatus(running).state(sink: "replica") == "retrying"
        }
        let status = try sluiceStatus(running)
        XCTAssertFalse((status.sink("replica")?["error"] as? String ?? "").isEmpty, "the retrying sink shows its error: \(status.text)")
        for arguments in [["status", "--config", running], ["status", "--config", running, "--json"],
                          ["check", "--config", running], ["tail", "app", "--config", running, "--from-beginning"]] {
            let result = try sluice(arguments, timeout: 30)
            outputs.append((arguments.joined(separator: " "), result.all))
        }
        outputs.append(("status --json while retrying", status.text))
        daemon.terminate(timeout: 30)
        outputs.append(("daemon log", daemon.log))

        for (name, text) in outputs {
            XCTAssertFalse(text.contains(secret), "\(name) prints the password:\n\(text.suffix(8000))")
        }
        // Redaction keeps the rest of the URL recognisable.
        XCTAssertTrue(outputs.contains { $0.1.contains("postgres:***@127.0.0.1") },
                      "no output shows a redacted URL:\n" + outputs.map { "== \($0.0)\n\($0.1.suffix(2000))" }.joined(separator: "\n"))
        // Files the daemon writes (status.json, state files, the topic).
        if let files = FileManager.default.enumerator(atPath: dataDirectory) {
            for case let relative as String in files {
                guard let data = FileManager.default.contents(atPath: dataDirectory + "/" + relative) else { continue }
                XCTAssertNil(data.range(of: Data(secret.utf8)), "data_dir/\(relative) contains the password")
            }
        }
    }
}

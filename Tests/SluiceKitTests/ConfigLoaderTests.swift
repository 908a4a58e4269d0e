import Foundation
import SluiceKit
import SluiceConnectors
import SluiceRuntime
import XCTest

/// `SluiceConfig.load(path:registry:)` on real files, good and bad: every mistake is a `ConfigError`
/// naming the file, the key and what is wrong, before any connector is built (the command line exits
/// 2 on it). Connector sections are then checked by each connector's `init(config:)`.
final class ConfigLoaderTests: XCTestCase {
    var directory: String!

    static let source = """
        sources:
          - name: app
            type: postgres
            url: postgresql://sluice@127.0.0.1:5432/app
        """

    override func setUpWithError() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-kit-config-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        setenv("SLUICE_KIT_TEST_PASSWORD", "s3cret", 1)
        unsetenv("SLUICE_KIT_TEST_UNSET")
    }

    override func tearDown() {
        unsetenv("SLUICE_KIT_TEST_PASSWORD")
        if let directory { try? FileManager.default.removeItem(atPath: directory) }
    }

    private func write(_ name: String, _ text: String) throws -> String {
        let path = directory + "/" + name + ".yml"
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    private func load(_ path: String) throws -> SluiceConfig { try SluiceConfig.load(path: path, registry: .builtin) }

    // MARK: Good files

    func testMinimalFileGetsDefaults() throws {
        let path = try write("minimal", Self.source + "\nsinks:\n  - {name: local, type: sqlite, path: ./replica.db}\n")
        let config = try load(path)
        XCTAssertEqual(config.file, path)
        XCTAssertEqual(config.dataDirectory, URL(fileURLWithPath: directory).standardizedFileURL.path + "/sluice-data",
                       "data_dir defaults to ./sluice-data beside the file")
        XCTAssertEqual(config.topics, ["app"])
        XCTAssertEqual(config.sinks.map(\.topics), [["app"]], "a sink reads every topic by default")
        XCTAssertNil(config.metrics)
        XCTAssertEqual(config.retention.segmentBytes, RetentionPolicy.default.segmentBytes)
        XCTAssertNil(config.retention.maxBytes)
    }

    func testEveryTopLevelKeyAndEnvironmentExpansion() throws {
        let path = try write("full", """
            data_dir: state/data
            metrics: {listen: ":9187"}
            logging: {format: json, level: debug}
            retention: {segment_bytes: 1MB, max_bytes: 10GB, max_age: 7d}
            sources:
              - name: app
                type: postgres
                url: postgresql://sluice:${SLUICE_KIT_TEST_PASSWORD}@db/app_${SLUICE_KIT_TEST_PASSWORD}
                tables: [public.a, public.b]
                heartbeat_interval: 500ms
              - name: other
                type: postgres
                url: postgresql://127.0.0.1/other
            sinks:
              - name: files
                type: file
                path: out
                topics: [other]
            """)
        let config = try load(path)
        XCTAssertEqual(config.dataDirectory, URL(fileURLWithPath: directory).standardizedFileURL.path + "/state/data")
        XCTAssertEqual(config.metrics?.host, "127.0.0.1", "no address in listen: loopback (the console shows the pipeline)")
        XCTAssertEqual(config.metrics?.port, 9187)
        XCTAssertEqual(config.logFormat, "json")
        XCTAssertEqual(config.logLevel, "debug")
        XCTAssertEqual(config.retention.segmentBytes, 1 << 20)
        XCTAssertEqual(config.retention.maxBytes, 10 << 30)
        XCTAssertEqual(config.retention.maxAgeMillis, 7 * 86_400_000)
        XCTAssertEqual(config.topics, ["app", "other"])
        XCTAssertEqual(config.sinks.map(\.topics), [["other"]])
        XCTAssertEqual(try config.sources[0].string("url"), "postgresql://sluice:s3cret@db/app_s3cret")
        XCTAssertEqual(config.sources[0].path, "sources[0] (app)")
        XCTAssertEqual(try config.sources[0].durationMillis("heartbeat_interval", default: 0), 500)
        // Every connector accepts its section.
        for source in config.sources { XCTAssertNoThrow(try ConnectorRegistry.builtin.sources[source.type]!.init(config: source)) }
        for sink in config.sinks { XCTAssertNoThrow(try ConnectorRegistry.builtin.sinks[sink.config.type]!.init(config: sink.config)) }
    }

    func testMetricsTokenComesFromTheEnvironment() throws {
        let path = try write("token", Self.source + "\nmetrics: {listen: '0.0.0.0:9187', token: '${SLUICE_KIT_TOKEN}'}\n")
        setenv("SLUICE_KIT_TOKEN", "t0ken", 1)
        defer { unsetenv("SLUICE_KIT_TOKEN") }
        let config = try load(path)
        XCTAssertEqual(config.metrics?.token, "t0ken")
        XCTAssertEqual(config.metrics?.host, "0.0.0.0", "an address the file names is kept")
    }

    func testBuiltinRegistryHasEveryConnector() {
        XCTAssertEqual(ConnectorRegistry.builtin.sources.keys.sorted(), ["exec", "postgres"])
        XCTAssertEqual(ConnectorRegistry.builtin.sinks.keys.sorted(), ["exec", "file", "http", "nats", "postgres", "sqlite"])
    }

    // MARK: Bad files

    /// A bad file: the key the error must name, words its message must contain, and the line if it matters.
    struct BadFile {
        var name: String
        var text: String
        var key: String
        var message: String
        var line: Int?
    }

    static let badFiles: [BadFile] = [
        BadFile(name: "unknown-top-level-key", text: source + "\nsinkz: []\n", key: "sinkz", message: "unknown key", line: 5),
        BadFile(name: "unset-variable", text: source.replacingOccurrences(of: "sluice@", with: "sluice:${SLUICE_KIT_TEST_UNSET}@"),
                key: "sources[0].url", message: "SLUICE_KIT_TEST_UNSET is not set", line: 4),
        BadFile(name: "bad-variable-name", text: source.replacingOccurrences(of: "sluice@", with: "${A-B}@"),
                key: "sources[0].url", message: "not a valid variable reference"),
        BadFile(name: "unterminated-variable", text: source.replacingOccurrences(of: "sluice@", with: "${OOPS@"),
                key: "sources[0].url", message: "unterminated"),
        BadFile(name: "duplicate-source", text: source + "\n  - {name: app, type: postgres, url: postgresql://x/y}\n",
                key: "sources[1].name", message: "duplicate source name 'app'"),
        BadFile(name: "duplicate-sink", text: source + "\nsinks:\n  - {name: s, type: sqlite, path: a.db}\n  - {name: s, type: file, path: f}\n",
                key: "sinks[1].name", message: "duplicate sink name 's'"),
        // The YAML parser rejects a repeated key itself, naming it in the message.
        BadFile(name: "duplicate-key", text: "data_dir: a\ndata_dir: b\n" + source, key: "", message: "duplicated key(s): 'data_dir'"),
        BadFile(name: "bad-name", text: source.replacingOccurrences(of: "name: app", with: "name: my app"),
                key: "sources[0].name", message: "only letters, digits"),
        BadFile(name: "unknown-source-type", text: source.replacingOccurrences(of: "type: postgres", with: "type: mysql"),
                key: "sources[0] (app).type", message: "unknown source type 'mysql'"),
        BadFile(name: "unknown-sink-type", text: source + "\nsinks:\n  - {name: s, type: kafka}\n",
                key: "sinks[0] (s).type", message: "unknown sink type 'kafka'"),
        BadFile(name: "sink-topic-missing", text: source + "\nsinks:\n  - {name: s, type: file, path: f, topics: [nope]}\n",
                key: "sinks[0] (s).topics", message: "'nope' is not a topic"),
        BadFile(name: "bad-duration", text: source + "\nretention: {max_age: 7 weeks}\n", key: "retention.max_age",
                message: "'7 weeks' is not a duration"),
        BadFile(name: "bad-size", text: source + "\nretention: {max_bytes: lots}\n", key: "retention.max_bytes",
                message: "'lots' is not a size"),
        BadFile(name: "small-segments", text: source + "\nretention: {segment_bytes: 1KB}\n", key: "retention.segment_bytes",
                message: "at least 64KB"),
        BadFile(name: "unknown-retention-key", text: source + "\nretention: {keep: 1d}\n", key: "retention.keep", message: "unknown key"),
        BadFile(name: "bad-listen", text: source + "\nmetrics: {listen: localhost}\n", key: "metrics.listen", message: "not host:port"),
        BadFile(name: "port-zero", text: source + "\nmetrics: {listen: '127.0.0.1:0'}\n", key: "metrics.listen", message: "port 0 is no port"),
        BadFile(name: "unknown-metrics-key", text: source + "\nmetrics: {listen: ':1', path: /m}\n", key: "metrics.path",
                message: "unknown key"),
        BadFile(name: "empty-metrics-token", text: source + "\nmetrics: {listen: ':1', token: ''}\n", key: "metrics.token",
                message: "non-empty"),
        BadFile(name: "spaced-metrics-token", text: source + "\nmetrics: {listen: ':1', token: 'a b'}\n", key: "metrics.token",
                message: "without spaces"),
        BadFile(name: "bad-log-level", text: source + "\nlogging: {level: loud}\n", key: "logging.level", message: "must be one of"),
        BadFile(name: "no-sources", text: "data_dir: x\n", key: "sources", message: "is required"),
        BadFile(name: "empty-sources", text: "sources: []\n", key: "sources", message: "at least one source"),
        BadFile(name: "sources-not-list", text: "sources: {name: app}\n", key: "sources", message: "must be a list"),
        BadFile(name: "source-without-type", text: "sources:\n  - name: app\n", key: "sources[0].type", message: "is required"),
        BadFile(name: "not-yaml", text: "sources: [\n", key: "", message: "is not valid YAML"),
        BadFile(name: "empty", text: "", key: "", message: "is empty"),
        BadFile(name: "not-a-mapping", text: "- just\n- a list\n", key: "", message: "must be a mapping"),
    ]

    func testBadFilesNameFileAndKey() throws {
        for bad in Self.badFiles {
            let path = try write(bad.name, bad.text)
            XCTAssertThrowsError(try load(path), bad.name) { error in
                guard let error = error as? ConfigError else { return XCTFail("\(bad.name): \(error) is not a ConfigError") }
                XCTAssertEqual(error.file, path, bad.name)
                XCTAssertTrue(error.key.hasPrefix(bad.key), "\(bad.name): key '\(error.key)' should be '\(bad.key)'")
                XCTAssertTrue(error.message.contains(bad.message), "\(bad.name): '\(error.message)' should say '\(bad.message)'")
                if let line = bad.line { XCTAssertEqual(error.line, line, "\(bad.name): \(error)") }
                XCTAssertTrue(error.description.hasPrefix(path), "\(bad.name): '\(error)' starts with the file")
                if !bad.key.isEmpty { XCTAssertTrue(error.description.contains(bad.key), "\(bad.name): '\(error)' names the key") }
            }
        }
    }

    func testMissingFile() {
        XCTAssertThrowsError(try load(directory + "/nope.yml")) { error in
            XCTAssertEqual((error as? ConfigError)?.message, "the configuration file does not exist")
        }
    }

    /// A connector rejects what it does not understand, naming the section and the key.
    func testConnectorSectionsAreCheckedByTheirConnector() throws {
        let cases: [(sink: String, key: String, message: String)] = [
            ("{name: s, type: sqlite, path: a.db, pathh: b.db}", "sinks[0] (s).pathh", "unknown key for a 'sqlite' sink"),
            ("{name: s, type: sqlite}", "sinks[0] (s).path", "is required"),
            ("{name: s, type: file, path: f, max_file_bytes: huge}", "sinks[0] (s).max_file_bytes", "'huge' is not a size"),
            ("{name: s, type: exec, command: [x], ack_timeout: soon}", "sinks[0] (s).ack_timeout", "'soon' is not a duration"),
            ("{name: s, type: http, url: 'ftp://x'}", "sinks[0] (s).url", "is not an http:// or https:// URL"),
            ("{name: s, type: http, url: 'http://hooks.example.com/x'}", "sinks[0] (s).url", "or set insecure: true"),
            ("{name: s, type: postgres, url: 'postgresql://h/d', topics: [app], extra: 1}", "sinks[0] (s).extra", "unknown key"),
            ("{name: s, type: http, url: 'https://h/x', ca_file: missing-ca.pem}", "sinks[0] (s).ca_file", "'missing-ca.pem' does not exist"),
            ("{name: s, type: http, url: 'https://h/x', client_cert: cert.pem, client_key: nokey.pem}", "sinks[0] (s).client_key",
             "'nokey.pem' does not exist"),
            ("{name: s, type: http, url: 'https://h/x', client_key: key.pem}", "sinks[0] (s).client_key", "needs client_cert"),
            ("{name: s, type: http, url: 'https://h/x', client_cert: cert.pem}", "sinks[0] (s).client_cert", "holds no private key"),
            ("{name: s, type: http, url: 'https://h/x', ca_file: key.pem}", "sinks[0] (s).ca_file", "is not a CA certificate in PEM form"),
            ("{name: s, type: http, url: 'http://127.0.0.1/x', ca_file: cert.pem}", "sinks[0] (s).ca_file", "applies to https:// URLs only"),
        ]
        // PEM-looking files, relative to the configuration file's folder, for the TLS keys above.
        try "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n".write(toFile: directory + "/cert.pem", atomically: true, encoding: .utf8)
        try "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n".write(toFile: directory + "/key.pem", atomically: true, encoding: .utf8)
        for (number, test) in cases.enumerated() {
            let config = try load(try write("sink-\(number)", Self.source + "\nsinks:\n  - \(test.sink)\n"))
            let section = config.sinks[0].config
            XCTAssertThrowsError(try ConnectorRegistry.builtin.sinks[section.type]!.init(config: section), test.sink) { error in
                guard let error = error as? ConfigError else { return XCTFail("\(test.sink): \(error)") }
                XCTAssertEqual(error.key, test.key, test.sink)
                XCTAssertTrue(error.message.contains(test.message), "\(test.sink): \(error)")
            }
        }
        for sink in ["{name: s, type: http, url: 'http://hooks.example.com/x', insecure: true}",
                     "{name: s, type: http, url: 'http://127.0.0.1:8080/x'}", "{name: s, type: http, url: 'https://hooks.example.com/x'}",
                     "{name: s, type: http, url: 'https://h/x', ca_file: cert.pem, client_cert: cert.pem, client_key: key.pem}"] {
            let section = try load(try write("http", Self.source + "\nsinks:\n  - \(sink)\n")).sinks[0].config
            XCTAssertNoThrow(try ConnectorRegistry.builtin.sinks["http"]!.init(config: section), sink)
        }
        let source = try load(try write("source", Self.source + "\n    heartbeat_interval: soon\n    backfill_chunk_size: 0\n"))
        XCTAssertThrowsError(try ConnectorRegistry.builtin.sources["postgres"]!.init(config: source.sources[0])) { error in
            XCTAssertEqual((error as? ConfigError)?.key, "sources[0] (app).heartbeat_interval", "\(error)")
        }
    }

    /// Every mistake of a file at once, in file order, with the key meant for a misspelt one.
    func testEveryMistakeOfAFileAtOnce() throws {
        let path = try write("many", """
            sourcs: []
            sources:
              - name: app
                type: postgres
                url: postgresql://127.0.0.1/app
              - name: two
                type: postgress
            sinks:
              - name: lite
                type: sqlite
                pth: ./x.db
              - name: pg
                type: postgres
                url: postgresql://127.0.0.1/y
                topic: [app]
            metrics: {listn: "127.0.0.1:1"}
            """)
        XCTAssertThrowsError(try load(path)) { error in
            guard let errors = (error as? ConfigErrors)?.errors else { return XCTFail("\(error) is not ConfigErrors") }
            let expected: [(key: String, words: String)] = [
                ("sourcs", "did you mean 'sources'?"),
                ("sources[1] (two).type", "did you mean 'postgres'?"),
                ("sinks[0] (lite).path", "is 'pth' meant to be 'path'?"),
                ("sinks[1] (pg).topic", "did you mean 'topics'?"),
                ("metrics.listn", "did you mean 'listen'?"),
            ]
            XCTAssertEqual(errors.map(\.key), expected.map(\.key), "\(error)")
            for (found, wanted) in zip(errors, expected) {
                XCTAssertTrue(found.message.contains(wanted.words), "\(found) should say \(wanted.words)")
                XCTAssertEqual(found.file, path)
            }
            XCTAssertEqual(errors.map { $0.line ?? 0 }, errors.map { $0.line ?? 0 }.sorted(), "in file order: \(error)")
        }
    }

    /// Sizes in any case, decimal-looking or binary suffixes alike.
    func testSizesAcceptEveryCommonSpelling() {
        for text in ["64MB", "64mb", "64Mb", "64MiB", "64mib", " 64 MB "] {
            XCTAssertEqual(parseByteSize(text), 64 << 20, text)
        }
        XCTAssertEqual(parseByteSize("1gb"), 1 << 30)
        XCTAssertEqual(parseByteSize("4096"), 4096)
        XCTAssertNil(parseByteSize("64 megs"))
    }

    /// A YAML syntax error names the line, the column and the likely cause in plain words.
    func testYAMLSyntaxErrorsSayWhereAndWhy() throws {
        let cases: [(text: String, line: Int, words: String)] = [
            ("sources:\n  - name: app\n    type: postgres\n   url: x\n", 4, "indentation"),
            ("sources:\n  - name: app\n\ttype: postgres\n", 3, "tab"),
            ("sources:\n  - name: app\n    url: postgresql://x: y\n", 3, "put the value in quotes"),
            ("sources:\n  - name: app\n    tables: [a, b\n", 4, "not closed with ]"),
        ]
        for (number, test) in cases.enumerated() {
            let path = try write("yaml-\(number)", test.text)
            XCTAssertThrowsError(try load(path)) { error in
                guard let error = error as? ConfigError else { return XCTFail("\(error)") }
                XCTAssertTrue(error.message.contains(test.words), "\(test.text): \(error)")
                XCTAssertTrue(error.message.hasPrefix("is not valid YAML"), "\(error)")
                if test.line != 4 || number == 0 { XCTAssertEqual(error.line, test.line, "\(error)") }
            }
        }
    }

    /// A YAML number or boolean where table names are expected is an error naming the key.
    func testWrongYAMLTypeForTables() throws {
        for value in ["42", "true", "false", "[1, 2]"] {
            let config = try load(try write("tables-\(value)", Self.source + "\n    tables: \(value)\n"))
            XCTAssertThrowsError(try ConnectorRegistry.builtin.sources["postgres"]!.init(config: config.sources[0]), value) { error in
                XCTAssertEqual((error as? ConfigError)?.key, "sources[0] (app).tables", "\(value): \(error)")
            }
        }
    }

    /// A name or path that YAML reads as a number or a boolean is refused, naming the key; quoted it is a name.
    func testNumbersAndBooleansWhereANameIsExpected() throws {
        let cases = [("name: 12345", "sources[0].name", "a number"), ("slot: yes", "sources[0].slot", "a boolean"),
                     ("publication: 1.5", "sources[0].publication", "a number")]
        for (line, key, kind) in cases {
            let text = Self.source.replacingOccurrences(of: "- name: app", with: line.hasPrefix("name") ? "- " + line : "- name: app\n    " + line)
            XCTAssertThrowsError(try load(try write("typed-\(key)", text)), line) { error in
                let found = ConfigErrors.unpack(error) ?? []
                XCTAssertTrue(found.contains { $0.key == key && $0.message.contains("found \(kind)") }, "\(line): \(error)")
            }
        }
        for (value, key) in [("12", "sinks[0].tables"), ("[public.a, true]", "sinks[0].tables[1]")] {
            let text = Self.source + "\nsinks:\n  - {name: r, type: sqlite, path: r.db, tables: \(value)}\n"
            XCTAssertThrowsError(try load(try write("typed-tables", text)), value) { error in
                XCTAssertTrue((ConfigErrors.unpack(error) ?? []).contains { $0.key == key }, "\(value): \(error)")
            }
        }
        let quoted = try load(try write("quoted", Self.source.replacingOccurrences(of: "- name: app", with: "- name: \"12345\"\n    slot: \"s1\"")))
        XCTAssertEqual(quoted.sources.map(\.name), ["12345"])
        // Explicitly empty is not the default.
        let empty = try load(try write("empty-slot", Self.source + "\n    slot: ''\n"))
        XCTAssertThrowsError(try ConnectorRegistry.builtin.sources["postgres"]!.init(config: empty.sources[0])) { error in
            XCTAssertEqual((error as? ConfigError)?.key, "sources[0] (app).slot", "\(error)")
        }
    }
}

extension ConfigLoaderTests {
    /// A value that makes no sense (a zero size, timeout or interval) or a key written with no value
    /// (YAML null) is refused naming the key, the value and what to write instead; null is never the default.
    func testZeroAndNoValueAreRefusedNamingTheKeyAndTheFix() throws {
        let sinks: [(sink: String, key: String, words: [String])] = [
            ("{name: s, type: file, path: f, max_file_bytes: 0}", "max_file_bytes", ["'0' is too small", "at least 1KB", "default, 64MB"]),
            ("{name: s, type: http, url: 'https://h/x', timeout: 0}", "timeout", ["'0' is too short", "at least 100ms", "default, 10s"]),
            ("{name: s, type: exec, command: [x], ack_timeout: 0s}", "ack_timeout", ["'0s' is too short", "default, 1m"]),
            ("{name: s, type: file, path: f, max_file_bytes: ~}", "max_file_bytes", ["has no value", "default (64MB)"]),
            ("{name: s, type: sqlite, path: }", "path", ["has no value", "required"]),
            ("{name: s, type: http, url: 'https://h/x', headers: }", "headers", ["has no value"]),
            ("{name: s, type: sqlite, path: a.db, tables: }", "tables", ["has no value"]),
            ("{name: s, type: sqlite, path: a.db, rename: ~}", "rename", ["has no value"]),
        ]
        for (number, test) in sinks.enumerated() {
            let path = try write("senseless-sink-\(number)", Self.source + "\nsinks:\n  - \(test.sink)\n")
            XCTAssertThrowsError(try load(path).sinks.forEach { section in
                _ = try ConnectorRegistry.builtin.sinks[section.config.type]!.init(config: section.config)
            }, test.sink) { error in
                let found = ConfigErrors.unpack(error) ?? []
                XCTAssertTrue(found.contains { $0.key == "sinks[0] (s).\(test.key)" && test.words.allSatisfy($0.message.contains) },
                              "\(test.sink): \(error)")
                XCTAssertTrue(found.allSatisfy { $0.file == path }, "\(error)")
            }
        }
        let sources: [(line: String, key: String, words: [String])] = [
            ("heartbeat_interval: 0", "heartbeat_interval", ["'0' is too short", "at least 100ms", "default, 10s"]),
            ("slot:", "slot", ["has no value", "default (sluice_app)"]),
            ("publication: ~", "publication", ["has no value"]),
            ("tables:", "tables", ["has no value", "every table of the publication"]),
            ("retained_wal_warning: 0", "retained_wal_warning", ["'0' is too small", "at least 1MB"]),
            ("catch_up_threshold: 0", "catch_up_threshold", ["'0' is too small", "or off"]),
            ("streaming: null", "streaming", ["has no value", "default (true)"]),
            ("backfill_chunk_size: 0", "backfill_chunk_size", ["'0' is not a whole number in 1...1000000"]),
        ]
        for (number, test) in sources.enumerated() {
            let config = try load(try write("senseless-source-\(number)", Self.source + "\n    \(test.line)\n"))
            XCTAssertThrowsError(try ConnectorRegistry.builtin.sources["postgres"]!.init(config: config.sources[0]), test.line) { error in
                let found = error as? ConfigError
                XCTAssertEqual(found?.key, "sources[0] (app).\(test.key)", "\(test.line): \(error)")
                XCTAssertTrue(test.words.allSatisfy { found?.message.contains($0) ?? false }, "\(test.line): \(error)")
            }
        }
        let files: [(text: String, key: String, words: [String])] = [
            ("data_dir: ~\n" + Self.source, "data_dir", ["has no value", "default (./sluice-data)"]),
            ("data_dir:\n" + Self.source, "data_dir", ["has no value"]),
            (Self.source + "\nretention: {max_bytes: 0}\n", "retention.max_bytes", ["'0' is too small", "at least 1MB"]),
            (Self.source + "\nretention: {max_age: 0s}\n", "retention.max_age", ["'0s' is too short", "at least 1m"]),
            (Self.source + "\nretention: {max_age: }\n", "retention.max_age", ["has no value"]),
        ]
        for (number, test) in files.enumerated() {
            let path = try write("senseless-file-\(number)", test.text)
            XCTAssertThrowsError(try load(path), test.text) { error in
                let found = error as? ConfigError
                XCTAssertEqual(found?.key, test.key, "\(test.text): \(error)")
                XCTAssertEqual(found?.file, path)
                XCTAssertTrue(test.words.allSatisfy { found?.message.contains($0) ?? false }, "\(test.text): \(error)")
            }
        }
        // The smallest sensible values still load.
        let smallest = try load(try write("smallest", Self.source + "\n    heartbeat_interval: 100ms\n"
                                          + "sinks:\n  - {name: s, type: file, path: f, max_file_bytes: 1KB}\n"))
        XCTAssertNoThrow(try ConnectorRegistry.builtin.sources["postgres"]!.init(config: smallest.sources[0]))
        XCTAssertNoThrow(try ConnectorRegistry.builtin.sinks["file"]!.init(config: smallest.sinks[0].config))
    }
}

extension ConfigLoaderTests {
    /// A --config that is empty, a directory or an empty file says which, and what to give instead.
    func testConfigPathsThatAreNoFile() throws {
        let cases: [(path: String, file: String, words: String)] = [
            ("", "--config", "is empty: give the path of the configuration file"),
            (directory!, directory!, "is a directory, not a configuration file"),
            ("/dev/null", "/dev/null", "is empty"),
            (directory + "/missing/sluice.yml", directory + "/missing/sluice.yml", "does not exist"),
        ]
        for test in cases {
            XCTAssertThrowsError(try load(test.path), test.path) { error in
                let found = error as? ConfigError
                XCTAssertEqual(found?.file, test.file, "\(error)")
                XCTAssertTrue(found?.message.contains(test.words) ?? false, "\(test.path): \(error)")
            }
        }
    }
}

extension ConfigLoaderTests {
    /// A data_dir that is a file, or lies under one, is a mistake of the file: exit 2 naming it, for
    /// every command, instead of run failing with a system error and check saying "ready".
    func testDataDirThatIsAFile() throws {
        try "x".write(toFile: directory + "/taken", atomically: true, encoding: .utf8)
        for (dataDir, words) in [("taken", "/taken is a file, not a directory"), ("taken/sub", "cannot be created: \(directory!)/taken is a file")] {
            let path = try write("datadir-file", "data_dir: \(dataDir)\n" + Self.source)
            XCTAssertThrowsError(try load(path), dataDir) { error in
                let found = error as? ConfigError
                XCTAssertEqual(found?.key, "data_dir", "\(error)")
                XCTAssertTrue(found?.message.contains(words) ?? false, "\(dataDir): \(error)")
            }
        }
        XCTAssertNoThrow(try load(try write("datadir-new", "data_dir: not/yet/there\n" + Self.source)))
    }
}

extension ConfigLoaderTests {
    /// An aggregate whose table or helper names pass PostgreSQL's 63 bytes is refused at a PostgreSQL sink
    /// (PostgreSQL would cut them, and two measures' helper tables would become one); SQLite takes it.
    func testAggregateNamesPastPostgreSQLsLimit() throws {
        let long = String(repeating: "t", count: 50)
        let aggregate = "aggregates: [{table: public.\(long), from: public.orders, window: {tumbling: 1m, time: commit_time}, "
            + "measures: {biggest_amount: \"max(amount)\", smallest_amount: \"min(amount)\"}}]"
        let config = try load(try write("long-aggregate", Self.source + "\nsinks:\n  - {name: r, type: postgres, url: 'postgresql://h/d', \(aggregate)}\n"
                                         + "  - {name: l, type: sqlite, path: l.db, \(aggregate)}\n"))
        XCTAssertThrowsError(try ConnectorRegistry.builtin.sinks["postgres"]!.init(config: config.sinks[0].config)) { error in
            let found = error as? ConfigError
            XCTAssertEqual(found?.key, "sinks[0] (r).aggregates[0]", "\(error)")
            XCTAssertTrue(found?.message.contains("_sluice_\(long)_biggest_amount (73 bytes), longer than PostgreSQL's 63") ?? false, "\(error)")
        }
        XCTAssertNoThrow(try ConnectorRegistry.builtin.sinks["sqlite"]!.init(config: config.sinks[1].config))
    }
}

extension ConfigLoaderTests {
    /// An aggregate's table the sink also writes (the table it mirrors `from` or another captured table
    /// into, its own sluice_offsets) is refused before anything starts: both would write it.
    func testAggregateTablesTheSinkAlsoWrites() throws {
        func aggregate(_ table: String) -> String {
            "aggregates: [{table: \(table), from: public.orders, window: {tumbling: 1m, time: created_at}, measures: {n: \"count(*)\"}}]"
        }
        for (table, owner) in [("public.orders", "the table the sink mirrors public.orders into"), ("sluice_offsets", "the sink's own table")] {
            let config = try load(try write("aggregate-owned", Self.source + "\nsinks:\n  - {name: l, type: sqlite, path: l.db, \(aggregate(table))}\n"))
            XCTAssertThrowsError(try ConnectorRegistry.builtin.sinks["sqlite"]!.init(config: config.sinks[0].config)) { error in
                XCTAssertEqual((error as? ConfigError)?.key, "sinks[0] (l).aggregates[0].table", "\(error)")
                XCTAssertTrue((error as? ConfigError)?.message.contains(owner) ?? false, "\(error)")
            }
        }
        let listed = Self.source + "\n    tables: [public.orders, public.totals]\nsinks:\n  - {name: l, type: sqlite, path: l.db, \(aggregate("public.totals"))}\n"
        XCTAssertThrowsError(try load(try write("aggregate-mirrored", listed))) { error in
            XCTAssertEqual((error as? ConfigError)?.key, "sinks[0] (l).aggregates[0].table", "\(error)")
            XCTAssertTrue((error as? ConfigError)?.message.contains("the table the sink mirrors public.totals into") ?? false, "\(error)")
        }
        let renamed = listed.replacingOccurrences(of: "l.db, ", with: "l.db, rename: {public.totals: archive.totals}, ")
        XCTAssertNoThrow(try load(try write("aggregate-renamed", renamed)))
    }

    /// An aggregate reads what the sink receives: a `from:` that tables: leaves out, that is renamed,
    /// or that no source captures never gets a change, so it is refused at load naming the fix.
    func testAnAggregateFromATableTheSinkNeverReceivesIsRefused() throws {
        func sink(_ extra: String, from: String = "public.orders") -> String {
            Self.source + "\n    tables: [public.orders, public.totals]\nsinks:\n  - {name: l, type: sqlite, path: l.db, \(extra)"
                + "aggregates: [{table: public.agg, from: \(from), window: {tumbling: 1m, time: created_at}, measures: {n: \"count(*)\"}}]}\n"
        }
        for (name, text, fragment) in [
            ("excluded", sink("tables: [\"!public.orders\"], "), "tables: leaves public.orders out"),
            ("renamed", sink("rename: {public.orders: sales.orders}, "), "write from: sales.orders"),
            ("unknown", sink("", from: "public.nosuch"), "names public.nosuch, which this sink does not receive"),
        ] {
            XCTAssertThrowsError(try load(try write("aggregate-\(name)", text)), name) { error in
                XCTAssertEqual((error as? ConfigError)?.key, "sinks[0] (l).aggregates[0].from", "\(name): \(error)")
                XCTAssertTrue((error as? ConfigError)?.message.contains(fragment) ?? false, "\(name): \(error)")
            }
        }
        XCTAssertNoThrow(try load(try write("aggregate-received", sink("rename: {public.orders: sales.orders}, ", from: "sales.orders"))))
    }

    /// A NATS port out of range is a bad URL (it was retried forever); a mistake in `topics:` names
    /// the line of its own value, not the line of `backend:`.
    func testJetStreamSettingsRefuseBadPortsAndNameTheirLine() throws {
        let bad = try write("nats-port", "topics:\n  backend: jetstream\n  servers: [nats://127.0.0.1:99999]\n" + Self.source + "\n")
        XCTAssertThrowsError(try load(bad)) { error in
            XCTAssertEqual((error as? ConfigError)?.key, "topics.servers", "\(error)")
            XCTAssertTrue("\(error)".contains("'nats://127.0.0.1:99999' is not a nats://host:port"), "\(error)")
        }
        let replicas = try write("nats-replicas", "topics:\n  backend: jetstream\n  servers: [nats://127.0.0.1:4222]\n\n  replicas: 0\n" + Self.source + "\n")
        XCTAssertThrowsError(try load(replicas)) { error in
            XCTAssertEqual((error as? ConfigError)?.key, "topics.replicas", "\(error)")
            XCTAssertTrue("\(error)".contains("nats-replicas.yml:5:"), "the line of replicas: \(error)")
        }
    }

    /// SQLite's column names ignore case: two measures "n" and "N" are refused at an SQLite sink, not at PostgreSQL.
    func testAggregateColumnsDifferingOnlyInCaseAtSQLite() throws {
        let aggregate = "aggregates: [{table: public.agg, from: public.orders, window: {tumbling: 1m, time: created_at}, "
            + "measures: {n: \"count(*)\", \"N\": \"sum(amount)\"}}]"
        let config = try load(try write("aggregate-case", Self.source + "\nsinks:\n  - {name: l, type: sqlite, path: l.db, \(aggregate)}\n"
                                         + "  - {name: r, type: postgres, url: 'postgresql://h/d', \(aggregate)}\n"))
        XCTAssertThrowsError(try ConnectorRegistry.builtin.sinks["sqlite"]!.init(config: config.sinks[0].config)) { error in
            XCTAssertEqual((error as? ConfigError)?.key, "sinks[0] (l).aggregates[0]", "\(error)")
            XCTAssertTrue((error as? ConfigError)?.message.contains("columns n and N, one column in SQLite") ?? false, "\(error)")
        }
        XCTAssertNoThrow(try ConnectorRegistry.builtin.sinks["postgres"]!.init(config: config.sinks[1].config))
    }
}

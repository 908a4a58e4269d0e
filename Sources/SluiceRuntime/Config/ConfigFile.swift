import Foundation
import SluiceKit
import Yams

/// A parsed and validated configuration file (see DESIGN.md for the keys).
public struct SluiceConfig {
    public struct SinkSection {
        public var config: ConnectorConfig
        public var topics: [String]
        /// The sink's transform keys (read before the connector reads its own).
        public var transforms = SinkTransforms()
    }

    public struct Metrics {
        public var host: String
        public var port: Int
        /// Required by the console (`/`, `/api/*`) when set; from `${VAR}` so it is not in the file.
        public var token: String? = nil
    }

    public var file: String
    public var dataDirectory: String
    public var sources: [ConnectorConfig]
    public var sinks: [SinkSection]
    public var metrics: Metrics?
    public var logFormat: String?
    public var logLevel: String?
    public var retention: RetentionPolicy
    public var topicBackend: TopicBackend = .embedded
    /// Problems worth a warning that do not stop the load (a secret file others can read).
    public var warnings: [String] = []

    /// Every topic this process touches: its sources' and those its sinks read.
    public var topics: [String] {
        var names = sources.map(\.name)
        for sink in sinks { for topic in sink.topics where !names.contains(topic) { names.append(topic) } }
        return names
    }
}

/// How long topics keep segments that every sink has passed, and optional hard limits.
enum ConfigLoader {
    static let topLevelKeys = ["data_dir", "sources", "sinks", "metrics", "logging", "retention", "topics"]

    static func load(path: String, registry: ConnectorRegistry,
                     environment: [String: String] = ProcessInfo.processInfo.environment) throws -> SluiceConfig {
        let file = path
        guard !path.isEmpty else {
            throw ConfigError(file: "--config", key: "", message: "is empty: give the path of the configuration file, e.g. --config sluice.yml")
        }
        var isDirectory: ObjCBool = false
        let exists = FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory)
        if exists && isDirectory.boolValue {
            throw ConfigError(file: file, key: "", message: "is a directory, not a configuration file: give the path of the YAML file, e.g. \(path)/sluice.yml")
        }
        guard let handle = FileHandle(forReadingAtPath: path) else {
            let reason = exists ? "cannot be read (\(String(cString: strerror(errno))))" : "does not exist"
            throw ConfigError(file: file, key: "", message: "the configuration file \(reason)")
        }
        defer { try? handle.close() }
        let data = (try? handle.readToEnd()) ?? Data()
        guard let text = String(data: data, encoding: .utf8) else {
            throw ConfigError(file: file, key: "", message: "is not UTF-8 text")
        }
        let baseDirectory = URL(fileURLWithPath: path).deletingLastPathComponent().standardizedFileURL.path
        let root: ConfigValue
        var expansion = Expansion(file: file, environment: environment, baseDirectory: baseDirectory)
        do {
            guard let node = try Yams.compose(yaml: text) else {
                throw ConfigError(file: file, key: "", message: "is empty; it needs at least a sources: list")
            }
            root = try convert(node, path: "", expansion: &expansion)
        } catch let error as ConfigError {
            throw error
        } catch let error as YamlError {
            let (line, message) = describe(error, text: text)
            throw ConfigError(file: file, line: line, key: "", message: message)
        }
        guard case let .map(entries, _) = root else {
            throw ConfigError(file: file, line: root.line, key: "", message: "must be a mapping of keys (data_dir, sources, sinks, …)")
        }
        // Every mistake of the file is collected and reported together.
        var problems: [ConfigError] = []
        for entry in entries where !topLevelKeys.contains(entry.key) {
            problems.append(ConfigError(file: file, line: entry.value.line, key: entry.key,
                                        message: "unknown key\(didYouMean(entry.key, among: topLevelKeys)) (known: \(topLevelKeys.joined(separator: ", ")))"))
        }
        func value(_ key: String) -> ConfigValue? { entries.first { $0.key == key }?.value }

        var dataDirectory = "./sluice-data"
        if let raw = value("data_dir") {
            if case let .scalar(text, _) = raw, !text.isEmpty {
                dataDirectory = text
            } else {
                let found = if case .null = raw { "has no value" } else { "must be a directory path" }
                problems.append(ConfigError(file: file, line: raw.line, key: "data_dir",
                                            message: "\(found): write a directory path, or leave the key out for the default (./sluice-data)"))
            }
        }
        problems += TypedNames.problems(expansion.typedScalars, file: file)
        if !dataDirectory.hasPrefix("/") {
            dataDirectory = URL(fileURLWithPath: dataDirectory, relativeTo: URL(fileURLWithPath: baseDirectory + "/"))
                .standardizedFileURL.path
        }
        if let blocker = fileInTheWay(of: dataDirectory) {
            let what = blocker == dataDirectory ? "is a file, not a directory" : "cannot be created: \(blocker) is a file, not a directory"
            problems.append(ConfigError(file: file, line: value("data_dir")?.line, key: "data_dir",
                                        message: "\(dataDirectory) \(what): give the path of a directory (created if missing)"))
        }

        let backend = try problems.collect { try topicBackend(value("topics"), file: file, baseDirectory: baseDirectory) } ?? .embedded
        // With a shared broker a process may hold only sinks (a split deployment).
        let shared = backend != .embedded
        let parsedSources = try problems.collect {
            try sections(value("sources"), key: "sources", file: file, dataDirectory: dataDirectory,
                         baseDirectory: baseDirectory, required: !shared)
        }
        let sources = parsedSources ?? []
        if let parsedSources, parsedSources.isEmpty && !(shared && value("sinks") != nil) {
            problems.append(ConfigError(file: file, line: value("sources")?.line, key: "sources",
                                        message: shared ? "needs at least one source, or sinks: for a sink-only process" : "needs at least one source"))
        }
        for source in sources where registry.sources[source.type] == nil {
            problems.append(source.error("type", "unknown source type '\(source.type)'\(didYouMean(source.type, among: Array(registry.sources.keys))) "
                                         + "(known: \(registry.sources.keys.sorted().joined(separator: ", ")))"))
        }
        let topics = sources.map(\.name)
        var sinks: [SluiceConfig.SinkSection] = []
        let sinkSections = try problems.collect {
            try sections(value("sinks"), key: "sinks", file: file, dataDirectory: dataDirectory, baseDirectory: baseDirectory, required: false)
        } ?? []
        for sink in sinkSections {
            guard registry.sinks[sink.type] != nil else {
                problems.append(sink.error("type", "unknown sink type '\(sink.type)'\(didYouMean(sink.type, among: Array(registry.sinks.keys))) "
                                           + "(known: \(registry.sinks.keys.sorted().joined(separator: ", ")))"))
                continue
            }
            // Transform keys first: they are read even when the topics are wrong, so no key is reported unknown.
            let transforms = try problems.collect { try SinkTransforms(config: sink) }
            if var section = try problems.collect({ try sinkTopics(sink, topics: topics, shared: shared) }), let transforms,
               try problems.collect({ try TransformTables.check(transforms, sink: sink, topics: section.topics, sources: sources) }) != nil {
                section.transforms = transforms
                sinks.append(section)
            }
        }
        let metricsSettings: SluiceConfig.Metrics? = try problems.collect { try Self.metrics(value("metrics"), file: file) } ?? nil
        let logFormat = try problems.collect { try logging(value("logging"), file: file, key: "format", choices: ["human", "json"]) } ?? nil
        let logLevel = try problems.collect {
            try logging(value("logging"), file: file, key: "level", choices: ["trace", "debug", "info", "notice", "warning", "error"])
        } ?? nil
        let retentionPolicy: RetentionPolicy = try problems.collect { try Self.retention(value("retention"), file: file) } ?? .default
        if !problems.isEmpty {
            // The connectors' own keys too, so one run lists everything (their initializers do no I/O).
            for source in sources {
                guard let type = registry.sources[source.type] else { continue }
                _ = try problems.collect { try type.init(config: source) }
            }
            for sink in sinkSections {
                guard let type = registry.sinks[sink.type] else { continue }
                _ = try problems.collect { try type.init(config: sink) }
            }
        }
        try ConfigErrors.throwIfAny(problems.uniqued().enumerated().sorted { ($0.element.line ?? 0, $0.offset) < ($1.element.line ?? 0, $1.offset) }.map(\.element))
        return SluiceConfig(file: file, dataDirectory: dataDirectory, sources: sources, sinks: sinks, metrics: metricsSettings,
                            logFormat: logFormat, logLevel: logLevel, retention: retentionPolicy, topicBackend: backend,
                            warnings: expansion.warnings)
    }

    /// The path itself, or the nearest existing folder above it, when that is not a directory.
    static func fileInTheWay(of path: String) -> String? {
        var candidate = URL(fileURLWithPath: path)
        while candidate.path != "/" {
            var isDirectory: ObjCBool = false
            if FileManager.default.fileExists(atPath: candidate.path, isDirectory: &isDirectory) {
                return isDirectory.boolValue ? nil : candidate.path
            }
            candidate.deleteLastPathComponent()
        }
        return nil
    }

    /// The topics a sink reads: its `topics:` (default: every source of the file).
    static func sinkTopics(_ sink: ConnectorConfig, topics: [String], shared: Bool) throws -> SluiceConfig.SinkSection {
        let wanted = try sink.stringList("topics") ?? topics
        guard !wanted.isEmpty else {
            throw sink.error("topics", topics.isEmpty ? "is required in a sink-only process: name the topics (sources) to read"
                                                      : "must name at least one topic")
        }
        for topic in wanted where !topics.contains(topic) {
            // A shared broker holds topics other processes' sources write; the stream is checked at start.
            guard shared else {
                throw sink.error("topics", "'\(topic)' is not a topic\(didYouMean(topic, among: topics)); topics are named after sources: \(topics.joined(separator: ", "))")
            }
            guard topic.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_" || $0 == "-") }), topic.count <= 64 else {
                throw sink.error("topics", "'\(topic)' is not a topic name (letters, digits, _ and -)")
            }
        }
        guard Set(wanted).count == wanted.count else { throw sink.error("topics", "lists a topic twice") }
        return .init(config: sink, topics: wanted)
    }

    /// The `sources:` or `sinks:` list: each entry a mapping with a unique `name` and a `type`.
    static func sections(_ raw: ConfigValue?, key: String, file: String, dataDirectory: String, baseDirectory: String,
                         required: Bool) throws -> [ConnectorConfig] {
        guard let raw, raw != .null(line: 0) else {
            if required { throw ConfigError(file: file, key: key, message: "is required: list at least one \(key.dropLast())") }
            return []
        }
        if case .null = raw { return [] }
        guard case let .list(items, _) = raw else {
            throw ConfigError(file: file, line: raw.line, key: key, message: "must be a list (each entry starting with '- name:')")
        }
        var names: Set<String> = []
        var problems: [ConfigError] = []
        let parsed: [ConnectorConfig] = try items.enumerated().compactMap { index, item in
            try problems.collect { try section(index: index, item: item) }
        }
        try ConfigErrors.throwIfAny(problems)
        return parsed

        func section(index: Int, item: ConfigValue) throws -> ConnectorConfig {
            let path = "\(key)[\(index)]"
            guard case let .map(entries, line) = item else {
                throw ConfigError(file: file, line: item.line, key: path, message: "must be a mapping with name and type")
            }
            func scalar(_ field: String) throws -> String {
                guard let value = entries.first(where: { $0.key == field })?.value else {
                    throw ConfigError(file: file, line: line, key: "\(path).\(field)", message: "is required")
                }
                guard case let .scalar(text, _) = value, !text.isEmpty else {
                    throw ConfigError(file: file, line: value.line, key: "\(path).\(field)", message: "must be a non-empty value")
                }
                return text
            }
            let name = try scalar("name")
            guard name.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_" || $0 == "-") }), name.count <= 64 else {
                throw ConfigError(file: file, line: line, key: "\(path).name",
                                  message: "'\(name)' may use only letters, digits, _ and - (at most 64)")
            }
            guard names.insert(name).inserted else {
                throw ConfigError(file: file, line: line, key: "\(path).name", message: "duplicate \(key.dropLast()) name '\(name)'")
            }
            return ConnectorConfig(file: file, path: "\(path) (\(name))", name: name, type: try scalar("type"),
                                   entries: entries, line: line, dataDirectory: dataDirectory, baseDirectory: baseDirectory)
        }
    }

    static func metrics(_ raw: ConfigValue?, file: String) throws -> SluiceConfig.Metrics? {
        guard let raw else { return nil }
        guard case let .map(entries, line) = raw else {
            throw ConfigError(file: file, line: raw.line, key: "metrics", message: "must be a mapping, e.g. {listen: \"127.0.0.1:9187\"}")
        }
        for entry in entries where !["listen", "token"].contains(entry.key) {
            throw ConfigError(file: file, line: entry.value.line, key: "metrics.\(entry.key)", message: "unknown key\(didYouMean(entry.key, among: ["listen", "token"])) (known: listen, token)")
        }
        var token: String?
        if let value = entries.first(where: { $0.key == "token" })?.value {
            guard case let .scalar(text, tokenLine) = value, !text.isEmpty else {
                throw ConfigError(file: file, line: value.line, key: "metrics.token",
                                  message: "must be a non-empty string, e.g. token: ${SLUICE_CONSOLE_TOKEN}")
            }
            guard text.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) else {
                throw ConfigError(file: file, line: tokenLine, key: "metrics.token",
                                  message: "must be printable ASCII without spaces (it is sent in an HTTP header)")
            }
            Secrets.register(text)  // whatever its variable is called
            token = text
        }
        guard case let .scalar(listen, _)? = entries.first(where: { $0.key == "listen" })?.value else {
            throw ConfigError(file: file, line: line, key: "metrics.listen", message: "is required, e.g. \"127.0.0.1:9187\"")
        }
        guard let colon = listen.lastIndex(of: ":"), let port = Int(listen[listen.index(after: colon)...]),
              (0...65535).contains(port) else {
            throw ConfigError(file: file, line: line, key: "metrics.listen", message: "'\(listen)' is not host:port, e.g. 127.0.0.1:9187")
        }
        // Port 0 would listen on a port chosen by the system that nothing tells the scraper.
        guard port > 0 else {
            throw ConfigError(file: file, line: line, key: "metrics.listen", message: "'\(listen)': port 0 is no port to scrape: give one, e.g. 127.0.0.1:9187")
        }
        // Loopback unless the file names an address: the console shows the whole pipeline.
        let host = String(listen[..<colon])
        return SluiceConfig.Metrics(host: host.isEmpty ? "127.0.0.1" : host, port: port, token: token)
    }

    static func logging(_ raw: ConfigValue?, file: String, key: String, choices: [String]) throws -> String? {
        guard let raw else { return nil }
        guard case let .map(entries, _) = raw else {
            throw ConfigError(file: file, line: raw.line, key: "logging", message: "must be a mapping with format and level")
        }
        for entry in entries where !["format", "level"].contains(entry.key) {
            throw ConfigError(file: file, line: entry.value.line, key: "logging.\(entry.key)", message: "unknown key\(didYouMean(entry.key, among: ["format", "level"])) (known: format, level)")
        }
        guard let value = entries.first(where: { $0.key == key })?.value else { return nil }
        guard case let .scalar(text, line) = value, choices.contains(text) else {
            throw ConfigError(file: file, line: value.line, key: "logging.\(key)",
                              message: "must be one of: \(choices.joined(separator: ", "))")
        }
        _ = line
        return text
    }

    /// The `topics:` section: `backend: embedded` (default) or `backend: jetstream` with its servers.
    static func topicBackend(_ raw: ConfigValue?, file: String, baseDirectory: String) throws -> TopicBackend {
        guard let raw else { return .embedded }
        guard case let .map(entries, line) = raw else {
            throw ConfigError(file: file, line: raw.line, key: "topics", message: "must be a mapping, e.g. {backend: jetstream, servers: [nats://127.0.0.1:4222]}")
        }
        let known = ["backend", "servers", "replicas", "stream_prefix", "credentials", "ca_file", "user", "password", "token"]
        for entry in entries where !known.contains(entry.key) {
            throw ConfigError(file: file, line: entry.value.line, key: "topics.\(entry.key)",
                              message: "unknown key\(didYouMean(entry.key, among: known)) (known: \(known.joined(separator: ", ")))")
        }
        func scalar(_ key: String) throws -> String? {
            guard let value = entries.first(where: { $0.key == key })?.value else { return nil }
            guard case let .scalar(text, _) = value, !text.isEmpty else {
                throw ConfigError(file: file, line: value.line, key: "topics.\(key)", message: "must be a non-empty value")
            }
            return text
        }
        let backend = try scalar("backend") ?? "embedded"
        switch backend {
        case "embedded":
            for entry in entries where entry.key != "backend" {
                throw ConfigError(file: file, line: entry.value.line, key: "topics.\(entry.key)",
                                  message: "applies to backend: jetstream only; the embedded log keeps topics in data_dir")
            }
            return .embedded
        case "jetstream":
            break
        default:
            throw ConfigError(file: file, line: line, key: "topics.backend", message: "'\(backend)' is not a backend (embedded, jetstream)")
        }
        let serversValue = entries.first(where: { $0.key == "servers" })?.value
        var servers: [String] = []
        switch serversValue {
        case let .scalar(text, _)?: servers = [text]
        case let .list(items, _)?:
            for item in items {
                guard case let .scalar(text, _) = item else {
                    throw ConfigError(file: file, line: item.line, key: "topics.servers", message: "must be a list of nats://host:port URLs")
                }
                servers.append(text)
            }
        case nil: break
        case let other?:
            throw ConfigError(file: file, line: other.line, key: "topics.servers", message: "must be a list of nats://host:port URLs")
        }
        guard !servers.isEmpty else {
            throw ConfigError(file: file, line: line, key: "topics.servers", message: "is required for backend: jetstream, e.g. [nats://127.0.0.1:4222]")
        }
        for server in servers {
            guard let url = URLComponents(string: server), ["nats", "tls"].contains(url.scheme ?? ""), url.host?.isEmpty == false,
                  url.port.map({ (1...65535).contains($0) }) ?? true else {
                throw ConfigError(file: file, line: serversValue?.line, key: "topics.servers",
                                  message: "'\(server)' is not a nats://host:port (or tls://host:port) URL")
            }
        }
        // The line of a key's value, for messages about it.
        func lineOf(_ key: String) -> Int? { entries.first(where: { $0.key == key })?.value.line ?? line }
        var settings = JetStreamSettings(servers: servers)
        if let text = try scalar("replicas") {
            guard let replicas = Int(text), (1...5).contains(replicas) else {
                throw ConfigError(file: file, line: lineOf("replicas"), key: "topics.replicas", message: "'\(text)' must be a number from 1 to 5")
            }
            settings.replicas = replicas
        }
        if let prefix = try scalar("stream_prefix") {
            guard prefix.count <= 32, prefix.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_" || $0 == "-") }) else {
                throw ConfigError(file: file, line: lineOf("stream_prefix"), key: "topics.stream_prefix",
                                  message: "'\(prefix)' may use only letters, digits, _ and - (at most 32)")
            }
            settings.streamPrefix = prefix
        }
        func path(_ key: String) throws -> String? {
            guard let text = try scalar(key) else { return nil }
            let full = text.hasPrefix("/") ? text : baseDirectory + "/" + text
            guard FileManager.default.fileExists(atPath: full) else {
                throw ConfigError(file: file, line: lineOf(key), key: "topics.\(key)", message: "'\(text)' does not exist")
            }
            return full
        }
        settings.credentials = try path("credentials")
        settings.caFile = try path("ca_file")
        settings.user = try scalar("user")
        settings.password = try scalar("password")
        settings.token = try scalar("token")
        return .jetstream(settings)
    }

    static func retention(_ raw: ConfigValue?, file: String) throws -> RetentionPolicy {
        var policy = RetentionPolicy.default
        guard let raw else { return policy }
        guard case let .map(entries, _) = raw else {
            throw ConfigError(file: file, line: raw.line, key: "retention", message: "must be a mapping (max_bytes, max_age, segment_bytes)")
        }
        for entry in entries {
            guard case let .scalar(text, line) = entry.value else {
                let found = if case .null = entry.value { "has no value" } else { "must be a value" }
                throw ConfigError(file: file, line: entry.value.line, key: "retention.\(entry.key)",
                                  message: "\(found): write one, or leave the key out for no such limit")
            }
            switch entry.key {
            case "max_bytes":
                guard let size = parseByteSize(text) else {
                    throw ConfigError(file: file, line: line, key: "retention.max_bytes", message: "'\(text)' is not a size such as 10GB")
                }
                // Zero would delete every segment a sink has not read yet.
                guard size >= 1 << 20 else {
                    throw ConfigError(file: file, line: line, key: "retention.max_bytes",
                                      message: "'\(text)' is too small: give at least 1MB, or leave the key out for no size limit")
                }
                policy.maxBytes = size
            case "max_age":
                guard let millis = parseDurationMillis(text) else {
                    throw ConfigError(file: file, line: line, key: "retention.max_age", message: "'\(text)' is not a duration such as 7d or 24h")
                }
                guard millis >= 60_000 else {
                    throw ConfigError(file: file, line: line, key: "retention.max_age",
                                      message: "'\(text)' is too short: give at least 1m, or leave the key out for no age limit")
                }
                policy.maxAgeMillis = millis
            case "segment_bytes":
                guard let size = parseByteSize(text), size >= 1 << 16 else {
                    throw ConfigError(file: file, line: line, key: "retention.segment_bytes", message: "'\(text)' is not a size of at least 64KB")
                }
                policy.segmentBytes = size
            default:
                throw ConfigError(file: file, line: line, key: "retention.\(entry.key)",
                                  message: "unknown key\(didYouMean(entry.key, among: ["max_bytes", "max_age", "segment_bytes"])) (known: max_bytes, max_age, segment_bytes)")
            }
        }
        return policy
    }

    static func convert(_ node: Node, path: String, expansion: inout Expansion) throws -> ConfigValue {
        let line = (node.mark?.line ?? 0)
        switch node {
        case let .scalar(scalar):
            if scalar.style == .plain && ["~", "null", "Null", "NULL", ""].contains(scalar.string) { return .null(line: line) }
            if scalar.style == .plain, let kind = TypedNames.kind(of: node) {
                expansion.typedScalars.append(.init(path: path, line: line, text: scalar.string, kind: kind))
            }
            return .scalar(try expansion.expand(scalar.string, line: line, key: path), line: line)
        case let .sequence(sequence):
            return .list(try sequence.enumerated().map { index, item in
                try convert(item, path: "\(path)[\(index)]", expansion: &expansion)
            }, line: line)
        case let .mapping(mapping):
            var seen: Set<String> = []
            var entries: [(key: String, value: ConfigValue)] = []
            for (keyNode, valueNode) in mapping {
                let key = keyNode.string ?? ""
                let childPath = path.isEmpty ? key : "\(path).\(key)"
                guard seen.insert(key).inserted else {
                    throw ConfigError(file: expansion.file, line: keyNode.mark?.line, key: childPath, message: "appears twice")
                }
                entries.append((key, try convert(valueNode, path: childPath, expansion: &expansion)))
            }
            return .map(entries, line: line)
        case .alias:
            throw ConfigError(file: expansion.file, line: line, key: path, message: "YAML aliases are not supported")
        }
    }

    /// A YAML syntax error in plain words: where, what libyaml found, what usually causes it, and the line.
    static func describe(_ error: YamlError, text: String) -> (line: Int?, message: String) {
        let problem: String, mark: Mark, context: YamlError.Context?
        switch error {
        case let .scanner(found, what, at, _), let .parser(found, what, at, _), let .composer(found, what, at, _):
            (context, problem, mark) = (found, what, at)
        default:
            let first = "\(error)".split(separator: "\n").first.map(String.init) ?? "\(error)"
            return (nil, "is not valid YAML: \(first)")
        }
        let hint: String
        switch problem {
        case let p where p.contains("found character that cannot start any token") && context == nil:
            hint = "a tab or a character such as @ or ` starts a value: indent with spaces only, and quote such values"
        case let p where p.contains("tab character"):
            hint = "a tab character: YAML indents with spaces only"
        case let p where p.contains("mapping values are not allowed"):
            hint = "a ': ' inside a value: put the value in quotes (\"...\")"
        case let p where p.contains("did not find expected key") || p.contains("did not find expected '-' indicator"):
            hint = "this line's indentation does not match the lines above it: align keys of one mapping, and items of one list"
        case let p where p.contains("did not find expected ',' or ']'"):
            hint = "a [ list is not closed with ] (or an item in it needs quotes)"
        case let p where p.contains("did not find expected ',' or '}'"):
            hint = "a { mapping is not closed with } (or a value in it needs quotes)"
        case let p where p.contains("found unexpected end of stream"):
            hint = "the file ends inside a quoted value: close the quote"
        case let p where p.contains("found character that cannot start any token"):
            hint = "a tab or a reserved character (@, `): indent with spaces only and quote such values"
        default:
            hint = problem
        }
        let started = context.map { " (in the \(plainContext($0.text)) that starts on line \($0.mark.line))" } ?? ""
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        var shown = ""
        if mark.line >= 1 && mark.line <= lines.count {
            let source = String(lines[mark.line - 1])
            shown = "\n    \(source)\n    \(String(repeating: " ", count: max(0, min(mark.column - 1, source.count))))^"
        }
        let raw = hint == problem ? "" : " (libyaml: \(problem))"
        return (mark.line, "is not valid YAML: syntax error at column \(mark.column)\(started): \(hint)\(raw)\(shown)")
    }

    private static func plainContext(_ text: String) -> String {
        text.replacingOccurrences(of: "while parsing a ", with: "").replacingOccurrences(of: "while scanning a ", with: "")
            .replacingOccurrences(of: "block collection", with: "list").replacingOccurrences(of: "block mapping", with: "mapping")
            .replacingOccurrences(of: "flow sequence", with: "[ ] list").replacingOccurrences(of: "flow mapping", with: "{ } mapping")
            .replacingOccurrences(of: "plain scalar", with: "value").replacingOccurrences(of: "quoted scalar", with: "quoted value")
    }
}

extension Array where Element == ConfigError {
    /// The same mistake found twice (a connector validated again) is reported once.
    func uniqued() -> [ConfigError] {
        var seen: Set<String> = []
        return filter { seen.insert($0.description).inserted }
    }
}

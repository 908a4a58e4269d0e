import Foundation
import Logging
import SluiceKit

/// A sink in any language (`type: exec`, `command: [...]`): a subprocess speaking version 1 of the
/// exec protocol, JSON lines over its stdin and stdout (connectors/README.md has the reference).
///
/// The plugin owns its position: it says which transaction it made durable when it starts (`ready`)
/// and after each `flush` (`ack`), so a transactional target stays exactly once. A plugin that crashes,
/// hangs past `ack_timeout` or writes something that is not the protocol is stopped and started again
/// with backoff, and resumes from its own position.
public final class ExecSink: Sink {
    public static let typeName = "exec"
    public static let protocolVersion = 1

    let name: String
    let settings: PluginSettings
    var ackTimeoutMillis: Int { settings.timeoutMillis }
    private var plugin: PluginProcess?
    private var renderers: TopicRenderers
    private var batch = 0
    private var logger = Logger(label: "sluice")

    public init(config: ConnectorConfig) throws {
        name = config.name
        settings = try PluginSettings(config: config, example: "sink.py")
        renderers = TopicRenderers(format: try ChangeFormat.read(config), namesTopic: true)
        try config.rejectUnknownKeys()
    }

    public func open(context: SinkContext) throws -> [String: SinkPosition] {
        logger = context.logger
        close()
        try settings.preflight(subject: "sink \(name)")
        return try guarded {
            let plugin = try settings.launch()
            plugin.timeoutMillis = ackTimeoutMillis
            self.plugin = plugin
            try plugin.send("{\"kind\":\"hello\",\"protocol\":\(Self.protocolVersion),\"sink\":\(jsonString(name)),\"config\":\(settings.configJSON)}")
            try plugin.flush(timeoutMillis: ackTimeoutMillis)
            let ready = try expect("ready", from: plugin)
            guard (ready["protocol"] as? Int) == Self.protocolVersion else {
                throw ConnectorError.fatal("sink \(name): the plugin speaks exec protocol \(ready["protocol"] ?? "?"), Sluice speaks \(Self.protocolVersion)")
            }
            return try Self.positions(ready["positions"], plugin: name)
        }
    }

    public func preflight() throws { try settings.preflight(subject: "sink \(name)") }

    public func beginBatch() throws {}

    public func beginTransaction(_ begin: BeginRecord, topic: String, offset: UInt64) throws {
        let line = renderers.begin(begin, topic: topic, offset: offset)
        try guarded { try plugin!.send(line) }
    }

    public func apply(_ change: Change) throws {
        let lines = renderers.events(change)
        try guarded { for line in lines { try plugin!.send(line) } }
    }

    public func commitTransaction(_ commit: CommitRecord, position: SinkPosition) throws {
        let line = renderers.commit(commit, topic: position.topic, offset: position.offset)
        try guarded { try plugin!.send(line) }
    }

    public func commitBatch(positions: [SinkPosition]) throws {
        batch += 1
        try guarded {
            let plugin = self.plugin!
            try plugin.send("{\"kind\":\"flush\",\"id\":\(batch)}")
            try plugin.flush(timeoutMillis: ackTimeoutMillis)
            let ack = try expect("ack", from: plugin)
            guard (ack["id"] as? Int) == batch else {
                throw ConnectorError.transient("sink \(name): the plugin acknowledged batch \(ack["id"] ?? "?") instead of \(batch)")
            }
        }
    }

    /// The plugin keeps nothing it was not asked to flush: stopping it drops the open batch.
    public func rollbackBatch() {
        plugin?.kill()
        plugin = nil
    }

    public func close() {
        guard let plugin else { return }
        try? plugin.send("{\"kind\":\"shutdown\"}")
        try? plugin.flush(timeoutMillis: 1000)
        plugin.stop()
        self.plugin = nil
    }

    public func readPositions() throws -> [String: SinkPosition]? {
        let positions = try open(context: SinkContext(name: name, logger: logger))
        close()
        return positions
    }

    public func check(logger: Logger) -> [CheckFinding] { settings.check(subject: "sink \(name)") }

    // MARK: Protocol

    /// Reads lines until one of `kind`; relays `log` lines; an `error` line or anything malformed fails.
    private func expect(_ kind: String, from plugin: PluginProcess) throws -> [String: Any] {
        while true {
            let line = try plugin.readLine(timeoutMillis: ackTimeoutMillis)
            guard let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
                  let type = object["kind"] as? String else {
                throw ConnectorError.transient("sink \(name): the plugin wrote a line that is not the exec protocol: \(line.prefix(200))")
            }
            switch type {
            case kind:
                return object
            case "log":
                logger.info("\(object["message"] as? String ?? "")", metadata: ["plugin": "\(name)"])
            case "error":
                let message = object["message"] as? String ?? "(no message)"
                if object["retry"] as? Bool == false { throw ConnectorError.fatal("sink \(name): the plugin failed: \(message)") }
                throw ConnectorError.transient("sink \(name): the plugin failed: \(message)")
            default:
                throw ConnectorError.transient("sink \(name): the plugin sent '\(type)' where '\(kind)' was expected")
            }
        }
    }

    static func positions(_ value: Any?, plugin: String) throws -> [String: SinkPosition] {
        guard let value, !(value is NSNull) else { return [:] }
        guard let map = value as? [String: Any] else {
            throw ConnectorError.transient("sink \(plugin): 'positions' must be an object of topic → {offset, lsn}")
        }
        var positions: [String: SinkPosition] = [:]
        for (topic, entry) in map {
            guard let entry = entry as? [String: Any], let offset = (entry["offset"] as? NSNumber)?.uint64Value else {
                throw ConnectorError.transient("sink \(plugin): position of topic \(topic) lacks a numeric offset")
            }
            positions[topic] = SinkPosition(topic: topic, offset: offset,
                                            lsn: (entry["lsn"] as? String).flatMap { LSN($0) } ?? .zero,
                                            commitTime: (entry["commit_time"] as? String).flatMap(parseMicros) ?? 0)
        }
        return positions
    }

    /// A configuration value as JSON, for the handshake.
    static func json(_ value: ConfigValue) -> String {
        switch value {
        case let .scalar(text, _): return jsonString(text)
        case .null: return "{}"
        case let .list(items, _): return "[" + items.map(json).joined(separator: ",") + "]"
        case let .map(entries, _): return "{" + entries.map { jsonString($0.key) + ":" + json($0.value) }.joined(separator: ",") + "}"
        }
    }

    private func guarded<T>(_ body: () throws -> T) throws -> T {
        do {
            return try body()
        } catch let error as ConnectorError {
            throw error
        } catch {
            throw ConnectorError.transient("sink \(name): \(error)")
        }
    }
}

/// How the file, http, exec and nats sinks write each change (`format:`): `sluice` (the default), the
/// object `sluice tail --json` prints; or `debezium`, the value of Debezium's change event
/// (``DebeziumEnvelope``).
public enum ChangeFormat: String, Sendable, CaseIterable {
    case sluice, debezium

    /// The sink's `format:` key.
    public static func read(_ config: ConnectorConfig) throws -> ChangeFormat {
        ChangeFormat(rawValue: try config.choice("format", allCases.map(\.rawValue), default: sluice.rawValue)) ?? .sluice
    }
}

/// Renders one topic's records for a sink: begin and commit objects as `sluice tail --json` prints them
/// (sinks resume from them), each change in the sink's ``ChangeFormat``. Keep one per topic and pass it
/// every record in order: the Debezium envelope numbers the events of each transaction.
public struct ChangeRenderer {
    public let format: ChangeFormat
    public private(set) var json: RecordJSON
    public private(set) var debezium: DebeziumEnvelope

    /// `namesTopic`: Sluice's objects carry a `topic` field (for outputs that mix topics).
    public init(format: ChangeFormat, topic: String, namesTopic: Bool = false,
                clock: @escaping @Sendable () -> Micros = nowMicros) {
        self.format = format
        json = RecordJSON(topic: namesTopic ? topic : nil)
        debezium = DebeziumEnvelope(serverName: topic, clock: clock)
    }

    public mutating func begin(_ record: BeginRecord, offset: UInt64) -> String {
        _ = debezium.begin(record)
        return json.begin(record, offset: offset)
    }

    /// The change's lines, in order: one, or for Debezium a key-changing update's delete and create
    /// events (``DebeziumEnvelope/events(_:)``). A sink writes them all for the one change.
    public mutating func events(_ change: Change) -> [String] {
        format == .debezium ? debezium.events(change) : [json.change(change)]
    }

    public mutating func commit(_ record: CommitRecord, offset: UInt64) -> String {
        _ = debezium.end(record)
        return json.commit(record, offset: offset)
    }

    /// For outputs made only of Debezium's events: the BEGIN transaction event.
    public mutating func debeziumBegin(_ record: BeginRecord) -> String { debezium.begin(record) }

    /// For outputs made only of Debezium's events: the END transaction event, carrying the sink's
    /// position in `sluice` (`{"offset", "lsn", "commit_time"}`) so the sink can resume from it.
    public mutating func debeziumEnd(_ record: CommitRecord, offset: UInt64) -> String {
        debezium.end(record, extra: [("sluice", "{\"offset\":\(offset),\"lsn\":" + jsonString(record.commitLSN.description)
                                                + ",\"commit_time\":" + jsonString(formatMicros(record.commitTime)) + "}")])
    }
}

/// A sink's renderers, one per topic, made as each topic first appears.
public struct TopicRenderers {
    public let format: ChangeFormat
    let namesTopic: Bool
    private var renderers: [String: ChangeRenderer] = [:]

    public init(format: ChangeFormat, namesTopic: Bool = false) {
        self.format = format
        self.namesTopic = namesTopic
    }

    /// Renders with `topic`'s renderer.
    public mutating func render(_ topic: String, _ body: (inout ChangeRenderer) -> String) -> String {
        var renderer = renderers.removeValue(forKey: topic) ?? ChangeRenderer(format: format, topic: topic, namesTopic: namesTopic)
        let line = body(&renderer)
        renderers[topic] = renderer
        return line
    }

    public mutating func begin(_ record: BeginRecord, topic: String, offset: UInt64) -> String {
        render(topic) { $0.begin(record, offset: offset) }
    }

    public mutating func events(_ change: Change) -> [String] {
        var renderer = renderers.removeValue(forKey: change.topic)
            ?? ChangeRenderer(format: format, topic: change.topic, namesTopic: namesTopic)
        let lines = renderer.events(change)
        renderers[change.topic] = renderer
        return lines
    }

    public mutating func commit(_ record: CommitRecord, topic: String, offset: UInt64) -> String {
        render(topic) { $0.commit(record, offset: offset) }
    }
}

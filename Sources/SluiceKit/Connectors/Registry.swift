/// The connectors a `sluice` binary knows, keyed by the configuration's `type`.
///
/// The built-in ones are registered by the runtime; a custom build adds its own with
/// `registry.register(MySink.self)` before handing the registry to the command line.
public struct ConnectorRegistry {
    public private(set) var sources: [String: any Source.Type] = [:]
    public private(set) var sinks: [String: any Sink.Type] = [:]

    public init() {}

    public mutating func register(_ source: any Source.Type) { sources[source.typeName] = source }
    public mutating func register(_ sink: any Sink.Type) { sinks[sink.typeName] = sink }
}

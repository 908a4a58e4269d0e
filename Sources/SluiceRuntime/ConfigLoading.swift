import SluiceKit

extension SluiceConfig {
    /// Loads and validates a configuration file against the connectors of `registry`.
    public static func load(path: String, registry: ConnectorRegistry) throws -> SluiceConfig {
        try ConfigLoader.load(path: path, registry: registry)
    }
}

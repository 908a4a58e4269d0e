import ExecConnectors
import FileSink
import HTTPSink
import NATSSink
import PostgresSink
import PostgresSource
import SluiceKit
import SQLiteSink

extension ConnectorRegistry {
    /// The connectors every `sluice` binary has.
    public static var builtin: ConnectorRegistry {
        var registry = ConnectorRegistry()
        registry.register(PostgresSource.self)
        registry.register(ExecSource.self)
        registry.register(SQLiteSink.self)
        registry.register(PostgresSink.self)
        registry.register(FileSink.self)
        registry.register(ExecSink.self)
        registry.register(HTTPSink.self)
        registry.register(NATSSink.self)
        return registry
    }
}

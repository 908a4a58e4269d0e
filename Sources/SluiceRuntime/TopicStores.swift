import Logging
import SluiceKit
import SluiceJetStream
import SluiceLog

/// The wiring of topic backends: the one place that names an implementation of ``TopicStore``.
public enum TopicStores {
    /// The store the configuration chooses (the embedded log in `data_dir`, the default).
    public static func make(_ config: SluiceConfig, logger: Logger) throws -> any TopicStore {
        switch config.topicBackend {
        case .embedded:
            return EmbeddedLog(dataDirectory: config.dataDirectory, segmentBytes: config.retention.segmentBytes, logger: logger)
        case let .jetstream(settings):
            return JetStreamStore(settings: settings, retention: config.retention, logger: logger)
        }
    }

    /// What holds topic `name`, for messages: "stream SLUICE_app in JetStream at …", "topic app in the embedded log in …".
    public static func storageName(_ name: String, store: any TopicStore) -> String {
        if let jetStream = store as? JetStreamStore { return "stream \(jetStream.streamName(name)) in \(store.location)" }
        return "topic \(name) in the \(store.location)"
    }
}

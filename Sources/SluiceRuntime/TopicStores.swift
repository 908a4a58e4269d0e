import Logging
import SluiceKit
import SluiceLog

/// The wiring of topic backends: the one place that names an implementation of ``TopicStore``.
public enum TopicStores {
    /// The store the configuration chooses (the embedded log in `data_dir`, the default).
    public static func make(_ config: SluiceConfig, logger: Logger) throws -> any TopicStore {
        EmbeddedLog(dataDirectory: config.dataDirectory, segmentBytes: config.retention.segmentBytes, logger: logger)
    }
}

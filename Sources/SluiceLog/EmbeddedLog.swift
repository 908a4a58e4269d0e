import Foundation
import Logging
import SluiceKit

/// The embedded topic log of a data directory: `<data_dir>/topics/<topic>/`.
public final class EmbeddedLog: @unchecked Sendable {
    public let dataDirectory: String
    let logger: Logger
    private let lock = NSLock()
    private var topics: [String: EmbeddedTopic] = [:]

    public init(dataDirectory: String, logger: Logger) {
        self.dataDirectory = dataDirectory
        self.logger = logger
    }

    public func directory(of topic: String) -> String { dataDirectory + "/topics/" + topic }

    /// The shared topic object; readers and the writer in this process use the same one.
    public func topic(_ name: String) -> EmbeddedTopic {
        lock.lock()
        defer { lock.unlock() }
        if let topic = topics[name] { return topic }
        let topic = EmbeddedTopic(name: name, directory: directory(of: name),
                                  logger: logger.with("topic", name))
        topics[name] = topic
        return topic
    }

    /// Recovers the topic's files and opens it for appending.
    public func openWriter(_ name: String, segmentBytes: UInt64 = 256 << 20) throws -> EmbeddedTopicWriter {
        try EmbeddedTopicWriter(topic: topic(name), segmentBytes: segmentBytes)
    }

    public func exists(_ name: String) -> Bool {
        !SegmentFile.list(directory(of: name)).isEmpty
    }
}

extension Logger {
    func with(_ key: String, _ value: String) -> Logger {
        var copy = self
        copy[metadataKey: key] = "\(value)"
        return copy
    }
}

import Foundation
import Logging
import SluiceKit

/// The embedded topic log of a data directory: `<data_dir>/topics/<topic>/`.
public final class EmbeddedLog: TopicStore, @unchecked Sendable {
    public let dataDirectory: String
    /// Size at which a writer starts a new segment.
    public let segmentBytes: UInt64
    let logger: Logger
    private let lock = NSLock()
    private var topics: [String: EmbeddedTopic] = [:]

    public init(dataDirectory: String, segmentBytes: UInt64 = RetentionPolicy.defaultSegmentBytes, logger: Logger) {
        self.dataDirectory = dataDirectory
        self.segmentBytes = segmentBytes
        self.logger = logger
    }

    public var location: String { "embedded log in \(DataDirectory(dataDirectory).topics)" }

    public func directory(of topic: String) -> String { DataDirectory(dataDirectory).topic(topic) }

    public func topic(_ name: String) -> any Topic { embeddedTopic(name) }

    /// The shared topic object; readers and the writer in this process use the same one.
    public func embeddedTopic(_ name: String) -> EmbeddedTopic {
        lock.lock()
        defer { lock.unlock() }
        if let topic = topics[name] { return topic }
        let topic = EmbeddedTopic(name: name, directory: directory(of: name),
                                  logger: logger.with("topic", name))
        topics[name] = topic
        return topic
    }

    /// Recovers the topic's files and opens it for appending.
    public func openWriter(_ name: String) throws -> any TopicWriter { try embeddedWriter(name) }

    /// The writer as its own type, with an optional segment size of its own (tests, tools).
    public func embeddedWriter(_ name: String, segmentBytes: UInt64? = nil) throws -> EmbeddedTopicWriter {
        try EmbeddedTopicWriter(topic: embeddedTopic(name), segmentBytes: segmentBytes ?? self.segmentBytes)
    }

    public func exists(_ name: String) -> Bool {
        !SegmentFile.list(directory(of: name)).isEmpty
    }

    /// Deletes segments every reader passed, then the oldest ones past `max_bytes` or older than
    /// `max_age`; the segment holding the last commit marker is always kept.
    public func applyRetention(_ anyTopic: any Topic, floor: UInt64?, policy: RetentionPolicy) -> String? {
        guard let topic = anyTopic as? EmbeddedTopic else { return nil }
        var deleted = 0
        if let floor { deleted += topic.deleteSegments(before: floor) }
        if let maxBytes = policy.maxBytes {
            var segments = topic.segments()
            while segments.count > 1, segments.reduce(0, { $0 + $1.bytes }) > maxBytes {
                let removed = topic.deleteSegments(before: segments[1].base)
                guard removed > 0 else { break }
                deleted += removed
                segments = topic.segments()
            }
        }
        if let maxAge = policy.maxAgeMillis {
            let cutoff = Date(timeIntervalSinceNow: -Double(maxAge) / 1000)
            let segments = topic.segments()
            if let keepFrom = segments.firstIndex(where: { $0.modified >= cutoff }), keepFrom > 0 {
                deleted += topic.deleteSegments(before: segments[keepFrom].base)
            }
        }
        return deleted > 0 ? "\(deleted) segment(s)" : nil
    }
}

extension Logger {
    func with(_ key: String, _ value: String) -> Logger {
        var copy = self
        copy[metadataKey: key] = "\(value)"
        return copy
    }
}

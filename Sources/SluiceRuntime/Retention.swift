import Foundation
import Logging
import SluiceKit

/// Applies retention to every topic of a process: the store deletes what every sink has passed and,
/// when configured, the oldest data beyond `retention.max_bytes` or older than `retention.max_age` even
/// if a sink still needs it (that sink then fails with a message saying so; it never skips silently).
/// The last commit marker is always kept.
struct Retention: @unchecked Sendable {
    let store: any TopicStore
    let policy: RetentionPolicy
    let topics: [any Topic]
    /// The sinks reading each topic.
    let readers: [String: [SinkProgress]]
    let logger: Logger

    func apply() {
        for topic in topics {
            guard let deleted = store.applyRetention(topic, floor: passedByAll(topic), policy: policy) else { continue }
            logger.info("retention deleted", metadata: ["topic": "\(topic.name)", "deleted": "\(deleted)",
                                                      "first_offset": "\(topic.firstOffset)"])
            for sink in readers[topic.name] ?? [] {
                if let next = sink.nextOffset(topic: topic.name), next < topic.firstOffset {
                    logger.error("sink \(sink.sink) fell behind retention of topic \(topic.name): it needs offset \(next), the topic now starts at \(topic.firstOffset)")
                }
            }
        }
    }

    /// The lowest offset any reader of `topic` still needs; nil when one of them has not reported yet.
    func passedByAll(_ topic: any Topic) -> UInt64? {
        guard let sinks = readers[topic.name], !sinks.isEmpty else { return nil }
        var floor = UInt64.max
        for sink in sinks {
            guard let next = sink.nextOffset(topic: topic.name) else { return nil }
            floor = min(floor, next)
        }
        return floor
    }
}

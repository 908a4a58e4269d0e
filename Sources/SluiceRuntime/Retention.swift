import Foundation
import Logging
import SluiceKit
import SluiceLog

/// Deletes topic segments every sink has passed, and, when configured, the oldest segments beyond
/// `retention.max_bytes` or older than `retention.max_age` even if a sink still needs them (that sink
/// then fails with a message saying so; it never skips silently). The segment holding the last commit
/// marker is always kept.
struct Retention: @unchecked Sendable {
    let policy: RetentionPolicy
    let topics: [EmbeddedTopic]
    /// The sinks reading each topic.
    let readers: [String: [SinkProgress]]
    let logger: Logger

    func apply() {
        for topic in topics {
            var deleted = 0
            if let floor = passedByAll(topic) { deleted += topic.deleteSegments(before: floor) }
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
            guard deleted > 0 else { continue }
            logger.info("retention deleted segments", metadata: ["topic": "\(topic.name)", "segments": "\(deleted)",
                                                                 "first_offset": "\(topic.firstOffset)"])
            for sink in readers[topic.name] ?? [] {
                if let next = sink.nextOffset(topic: topic.name), next < topic.firstOffset {
                    logger.error("sink \(sink.sink) fell behind retention of topic \(topic.name): it needs offset \(next), the topic now starts at \(topic.firstOffset)")
                }
            }
        }
    }

    /// The lowest offset any reader of `topic` still needs; nil when one of them has not reported yet.
    func passedByAll(_ topic: EmbeddedTopic) -> UInt64? {
        guard let sinks = readers[topic.name], !sinks.isEmpty else { return nil }
        var floor = UInt64.max
        for sink in sinks {
            guard let next = sink.nextOffset(topic: topic.name) else { return nil }
            floor = min(floor, next)
        }
        return floor
    }
}

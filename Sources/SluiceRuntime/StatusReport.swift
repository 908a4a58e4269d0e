import Foundation
import Logging
import SluiceKit

/// Everything `sluice status` shows, gathered from the stores themselves (topic files, source and
/// target databases), so it works whether or not the daemon runs; the daemon's status file adds
/// each connector's live state.
public struct StatusReport {
    public struct Source {
        public var name: String
        public var type: String
        public var state: String
        public var error: String?
        public var status: SourceStatus
    }

    public struct Topic {
        public var name: String
        public var firstOffset: UInt64
        /// Offset of the last durable commit marker; nil while the topic is empty.
        public var endOffset: UInt64?
        public var events: UInt64
        public var sizeBytes: UInt64
        public var lastCommitTime: Micros?
        public var lastCommitLSN: LSN?
        /// Why the topic is known to have lost committed transactions, if it has.
        public var damage: String?
    }

    public struct SinkTopic {
        public var topic: String
        /// Offset of the last applied commit marker; nil when nothing was applied yet.
        public var committedOffset: UInt64?
        public var lsn: LSN?
        public var lagEvents: UInt64
        /// How long the oldest transaction not yet applied has waited; 0 when caught up.
        public var lagSeconds: Double
    }

    public struct Sink {
        public var name: String
        public var type: String
        public var state: String
        public var error: String?
        public var topics: [SinkTopic]
        public var lagEvents: UInt64 { topics.reduce(0) { $0 + $1.lagEvents } }
        public var lagSeconds: Double { topics.map(\.lagSeconds).max() ?? 0 }
    }

    public var daemonPID: Int32?
    public var sources: [Source] = []
    public var topics: [Topic] = []
    public var sinks: [Sink] = []

    public static func gather(config: SluiceConfig, registry: ConnectorRegistry, logger: Logger) throws -> StatusReport {
        var report = StatusReport()
        report.daemonPID = DataDirectoryLock.isHeld(dataDirectory: config.dataDirectory)
        // Only the running daemon's own file counts (not one a previous run left behind).
        let live = report.daemonPID.flatMap { pid in
            StatusFile.read(dataDirectory: config.dataDirectory).flatMap { $0.pid == pid ? $0 : nil }
        }
        func state(_ kind: String, _ name: String) -> (String, String?) {
            guard report.daemonPID != nil else { return ("stopped", nil) }
            guard let connector = live?.connector(kind, name) else { return ("starting", nil) }
            return (connector.state, connector.error)
        }

        for section in config.sources {
            let source = try registry.sources[section.type]!.init(config: section)
            let (current, error) = state("source", section.name)
            report.sources.append(Source(name: section.name, type: section.type, state: current, error: error,
                                         status: source.status()))
        }
        let store = try TopicStores.make(config, logger: logger)
        var topics: [String: any SluiceKit.Topic] = [:]
        for name in config.topics {
            let topic = store.topic(name)
            topics[name] = topic
            let durable = topic.durableCommit
            report.topics.append(Topic(name: name, firstOffset: topic.firstOffset, endOffset: durable?.offset,
                                       events: durable?.commit.totalEvents ?? 0, sizeBytes: topic.sizeBytes,
                                       lastCommitTime: durable?.commit.commitTime, lastCommitLSN: durable?.commit.commitLSN,
                                       damage: topic.damage))
        }
        let now = nowMicros()
        for section in config.sinks {
            let sink = try registry.sinks[section.config.type]!.init(config: section.config)
            var (current, liveError) = state("sink", section.config.name)
            var problem = liveError
            // Caught up with a topic that lost transactions is not caught up.
            if let damaged = section.topics.first(where: { topics[$0]?.damage != nil }), let damage = topics[damaged]?.damage {
                current = "failed"
                problem = "topic \(damaged) lost transactions after its last commit marker: \(damage)"
            }
            var positions: [String: SinkPosition] = [:]
            if let live, live.knownSinks?.contains(section.config.name) ?? false {
                // The running daemon knows what each sink applied; asking the target behind its back
                // could even start a second copy of a plugin.
                for entry in live.positions ?? [] where entry.sink == section.config.name {
                    positions[entry.topic] = SinkPosition(topic: entry.topic, offset: entry.offset,
                                                          lsn: LSN(entry.lsn) ?? .zero, commitTime: entry.commitTime)
                }
            } else {
                do {
                    positions = try sink.readPositions() ?? [:]
                } catch {
                    problem = problem ?? "cannot read its offsets: \(error)"
                }
            }
            var entries: [SinkTopic] = []
            for name in section.topics {
                let topic = topics[name]!
                let stored = positions[name]
                let durable = topic.durableCommit
                var entry = SinkTopic(topic: name, committedOffset: stored?.offset, lsn: stored?.lsn, lagEvents: 0, lagSeconds: 0)
                if let durable, stored.map({ durable.offset > $0.offset }) ?? true {
                    let applied = try stored.flatMap { try topic.commitMarker(at: $0.offset)?.totalEvents } ?? 0
                    entry.lagEvents = durable.commit.totalEvents &- applied
                    // The oldest transaction waiting is the one right after the applied commit marker.
                    let next = stored.map { $0.offset + 1 } ?? topic.firstOffset
                    if case let .begin(begin)? = try? topic.record(at: next) {
                        entry.lagSeconds = max(0, Double(now - begin.commitTime) / 1_000_000)
                    }
                }
                entries.append(entry)
            }
            report.sinks.append(Sink(name: section.config.name, type: section.config.type, state: current, error: problem,
                                     topics: entries))
        }
        return report
    }
}

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
        /// When the source entered its state (daemon running only).
        public var since: Date?
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
        /// Whether its storage exists (a JetStream stream, the embedded log's files); nil when unknown.
        public var exists: Bool?
        /// What a missing topic means: not a damage (a deployment that never ran has none).
        public var note: String?
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
        public var since: Date?
        /// The last retry or failure reason, kept after the sink recovers, and when it was reported.
        public var lastError: String?
        public var lastErrorAt: Date?
        public var lagEvents: UInt64 { topics.reduce(0) { $0 + $1.lagEvents } }
        public var lagSeconds: Double { topics.map(\.lagSeconds).max() ?? 0 }
    }

    public var daemonPID: Int32?
    public var sources: [Source] = []
    public var topics: [Topic] = []
    public var sinks: [Sink] = []
    /// Backfills started and not finished, one per source at most.
    public var backfills: [Backfill] = []
    /// The daemon's last 50 state changes, oldest first (empty without a daemon).
    public var changes: [StateChange] = []

    public struct Backfill {
        public var source: String
        public var progress: BackfillProgress
    }

    /// Each source's unfinished backfill, from its progress file (written by whichever process copies).
    static func backfills(_ config: SluiceConfig) -> [Backfill] {
        config.sources.compactMap { section in
            let directory = DataDirectory(config.dataDirectory).sourceState(section.name)
            guard let progress = BackfillFiles.read(BackfillProgress.self, directory: directory, name: BackfillProgress.fileName),
                  !progress.isFinished else { return nil }
            return Backfill(source: section.name, progress: progress)
        }
    }

    static func topicEntry(_ name: String, _ topic: any SluiceKit.Topic) -> Topic {
        let durable = topic.durableCommit
        return Topic(name: name, firstOffset: topic.firstOffset, endOffset: durable?.offset,
                     events: durable?.commit.totalEvents ?? 0, sizeBytes: topic.sizeBytes,
                     lastCommitTime: durable?.commit.commitTime, lastCommitLSN: durable?.commit.commitLSN,
                     damage: topic.damage)
    }

    /// The same, saying whether its storage exists: an empty topic may have none at all, and
    /// status would otherwise show nothing about it.
    static func topicEntry(_ name: String, _ topic: any SluiceKit.Topic, store: any TopicStore, writtenHere: Bool) -> Topic {
        var entry = topicEntry(name, topic)
        guard entry.endOffset == nil && entry.damage == nil else {
            entry.exists = true
            return entry
        }
        do {
            entry.exists = try store.exists(name)
            if entry.exists == false { entry.note = missingNote(name, store: store, writtenHere: writtenHere) }
        } catch {
            // Unreachable servers: not an empty topic.
            entry.note = "cannot read \(TopicStores.storageName(name, store: store)): \(error)"
        }
        return entry
    }

    static func missingNote(_ name: String, store: any TopicStore, writtenHere: Bool) -> String {
        let what = TopicStores.storageName(name, store: store)
        guard writtenHere else {
            return "\(what) does not exist: the deployment whose source writes topic \(name) has not started yet, or it was deleted"
        }
        return "\(what) does not exist: not created yet (source \(name) creates it when it first runs), "
            + "or deleted (see source \(name)'s state and the daemon's log)"
    }

    /// Caught up with a topic that lost transactions is not caught up: the sink shows failed.
    static func damageProblem(_ topics: [String], _ open: [String: any SluiceKit.Topic]) -> String? {
        guard let damaged = topics.first(where: { open[$0]?.damage != nil }), let damage = open[damaged]?.damage else { return nil }
        return "topic \(damaged) is damaged: \(damage)"
    }

    public static func gather(config: SluiceConfig, registry: ConnectorRegistry, logger: Logger) throws -> StatusReport {
        var report = StatusReport()
        report.daemonPID = DataDirectoryLock.isHeld(dataDirectory: config.dataDirectory)
        // Only the running daemon's own file counts (not one a previous run left behind).
        let live = report.daemonPID.flatMap { pid in
            StatusFile.read(dataDirectory: config.dataDirectory).flatMap { $0.pid == pid ? $0 : nil }
        }
        // A file the daemon stopped rewriting (a full disk that took even its reserve) no longer says how things are.
        let age = live.map { Date().timeIntervalSince($0.updatedAt) } ?? 0
        let stale = age > StatusFile.staleAfter
        let full = stale ? DiskSpace.fullNote(dataDirectory: config.dataDirectory, statusAge: age) : nil
        func state(_ kind: String, _ name: String) -> (String, String?) {
            guard report.daemonPID != nil else { return ("stopped", nil) }
            guard let connector = live?.connector(kind, name) else { return ("starting", nil) }
            guard stale else { return (connector.state, connector.error) }
            if kind == "source", let full { return ("retrying", full) }
            let note = full ?? "as of \(Int(age)) s ago: the daemon has not rewritten \(StatusFile.path(dataDirectory: config.dataDirectory)) since"
            return (connector.state, [connector.error, note].compactMap { $0 }.joined(separator: "; "))
        }
        report.backfills = backfills(config)
        report.changes = live?.changes ?? []

        for section in config.sources {
            let source = try registry.sources[section.type]!.init(config: section)
            let (current, error) = state("source", section.name)
            report.sources.append(Source(name: section.name, type: section.type, state: current, error: error,
                                         status: source.status(), since: live?.connector("source", section.name)?.since))
        }
        let store = try TopicStores.make(config, logger: logger)
        var topics: [String: any SluiceKit.Topic] = [:]
        for name in config.topics {
            let topic = store.topic(name)
            topics[name] = topic
            report.topics.append(topicEntry(name, topic, store: store, writtenHere: config.sources.contains { $0.name == name }))
        }
        for section in config.sinks {
            let sink = try registry.sinks[section.config.type]!.init(config: section.config)
            var (current, liveError) = state("sink", section.config.name)
            var problem = liveError
            if let damage = damageProblem(section.topics, topics) {
                current = "failed"
                problem = damage
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
                let applied = try stored.flatMap { try topic.commitMarker(at: $0.offset)?.totalEvents } ?? 0
                let lag = SinkProgress.lag(in: topic, applied: applied, position: stored)
                entries.append(SinkTopic(topic: name, committedOffset: stored?.offset, lsn: stored?.lsn,
                                         lagEvents: lag.events, lagSeconds: lag.seconds))
            }
            let connector = live?.connector("sink", section.config.name)
            report.sinks.append(Sink(name: section.config.name, type: section.config.type, state: current, error: problem,
                                     topics: entries, since: connector?.since, lastError: connector?.lastError,
                                     lastErrorAt: connector?.lastErrorAt))
        }
        return report
    }
}

import Foundation
import SluiceKit

/// The running daemon's view for the console (`/api/status`): the `status --json` object built from
/// the live pipeline, plus events per second and the last 15 minutes of each topic and sink, kept in
/// memory (bounded), sampled once a second, and saved under `data_dir` for the next start
/// (``ConsoleHistoryFile``).
final class Console: @unchecked Sendable, StatusJSONExtras {
    /// Samples kept per topic and sink: 15 minutes at one a second.
    static let historyLength = 900
    /// How often the histories are saved: a SIGKILL loses at most this many seconds of them.
    static let saveEverySeconds = 5

    struct TopicSample { var at: Double; var events: UInt64; var rate: Double }
    struct SinkSample { var at: Double; var lagEvents: UInt64; var lagSeconds: Double; var rate: Double }

    private let pipeline: Pipeline
    private let lock = NSLock()
    private var progress: [String: SinkProgress] = [:]
    private var sourceStatus: [String: SourceStatus] = [:]
    private var topicRates: [String: RateMeter] = [:]
    private var sinkRates: [String: RateMeter] = [:]
    private var topicHistory: [String: HistoryRing<TopicSample>] = [:]
    private var sinkHistory: [String: HistoryRing<SinkSample>] = [:]

    init(pipeline: Pipeline) { self.pipeline = pipeline }

    /// The sinks' progress, once their runners exist.
    func attach(_ progress: [SinkProgress]) {
        lock.lock()
        for entry in progress { self.progress[entry.sink] = entry }
        lock.unlock()
    }

    /// Asks each source for its slot and retained WAL every 2 s until `stop`, on a thread of its own:
    /// a source database that does not answer delays only this.
    func followSources(until stop: StopSignal) {
        let thread = Thread { [self] in
            repeat {
                for (name, source) in pipeline.sources {
                    let status = source.status()
                    lock.lock()
                    sourceStatus[name] = status
                    lock.unlock()
                }
            } while !stop.sleep(millis: 2000)
        }
        thread.name = "console-sources"
        thread.start()
    }

    /// One sample of every topic and sink (called once a second).
    func sample(at now: Double = Date().timeIntervalSince1970) {
        let report = report()
        lock.lock()
        defer { lock.unlock() }
        for topic in report.topics {
            topicRates[topic.name, default: RateMeter()].record(topic.events, at: now)
            let sample = TopicSample(at: now, events: topic.events, rate: topicRates[topic.name]?.perSecond ?? 0)
            topicHistory[topic.name, default: HistoryRing(capacity: Self.historyLength)].append(sample)
        }
        for sink in report.sinks {
            guard let applied = progress[sink.name]?.appliedEvents else { continue }
            sinkRates[sink.name, default: RateMeter()].record(applied, at: now)
            let sample = SinkSample(at: now, lagEvents: sink.lagEvents, lagSeconds: sink.lagSeconds,
                                    rate: sinkRates[sink.name]?.perSecond ?? 0)
            sinkHistory[sink.name, default: HistoryRing(capacity: Self.historyLength)].append(sample)
        }
    }

    /// Takes back the histories a previous run saved, those of topics and sinks still configured and
    /// at most `historyLength` seconds old, and its state changes (before the runners start).
    func restore(_ file: ConsoleHistoryFile, at now: Double = Date().timeIntervalSince1970) {
        let config = pipeline.config
        let recent = { (at: Double) in at > now - Double(Self.historyLength) && at <= now }
        lock.lock()
        for name in config.topics {
            for sample in (file.topics[name] ?? []).filter({ recent($0.at) }).suffix(Self.historyLength) {
                topicHistory[name, default: HistoryRing(capacity: Self.historyLength)].append(sample)
            }
        }
        for (section, _) in pipeline.sinks {
            let name = section.config.name
            for sample in (file.sinks[name] ?? []).filter({ recent($0.at) }).suffix(Self.historyLength) {
                sinkHistory[name, default: HistoryRing(capacity: Self.historyLength)].append(sample)
            }
        }
        lock.unlock()
        pipeline.health.restore(changes: file.changes.filter { $0.at.timeIntervalSince1970 <= now })
    }

    /// What ``restore(_:at:)`` takes back at the next start.
    func saved(at now: Double = Date().timeIntervalSince1970) -> ConsoleHistoryFile {
        let changes = pipeline.health.changes
        lock.lock()
        defer { lock.unlock() }
        return ConsoleHistoryFile(writtenAt: now, topics: topicHistory.mapValues(\.elements), sinks: sinkHistory.mapValues(\.elements),
                                  changes: changes)
    }

    /// The live pipeline as `sluice status` reports it; states are read at this instant.
    func report() -> StatusReport {
        let health = pipeline.health
        let config = pipeline.config
        lock.lock()
        let statuses = sourceStatus
        let progress = self.progress
        lock.unlock()
        var report = StatusReport()
        report.daemonPID = getpid()
        report.backfills = StatusReport.backfills(config)
        report.changes = health.changes
        for section in config.sources {
            let entry = health.all.first { $0.kind == "source" && $0.name == section.name }
            report.sources.append(.init(name: section.name, type: section.type, state: entry?.state.label ?? "starting",
                                        error: entry?.state.reason, status: statuses[section.name] ?? SourceStatus(),
                                        since: entry?.since))
        }
        var topics: [String: any SluiceKit.Topic] = [:]
        for name in config.topics {
            let topic = pipeline.store.topic(name)
            topics[name] = topic
            report.topics.append(StatusReport.topicEntry(name, topic, store: pipeline.store,
                                                         writtenHere: config.sources.contains { $0.name == name }))
        }
        for (section, _) in pipeline.sinks {
            let name = section.config.name
            let entry = health.all.first { $0.kind == "sink" && $0.name == name }
            var state = entry?.state.label ?? "starting"
            var error = entry?.state.reason
            if let damage = StatusReport.damageProblem(section.topics, topics) {
                state = "failed"
                error = damage
            }
            let positions = progress[name]?.allPositions ?? []
            let entries = section.topics.map { topicName -> StatusReport.SinkTopic in
                let position = positions.first { $0.topic == topicName }
                let lag = topics[topicName].map { topic in progress[name]?.lag(in: topic) ?? SinkProgress.lag(in: topic) }
                return .init(topic: topicName, committedOffset: position?.offset, lsn: position?.lsn,
                             lagEvents: lag?.events ?? 0, lagSeconds: lag?.seconds ?? 0)
            }
            let last = health.lastError("sink", name)
            report.sinks.append(.init(name: name, type: section.config.type, state: state, error: error, topics: entries,
                                      since: entry?.since, lastError: last?.reason, lastErrorAt: last?.at))
        }
        return report
    }

    /// `/api/status`.
    func render() -> String { StatusJSON.render(report(), extras: self) }

    // MARK: StatusJSONExtras (called with the lock not held)

    private func number(_ value: Double) -> String { value.isFinite ? String(format: "%.3f", value) : "0" }

    func top() -> [String] {
        ["\"generated_at\":\"\(StatusJSON.timestamp(Date()))\"", "\"history_seconds\":\(Self.historyLength)"]
    }

    func source(_ name: String) -> [String] {
        // A source writes the topic named after it.
        lock.lock()
        defer { lock.unlock() }
        return ["\"events_per_second\":\(number(topicRates[name]?.perSecond ?? 0))"]
    }

    func topic(_ name: String) -> [String] {
        lock.lock()
        defer { lock.unlock() }
        let history = (topicHistory[name]?.elements ?? []).map { "[\(String(format: "%.1f", $0.at)),\($0.events),\(number($0.rate))]" }
        return ["\"events_per_second\":\(number(topicRates[name]?.perSecond ?? 0))",
                "\"history\":[" + history.joined(separator: ",") + "]"]
    }

    func sink(_ name: String) -> [String] {
        lock.lock()
        defer { lock.unlock() }
        let history = (sinkHistory[name]?.elements ?? []).map {
            "[\(String(format: "%.1f", $0.at)),\($0.lagEvents),\(number($0.lagSeconds)),\(number($0.rate))]"
        }
        return ["\"events_per_second\":\(number(sinkRates[name]?.perSecond ?? 0))",
                "\"history\":[" + history.joined(separator: ",") + "]"]
    }
}

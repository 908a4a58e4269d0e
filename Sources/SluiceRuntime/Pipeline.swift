import Foundation
import Logging
import Metrics
import SluiceKit

/// Every source and sink of a configuration file, running concurrently: `sluice run`.
///
/// Shutdown drains: sources stop at their next message and make their topics durable, then sinks
/// apply what the topics hold and stop.
public final class Pipeline: @unchecked Sendable {
    public let config: SluiceConfig
    let logger: Logger
    let sources: [(name: String, source: any Source)]
    let sinks: [(section: SluiceConfig.SinkSection, sink: any Sink)]
    public let store: any TopicStore
    public let health = ConnectorHealth()
    public private(set) var sinkProgress: [SinkProgress] = []

    private let stopSources = StopSignal()
    private let stopClock = StopClock(graceMillis: SinkRunner.drainTimeoutMillis)
    private let drainSinks = StopSignal()
    private let done = DispatchSemaphore(value: 0)
    private let failureLock = NSLock()
    private var failure: String?
    private var failureCode: Int32 = 1

    /// Builds every connector from the file: any mistake in it throws before anything is touched.
    public init(config: SluiceConfig, registry: ConnectorRegistry, logger: Logger) throws {
        self.config = config
        self.logger = logger
        // Every connector validates its keys; all their mistakes are reported together.
        var problems: [ConfigError] = []
        let builtSources = try config.sources.map { section in
            try problems.collect { (section.name, try registry.sources[section.type]!.init(config: section)) }
        }
        let builtSinks = try config.sinks.map { section in
            try problems.collect { () -> (SluiceConfig.SinkSection, any Sink) in
                let sink = try registry.sinks[section.config.type]!.init(config: section.config)
                return (section, section.transforms.isEmpty ? sink : TransformingSink(wrapping: sink, transforms: section.transforms))
            }
        }
        try ConfigErrors.throwIfAny(problems)
        sources = builtSources.compactMap { $0 }
        sinks = builtSinks.compactMap { $0 }
        store = try TopicStores.make(config, logger: logger)
    }

    /// Every connector's prerequisites, probed without changing anything (`sluice check`).
    public func check() -> [CheckFinding] {
        ListenProbe.finding(config.metrics, dataDirectory: config.dataDirectory) + store.check(topics: config.topics)
            + sources.flatMap { $0.source.check(logger: logger) } + sinks.flatMap { $0.sink.check(logger: logger) }
            + aggregatedTableFindings() + transformFindings() + aggregateDefinitionFindings() + foreignTopicFindings()
    }

    /// Each sink's aggregates bound to the current schema of the table they read, as the sink receives
    /// it (after its transforms): an unknown column or a measure its type cannot take is found before
    /// anything starts, not at the table's first change.
    private func aggregateDefinitionFindings() -> [CheckFinding] {
        sources.flatMap { name, source -> [CheckFinding] in
            guard let source = source as? any SchemaSource else { return [] }
            return config.sinks.filter { $0.topics.contains(name) }.flatMap { section -> [CheckFinding] in
                guard let definitions = try? AggregateDefinition.parseAll(section.config), !definitions.isEmpty,
                      let schemas = try? source.currentSchemas(among: section.transforms.includes) else { return [] }
                var findings: [CheckFinding] = []
                for schema in schemas {
                    let received = section.transforms.isEmpty ? schema : (try? TableTransform(source: schema, transforms: section.transforms))?.target
                    guard let received else { continue }
                    for definition in definitions where definition.from == TableName(schema: received.schema, table: received.table) {
                        do { _ = try BoundAggregate(definition, schema: received) } catch {
                            findings.append(CheckFinding(.error, "sink \(section.config.name)", "\(config.file): \(error)",
                                                         fix: "correct the aggregate in \(config.file)"))
                        }
                    }
                }
                return findings
            }
        }
    }

    /// A topic a sink reads that no source here writes must exist already, as `run` requires.
    private func foreignTopicFindings() -> [CheckFinding] {
        let written = Set(sources.map(\.name))
        return config.topics.filter { !written.contains($0) }.compactMap { topic in
            // A failed lookup is the store's own finding.
            guard let exists = try? store.exists(topic), !exists else { return nil }
            return CheckFinding(.error, "topics", "topic \(topic) does not exist in \(store.location): no source in \(config.file) writes it",
                                fix: "start the process that runs source \(topic) first (it creates the stream), or correct the sink's topics:")
        }
    }

    /// Each sink's transforms bound to the current schemas of the tables its sources capture.
    private func transformFindings() -> [CheckFinding] {
        sources.flatMap { name, source -> [CheckFinding] in
            let sections = config.sinks.filter { $0.topics.contains(name) && !$0.transforms.isEmpty }
            guard !sections.isEmpty, let source = source as? any SchemaSource else { return [] }
            return sections.flatMap { section -> [CheckFinding] in
                let schemas: [RelationSchema]
                do { schemas = try source.currentSchemas(among: section.transforms.includes) } catch {
                    return [CheckFinding(.warning, "sink \(section.config.name)", "cannot check its transforms against source \(name)'s tables: \(error)")]
                }
                return TransformingSink.problems(section.transforms, schemas: schemas).map { CheckFinding(.error, "sink \(section.config.name)", $0) }
            }
        }
    }

    /// Aggregated tables whose source does not send whole old rows (REPLICA IDENTITY FULL).
    private func aggregatedTableFindings() -> [CheckFinding] {
        sources.flatMap { name, source -> [CheckFinding] in
            let aggregated = AggregatedTables(config, topic: name)
            guard !aggregated.isEmpty, let source = source as? any OldRowSource else { return [] }
            return aggregated.findings(source, name: name)
        }
    }

    /// Asks the pipeline to stop gracefully (SIGINT/SIGTERM).
    public func requestStop() {
        stopClock.start()
        stopSources.stop()
        done.signal()
    }

    private func fail(_ reason: String, code: Int32) {
        failureLock.lock()
        if failure == nil {
            failure = reason
            failureCode = code
        }
        failureLock.unlock()
        logger.error("\(reason)")
        requestStop()
    }

    /// Runs until stopped; returns the process exit code (0 after a graceful stop, 1 after a failure).
    public func run() -> Int32 {
        let lock: DataDirectoryLock
        do {
            switch try DataDirectoryLock.acquire(dataDirectory: config.dataDirectory) {
            case let .success(held): lock = held
            case let .failure(holder):
                logger.error("another sluice process\(holder.pid.map { " (pid \($0))" } ?? "") is running on data_dir \(config.dataDirectory)")
                return 1
            }
        } catch let unusable as DataDirectoryLock.Unusable {
            logger.error("cannot use data_dir \(config.dataDirectory) (data_dir in \(config.file)): \(unusable); set data_dir to a directory this user can create and write")
            return 2
        } catch {
            logger.error("cannot use data_dir \(config.dataDirectory): \(error)")
            return 1
        }
        defer { withExtendedLifetime(lock) {} }

        var metricsServer: MetricsServer?
        let console = Console(pipeline: self)
        if let metrics = config.metrics {
            if let problem = ListenProbe.problem(host: metrics.host, port: metrics.port) {
                logger.error("cannot listen on \(metrics.host):\(metrics.port) (metrics.listen in \(config.file)): \(problem)")
                return 2
            }
            do {
                let server = try MetricsServer(host: metrics.host, port: metrics.port, registry: MetricsBackend.registry(),
                                               health: health, console: console, token: metrics.token)
                try server.start()
                metricsServer = server
            } catch {
                logger.error("cannot listen on \(metrics.host):\(metrics.port) for metrics: \(error)")
                return 1
            }
        }
        defer { metricsServer?.stop() }

        // A source whose database reveals a misconfiguration stops the run before any sink touches a target.
        for (name, source) in sources {
            do {
                try source.preflight()
            } catch let error as ConnectorError {
                logger.error("\(error)", metadata: ["source": "\(name)"])
                if case .misconfigured = error { return 2 }
                return 1
            } catch {
                logger.error("\(error)", metadata: ["source": "\(name)"])
                return 1
            }
        }

        for (section, sink) in sinks {
            do {
                try sink.preflight()
            } catch {
                logger.error("\(error)", metadata: ["sink": "\(section.config.name)"])
                if case .misconfigured? = error as? ConnectorError { return 2 }
                return 1
            }
        }

        // An aggregate over a table that sends only old keys would stop its sink at the first update.
        if let problem = (aggregatedTableFindings() + transformFindings() + aggregateDefinitionFindings()).first(where: { $0.severity == .error }) {
            logger.error("\(problem.subject): \(problem.message)\(problem.fix.map { ". Fix: \($0)" } ?? "")")
            return 2
        }

        // A sink may read a topic no source here writes (a split deployment): it must exist already.
        let written = Set(sources.map(\.name))
        for topic in config.topics where !written.contains(topic) {
            do {
                guard try store.exists(topic) else {
                    logger.error("""
                        topic \(topic) does not exist in \(store.location): no source in \(config.file) writes it, so its \
                        stream must have been created by the process that runs source \(topic). Start that one first, or \
                        correct the sink's topics:
                        """)
                    return 2
                }
            } catch ConnectorError.transient(let reason) {
                // Servers down now (an outage, or started before them): its sinks retry until they answer.
                logger.warning("cannot look up topic \(topic) in \(store.location) yet: \(reason); its sinks retry until it answers")
            } catch {
                logger.error("cannot look up topic \(topic) in \(store.location): \(error)")
                return 1
            }
        }

        logger.info("starting", metadata: ["sources": "\(sources.map(\.name).joined(separator: ","))",
                                           "sinks": "\(sinks.map(\.section.config.name).joined(separator: ","))",
                                           "data_dir": "\(config.dataDirectory)"])
        let space = DiskSpace(dataDirectory: config.dataDirectory)
        let retentionWanted = StopSignal()
        let sourceRunners = sources.map { name, source in
            SourceRunner(source: source, name: name, store: store,
                         stateDirectory: DataDirectory(config.dataDirectory).sourceState(name), stop: stopSources,
                         health: health, logger: logger.with("source", name), space: space,
                         backfillReplaces: { [aggregated = AggregatedTables(config, topic: name)] in aggregated.contains($0) },
                         onDiskFull: { retentionWanted.stop() }) { [weak self] in self?.fail($0, code: $1) }
        }
        let sinkRunners = sinks.map { section, sink in
            let progress = SinkProgress(sink: section.config.name)
            sinkProgress.append(progress)
            return SinkRunner(sink: sink, name: section.config.name, topics: section.topics.map { store.topic($0) },
                              drain: drainSinks, health: health, logger: logger.with("sink", section.config.name),
                              progress: progress, deadlinePassed: { [stopClock] in stopClock.passed }) { [weak self] in
                self?.fail($0, code: $1)
            }
        }
        let dataDirectory = config.dataDirectory
        let progress = sinkProgress
        console.attach(progress)
        let consoleShown = metricsServer != nil
        if consoleShown { console.followSources(until: stopSources) }
        let historySaver = ConsoleHistorySaver(dataDirectory: dataDirectory, logger: logger)
        let saveHistory: @Sendable () -> Void = { historySaver.save(console.saved()) }
        if consoleShown, let saved = ConsoleHistoryFile.read(dataDirectory: dataDirectory, logger: logger) { console.restore(saved) }
        let writeStatus: @Sendable () -> Void = { [health] in
            let status = health.snapshot(progress: progress)
            // The reserve is there so that `sluice status` can still learn what a full disk did.
            if !status.write(dataDirectory: dataDirectory), space.isLow {
                space.filled()
                status.write(dataDirectory: dataDirectory)
            }
        }
        health.observe(writeStatus)
        writeStatus()
        sourceRunners.forEach { $0.start() }
        sinkRunners.forEach { $0.start() }
        let gauges = LagGauges(progress: progress, topics: sinks.map { section, _ in section.topics.map { store.topic($0) } })
        var readers: [String: [SinkProgress]] = [:]
        for (index, (section, _)) in sinks.enumerated() {
            for topic in section.topics { readers[topic, default: []].append(progress[index]) }
        }
        let retention = Retention(store: store, policy: config.retention, topics: config.topics.map { store.topic($0) }, readers: readers,
                                  logger: logger)
        let reporter = Thread { [stopSources, health, logger] in
            var ticks = 0
            while !stopSources.sleep(millis: 1000) {
                space.tick()
                // Less free than the reserve: nothing can be captured (an idle source has not noticed yet).
                if let full = space.starved {
                    health.set("data_dir", dataDirectory, .retrying(full), logger: logger)
                } else if health.state("data_dir", dataDirectory) != nil {
                    health.set("data_dir", dataDirectory, .running, logger: logger)
                }
                writeStatus()
                gauges.update()
                if consoleShown { console.sample() }
                ticks += 1
                if consoleShown && ticks % Console.saveEverySeconds == 0 { saveHistory() }
                if ticks % 10 == 0 || retentionWanted.take() { retention.apply() }
            }
        }
        reporter.start()

        done.wait()
        announceStop()
        // Past the deadline a runner still busy is left behind: exiting then is no worse than a
        // SIGKILL, which every connector survives (the open target transaction rolls back).
        let hardDeadline = stopClock.hardDeadline(extraMillis: 3_000)
        var abandoned: [String] = []
        for (runner, (name, _)) in zip(sourceRunners, sources) where !runner.wait(until: hardDeadline) {
            abandoned.append("source \(name)")
        }
        drainSinks.stop()
        for (runner, (section, _)) in zip(sinkRunners, sinks) where !runner.wait(until: hardDeadline) {
            abandoned.append("sink \(section.config.name)")
        }
        if !abandoned.isEmpty {
            logger.warning("""
                stopped waiting for \(abandoned.joined(separator: ", ")) at the stop deadline; nothing is lost: \
                each resumes from its stored position at the next start
                """)
        }
        writeStatus()
        if consoleShown { saveHistory() }
        failureLock.lock()
        let failed = failure != nil
        let code = failureCode
        failureLock.unlock()
        logger.info(failed ? "stopped after a failure" : "stopped")
        return failed ? code : 0
    }
}

extension Pipeline {
    /// Says once what the stop waits for, and how to cut it short.
    private func announceStop() {
        let waitingOn = health.all.filter { $0.kind == "sink" }.compactMap { entry -> String? in
            switch entry.state {
            case let .retrying(reason): return "sink \(entry.name) (retrying: \(reason))"
            case .running, .starting: return "sink \(entry.name)"
            case .failed, .stopped: return nil
            }
        }
        let seconds = SinkRunner.drainTimeoutMillis / 1000
        let what = waitingOn.isEmpty ? "sources to finish" : "sources to finish and \(waitingOn.joined(separator: ", ")) to apply what the topics hold"
        logger.notice("stopping: waiting up to \(seconds) s for \(what); a second signal exits at once (nothing is lost either way)")
    }
}

/// When a graceful stop began, and whether its deadline has passed.
final class StopClock: @unchecked Sendable {
    private let lock = NSLock()
    private var began: DispatchTime?
    let graceMillis: Int

    init(graceMillis: Int) { self.graceMillis = graceMillis }

    func start() {
        lock.lock()
        if began == nil { began = .now() }
        lock.unlock()
    }

    private var deadline: DispatchTime? {
        lock.lock()
        defer { lock.unlock() }
        return began.map { $0 + .milliseconds(graceMillis) }
    }

    var passed: Bool { deadline.map { DispatchTime.now() >= $0 } ?? false }

    func hardDeadline(extraMillis: Int) -> DispatchTime {
        (deadline ?? .now() + .milliseconds(graceMillis)) + .milliseconds(extraMillis)
    }
}

extension Logger {
    func with(_ key: String, _ value: String) -> Logger {
        var copy = self
        copy[metadataKey: key] = "\(value)"
        return copy
    }
}

/// Sink lag as gauges, refreshed every second: `sluice_sink_lag_events` and `sluice_sink_lag_seconds`.
struct LagGauges: @unchecked Sendable {
    let progress: [SinkProgress]
    let topics: [[any Topic]]

    func update() {
        for (sink, topics) in zip(progress, topics) {
            for topic in topics {
                let lag = sink.lag(in: topic)
                let dimensions = [("sink", sink.sink), ("topic", topic.name)]
                Gauge(label: "sluice_sink_lag_events", dimensions: dimensions).record(Double(lag.events))
                Gauge(label: "sluice_sink_lag_seconds", dimensions: dimensions).record(lag.seconds)
            }
        }
    }
}

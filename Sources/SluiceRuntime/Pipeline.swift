import Foundation
import Logging
import SluiceKit
import SluiceLog

/// Every source and sink of a configuration file, running concurrently: `sluice run`.
///
/// Shutdown drains: sources stop at their next message and make their topics durable, then sinks
/// apply what the topics hold and stop.
public final class Pipeline: @unchecked Sendable {
    public let config: SluiceConfig
    let logger: Logger
    let sources: [(name: String, source: any Source)]
    let sinks: [(section: SluiceConfig.SinkSection, sink: any Sink)]
    public let log: EmbeddedLog
    public let health = ConnectorHealth()
    public private(set) var sinkProgress: [SinkProgress] = []

    private let stopSources = StopSignal()
    private let drainSinks = StopSignal()
    private let done = DispatchSemaphore(value: 0)
    private let failureLock = NSLock()
    private var failure: String?

    /// Builds every connector from the file: any mistake in it throws before anything is touched.
    public init(config: SluiceConfig, registry: ConnectorRegistry, logger: Logger) throws {
        self.config = config
        self.logger = logger
        sources = try config.sources.map { section in
            (section.name, try registry.sources[section.type]!.init(config: section))
        }
        sinks = try config.sinks.map { section in
            (section, try registry.sinks[section.config.type]!.init(config: section.config))
        }
        log = EmbeddedLog(dataDirectory: config.dataDirectory, logger: logger)
    }

    /// Asks the pipeline to stop gracefully (SIGINT/SIGTERM).
    public func requestStop() {
        stopSources.stop()
        done.signal()
    }

    private func fail(_ reason: String) {
        failureLock.lock()
        if failure == nil { failure = reason }
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
        } catch {
            logger.error("cannot use data_dir \(config.dataDirectory): \(error)")
            return 1
        }
        defer { withExtendedLifetime(lock) {} }

        logger.info("starting", metadata: ["sources": "\(sources.map(\.name).joined(separator: ","))",
                                           "sinks": "\(sinks.map(\.section.config.name).joined(separator: ","))",
                                           "data_dir": "\(config.dataDirectory)"])
        let sourceRunners = sources.map { name, source in
            SourceRunner(source: source, name: name, log: log, segmentBytes: config.retention.segmentBytes,
                         stateDirectory: config.dataDirectory + "/sources/" + name, stop: stopSources,
                         health: health, logger: logger.with("source", name)) { [weak self] in self?.fail($0) }
        }
        let sinkRunners = sinks.map { section, sink in
            let progress = SinkProgress(sink: section.config.name)
            sinkProgress.append(progress)
            return SinkRunner(sink: sink, name: section.config.name, topics: section.topics.map { log.topic($0) },
                              drain: drainSinks, health: health, logger: logger.with("sink", section.config.name),
                              progress: progress) { [weak self] in self?.fail($0) }
        }
        sourceRunners.forEach { $0.start() }
        sinkRunners.forEach { $0.start() }

        done.wait()
        logger.info("stopping")
        sourceRunners.forEach { $0.wait() }
        drainSinks.stop()
        sinkRunners.forEach { $0.wait() }
        failureLock.lock()
        let failed = failure != nil
        failureLock.unlock()
        logger.info(failed ? "stopped after a failure" : "stopped")
        return failed ? 1 : 0
    }
}

extension Logger {
    func with(_ key: String, _ value: String) -> Logger {
        var copy = self
        copy[metadataKey: key] = "\(value)"
        return copy
    }
}

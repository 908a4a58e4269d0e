import Foundation
import Logging
import Metrics
import SluiceKit
import SluiceLog

/// Runs one source on its own thread: opens its topic, calls `run`, retries transient failures
/// with capped backoff after dropping the interrupted transaction.
final class SourceRunner: @unchecked Sendable {
    let source: any Source
    let name: String
    let log: EmbeddedLog
    let segmentBytes: UInt64
    let stop: StopSignal
    let health: ConnectorHealth
    let logger: Logger
    let stateDirectory: String
    /// Called when the source fails in a way retrying will not fix.
    let onFatal: @Sendable (String, Int32) -> Void
    private(set) var thread: Thread?
    private let finished = DispatchSemaphore(value: 0)

    init(source: any Source, name: String, log: EmbeddedLog, segmentBytes: UInt64, stateDirectory: String,
         stop: StopSignal, health: ConnectorHealth, logger: Logger, onFatal: @escaping @Sendable (String, Int32) -> Void) {
        self.source = source
        self.name = name
        self.log = log
        self.segmentBytes = segmentBytes
        self.stateDirectory = stateDirectory
        self.stop = stop
        self.health = health
        self.logger = logger
        self.onFatal = onFatal
    }

    func start() {
        let thread = Thread { [self] in
            run()
            finished.signal()
        }
        thread.name = "sluice-source-\(name)"
        thread.stackSize = 4 << 20
        thread.start()
        self.thread = thread
    }

    func wait() { finished.wait() }

    private func run() {
        health.set("source", name, .starting, logger: logger)
        let writer: EmbeddedTopicWriter
        do {
            writer = try log.openWriter(name, segmentBytes: segmentBytes)
        } catch {
            health.set("source", name, .stopped, logger: logger)
            onFatal("source \(name): cannot open topic \(name): \(error)", 1)
            return
        }
        defer { writer.close() }
        let transactions = TransactionWriter(writer: writer)
        let health = self.health, logger = self.logger, name = self.name
        let context = SourceContext(name: name, logger: logger, stateDirectory: stateDirectory,
                                    isStopping: { [stop] in stop.isStopped },
                                    report: { state in health.set("source", name, state, logger: logger) })
        var backoff = Backoff()
        while !stop.isStopped {
            let started = Date()
            do {
                try source.run(into: transactions, context: context)
                break
            } catch let error as ConnectorError {
                try? transactions.abort()
                if case let .misconfigured(reason) = error {
                    health.set("source", name, .stopped, logger: logger)
                    onFatal(reason, 2)
                    return
                }
                if case let .fatal(reason) = error {
                    health.set("source", name, .stopped, logger: logger)
                    onFatal(reason, 1)
                    return
                }
                if Date().timeIntervalSince(started) > 30 { backoff.reset() }
                health.set("source", name, .retrying(error.description), logger: logger)
                Counter(label: "sluice_retries_total", dimensions: [("connector", "source"), ("name", name)]).increment()
                stop.sleep(millis: backoff.next())
            } catch {
                try? transactions.abort()
                health.set("source", name, .stopped, logger: logger)
                onFatal("source \(name): \(error)", 1)
                return
            }
        }
        health.set("source", name, .stopped, logger: logger)
    }
}

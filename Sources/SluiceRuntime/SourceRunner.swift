import Foundation
import Logging
import Metrics
import SluiceKit

/// Runs one source on its own thread: opens its topic, calls `run`, retries transient failures
/// with capped backoff after dropping the interrupted transaction.
final class SourceRunner: @unchecked Sendable {
    let source: any Source
    let name: String
    let store: any TopicStore
    let stop: StopSignal
    let health: ConnectorHealth
    let logger: Logger
    let stateDirectory: String
    /// Called when the source fails in a way retrying will not fix.
    let onFatal: @Sendable (String, Int32) -> Void
    let space: DiskSpace
    /// Asks for retention to run at once (the topic's disk is full).
    let onDiskFull: @Sendable () -> Void
    let backfillReplaces: @Sendable (TableName) -> Bool
    private(set) var thread: Thread?
    private lazy var retries = Counter(label: "sluice_source_retries_total", dimensions: [("source", name)])
    private let finished = DispatchSemaphore(value: 0)

    init(source: any Source, name: String, store: any TopicStore, stateDirectory: String,
         stop: StopSignal, health: ConnectorHealth, logger: Logger, space: DiskSpace,
         backfillReplaces: @escaping @Sendable (TableName) -> Bool = { _ in false },
         onDiskFull: @escaping @Sendable () -> Void, onFatal: @escaping @Sendable (String, Int32) -> Void) {
        self.space = space
        self.backfillReplaces = backfillReplaces
        self.onDiskFull = onDiskFull
        self.source = source
        self.name = name
        self.store = store
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

    /// Waits until `deadline`; false if the runner is still busy then.
    func wait(until deadline: DispatchTime) -> Bool { finished.wait(timeout: deadline) == .success }

    private func run() {
        health.set("source", name, .starting, logger: logger)
        retries.increment(by: 0)  // published from the first scrape, at 0
        let health = self.health, logger = self.logger, name = self.name
        let supervisor = SupervisorCell(Supervisor(role: .source))
        let context = SourceContext(name: name, logger: logger, stateDirectory: stateDirectory,
                                    isStopping: { [stop] in stop.isStopped },
                                    report: { state in
                                        let state = state == .running ? supervisor.with { $0.healthy(at: Date()) } : state
                                        health.set("source", name, state, logger: logger)
                                    }, backfillReplaces: backfillReplaces)
        var writer: (any TopicWriter)?
        /// Set by a full disk until the topic has started a segment retention can free.
        var needsRoom = false
        defer { writer?.close() }
        while !stop.isStopped {
            var transactions: TransactionWriter?
            let failure: Supervisor.Failure
            do {
                if writer == nil { writer = try store.openWriter(name) }
                if needsRoom {
                    try writer!.makeRoom()
                    needsRoom = false
                }
                transactions = TransactionWriter(writer: writer!)
                try source.run(into: transactions!, context: context)
                break
            } catch let full as TopicStorageFull {
                // Pause capture: nothing beyond the durable commit was confirmed, sinks keep draining,
                // and retention runs now; capture resumes once the filesystem has room again.
                try? transactions?.abort()
                space.filled()
                do {
                    try writer?.makeRoom()
                } catch {
                    needsRoom = true
                }
                writer?.close()
                writer = nil
                var waiting = space.waitingFor()
                health.set("source", name, .retrying("\(full); \(waiting.text)"), logger: logger)
                retries.increment()
                while !stop.isStopped && !space.hasRoom {
                    onDiskFull()
                    stop.sleep(millis: 1000)
                    // Said again when the free space moved by a megabyte or more (each state change is logged).
                    let now = space.waitingFor()
                    if max(now.free, waiting.free) - min(now.free, waiting.free) >= 1 << 20 {
                        waiting = now
                        health.set("source", name, .retrying("\(full); \(waiting.text)"), logger: logger)
                    }
                }
                continue
            } catch let error as ConnectorError {
                try? transactions?.abort()
                failure = Supervisor.Failure(error)
            } catch {
                try? transactions?.abort()
                failure = .fatal("topic \(name): \(error)")
            }
            switch supervisor.with({ $0.failed(failure, at: Date()) }) {
            case let .retry(after, report):
                health.set("source", name, report, logger: logger)
                retries.increment()
                stop.sleep(millis: after)
            case let .stop(report, exitCode):
                health.set("source", name, report, logger: logger)
                if let exitCode { onFatal(withSubject(failure.reason, kind: "source", name: name), exitCode) }
                return
            }
        }
        health.set("source", name, .stopped, logger: logger)
    }
}

import Foundation
import Logging
import SluiceKit

/// What a running backfill shows its user (the CLI draws it as a progress bar or lines).
public protocol BackfillObserver: AnyObject {
    /// The request is left for the source; it has not started copying yet.
    func waiting()
    func progress(_ progress: BackfillProgress)
    /// Every table is copied and every sink of the topic applied the copy.
    func finished(_ progress: BackfillProgress, sinks: [String])
    /// The pipeline stopped before the copy was applied.
    func stopped()
    /// The source gave the backfill up (it failed alone) or it was cancelled.
    func failed(_ progress: BackfillProgress, reason: String)
}

/// `sluice backfill`: leaves a request for the source's running daemon, or, without one, runs the
/// pipeline in this process; then follows the copy until every sink of the source applied it.
public final class BackfillJob: @unchecked Sendable {
    public let config: SluiceConfig
    public let source: ConnectorConfig
    /// The tables to copy, in `schema.table` form.
    public let tables: [String]
    /// Per table, the only keys to copy (`sluice verify --repair`); nil copies the tables whole.
    public let keys: [String: [[String]]]?
    let registry: ConnectorRegistry
    let logger: Logger
    let stateDirectory: String
    private let lock = NSLock()
    private var pipeline: Pipeline?
    private var stopRequested = false

    /// Checks the request against the source (captured tables with keys); throws
    /// ``ConnectorError/misconfigured(_:)`` for a bad request.
    public init(config: SluiceConfig, registry: ConnectorRegistry, source: ConnectorConfig, tables requested: [String],
                logger: Logger, checkTables: Bool = true, keys: [String: [[String]]]? = nil) throws {
        guard let backfillable = try registry.sources[source.type]!.init(config: source) as? any BackfillSource else {
            let able = config.sources.filter { registry.sources[$0.type] is any BackfillSource.Type }.map(\.name)
            throw ConnectorError.misconfigured("""
                source \(source.name) (type \(source.type)) cannot backfill: its connector cannot copy a table's current rows \
                (a plugin sends them itself, as changes). \(able.isEmpty ? "No source in \(config.file) can"
                    : "Sources that can: \(able.joined(separator: ", ")) (--source \(able[0]))")
                """)
        }
        let tables = checkTables ? try backfillable.backfillTables(requested) : requested
        guard !tables.isEmpty || !checkTables else {
            throw ConnectorError.misconfigured("source \(source.name) captures no table to backfill")
        }
        self.config = config
        self.source = source
        self.tables = tables
        self.keys = keys
        self.registry = registry
        self.logger = logger
        stateDirectory = DataDirectory(config.dataDirectory).sourceState(source.name)
    }

    /// Whether a daemon runs on the data directory (it then does the copying).
    public var daemonRunning: Bool { DataDirectoryLock.isHeld(dataDirectory: config.dataDirectory) != nil }

    /// Leaves the request for the source, unless an unfinished backfill of these tables is under way;
    /// returns that one's description when resuming it.
    public func request() throws -> String? {
        let active = BackfillFiles.read(BackfillProgress.self, directory: stateDirectory, name: BackfillProgress.fileName)
        if let active, !active.isFinished, Set(tables).isSubset(of: Set(active.tables.map(\.table))) {
            return "\(active.id) of \(active.tables.map(\.table).joined(separator: ", "))"
        }
        try BackfillFiles.write(BackfillRequest(tables: tables, keys: keys), directory: stateDirectory, name: BackfillRequest.fileName)
        return nil
    }

    /// `--cancel`: drops a pending request, and asks the source to stop a running backfill.
    public func cancel() throws -> String {
        let active = BackfillFiles.read(BackfillProgress.self, directory: stateDirectory, name: BackfillProgress.fileName)
        let pending = FileManager.default.fileExists(atPath: stateDirectory + "/" + BackfillRequest.fileName)
        BackfillFiles.remove(directory: stateDirectory, name: BackfillRequest.fileName)
        guard let active, !active.isFinished else {
            return pending ? "dropped the pending backfill request" : "no backfill is pending or running"
        }
        if daemonRunning {
            try BackfillFiles.write(BackfillRequest(tables: []), directory: stateDirectory, name: BackfillRequest.cancelFileName)
            return "asked the running daemon to stop backfill \(active.id) (the chunks copied so far stay)"
        }
        var cancelled = active
        cancelled.failure = "cancelled by sluice backfill --cancel"
        cancelled.finishedAt = Date()
        try BackfillFiles.write(cancelled, directory: stateDirectory, name: BackfillProgress.fileName)
        return "cancelled backfill \(active.id) (the chunks copied so far stay)"
    }

    /// Runs until the copy is applied (0) or the pipeline stops first (its exit code, or 1).
    public func run(observer: any BackfillObserver) throws -> Int32 {
        guard !daemonRunning else {
            return try follow(observer: observer, isRunning: { [self] in daemonRunning && !isStopRequested }) ? 0 : 1
        }
        let local = try Pipeline(config: config, registry: registry, logger: logger)
        lock.lock()
        pipeline = local
        let stopEarly = stopRequested
        lock.unlock()
        if stopEarly { return 1 }
        let box = ExitCodeBox()
        let done = DispatchSemaphore(value: 0)
        Thread {
            box.set(local.run())
            done.signal()
        }.start()
        let finished = try follow(observer: observer, isRunning: { box.get() == nil })
        local.requestStop()
        done.wait()
        let code = box.get() ?? 1
        return finished ? code : (code == 0 ? 1 : code)
    }

    /// A stop request (SIGINT): the local pipeline stops gracefully; a daemon goes on.
    public func stop() {
        lock.lock()
        stopRequested = true
        let local = pipeline
        lock.unlock()
        local?.requestStop()
    }

    /// Whether a stop request (SIGINT/SIGTERM) ended the run.
    public var wasInterrupted: Bool { isStopRequested }

    private var isStopRequested: Bool {
        lock.lock()
        defer { lock.unlock() }
        return stopRequested
    }

    /// Shows progress until the copy is finished and every sink of the source's topic applied it.
    private func follow(observer: any BackfillObserver, isRunning: () -> Bool) throws -> Bool {
        let sinks = try config.sinks.filter { $0.topics.contains(source.name) }.map {
            ($0.config.name, try registry.sinks[$0.config.type]!.init(config: $0.config))
        }
        var lastSinkCheck = Date.distantPast
        while true {
            let progress = BackfillFiles.read(BackfillProgress.self, directory: stateDirectory, name: BackfillProgress.fileName)
            let ours = progress.flatMap { Set(tables).isSubset(of: Set($0.tables.map(\.table))) ? $0 : nil }
            let pending = FileManager.default.fileExists(atPath: stateDirectory + "/" + BackfillRequest.fileName)
            if let ours, !pending, let failure = ours.failure {
                observer.failed(ours, reason: failure)
                return false
            }
            if let ours, !pending {
                observer.progress(ours)
                if ours.isFinished, Date().timeIntervalSince(lastSinkCheck) > 0.2 {
                    lastSinkCheck = Date()
                    let applied = sinks.allSatisfy { _, sink in
                        guard let needed = ours.finalOffset else { return true }
                        let offset = (try? sink.readPositions())??[source.name]?.offset
                        return offset.map { $0 >= needed } ?? false
                    }
                    if applied {
                        observer.finished(ours, sinks: sinks.map(\.0))
                        return true
                    }
                }
            } else {
                observer.waiting()
            }
            guard isRunning() else {
                observer.stopped()
                return false
            }
            usleep(100_000)
        }
    }
}

final class ExitCodeBox: @unchecked Sendable {
    private let lock = NSLock()
    private var code: Int32?
    func set(_ value: Int32) { lock.lock(); code = value; lock.unlock() }
    func get() -> Int32? { lock.lock(); defer { lock.unlock() }; return code }
}

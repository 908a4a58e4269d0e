import ArgumentParser
import Foundation
import Logging
import SluiceKit
import SluiceRuntime
import SluiceVerify

struct Verify: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Compare each SQL sink's tables with the source while the pipeline runs; --repair re-copies the rows that differ.",
        discussion: """
            Chunk by chunk of primary key (keyless tables as multisets of whole rows), the source is summarized \
            at a REPEATABLE READ snapshot and the target once the sink has applied everything that snapshot saw; \
            chunks that differ are read again row by row, and only rows that still differ once the sink caught \
            up are reported (missing, extra, different). Needs the pipeline running: the daemon's, or, without \
            one, this command runs it meanwhile. Exit 0 when equal, 1 when differences remain, 2 for bad usage. \
            See docs/verify.md.
            """)

    @OptionGroup var options: ConfigOption

    @Option(help: "Only this sink; repeat it for several (default: every postgres and sqlite sink).")
    var sink: [String] = []

    @Option(name: .customLong("table"), help: "Only this table, as schema.table (repeat for several; default: every captured table).")
    var tables: [String] = []

    @Flag(help: "Re-copy the rows that differ through the backfill path (or delete the extra ones), then verify them again.")
    var repair = false

    @Flag(help: "One JSON object per line: one per table, then a summary.")
    var json = false

    @Option(help: "Rows per chunk (memory and the size of a re-read are bounded by it).")
    var chunkSize = 10_000

    func run() throws {
        guard (1...1_000_000).contains(chunkSize) else { throw UsageError(message: "--chunk-size must be from 1 to 1000000") }
        Signals.install()
        let config = try options.load()
        LogSetup.bootstrap(format: config.logFormat, level: config.logLevel ?? "warning")
        let logger = Logger(label: "sluice")
        let plan: VerifyPlan
        do {
            plan = try VerifyPlan.make(file: config.file, sources: config.sources, sinks: config.sinks.map { ($0.config, $0.topics, $0.transforms) },
                                       registry: SluiceMain.registry, sinks: sink, tables: tables)
        } catch let error as VerifyUsageError {
            throw UsageError(message: error.description)
        } catch let error as VerifyFailure {
            throw RuntimeFailure(message: error.description)
        }
        let output = VerifyOutput(json: json)
        for note in plan.notes { output.note(note) }
        for sinkPlan in plan.sinks {
            for skipped in sinkPlan.skipped where skipped.table == nil { output.note("sink \(sinkPlan.sink.name): \(skipped.reason)") }
        }
        let pipeline = try LocalPipeline(config: config, logger: logger, needed: plan.sinks.contains { !$0.tables.isEmpty })
        Signals.onStop { pipeline.stop(); Foundation.exit(130) }
        defer { pipeline.stop() }
        let store = try TopicStores.make(config, logger: logger)
        let verification = Verification(plan: plan, topicEnd: { store.topic($0).durableCommit?.offset })
        verification.chunkSize = chunkSize
        let progress = VerifyProgress()
        var results: [TableVerification]
        do {
            results = try verification.run(observer: progress) { result in
                progress.clear()
                output.table(result)
            }
            var repaired = 0
            if repair, results.contains(where: { !$0.isEqual }) {
                let repair = VerifyRepair(config: config, plan: plan, logger: logger, output: output)
                repaired = try repair.run(results)
                let again = Set(results.filter { !$0.isEqual }.map { $0.sink + " " + $0.table.description })
                output.note("verifying the repaired tables again")
                let rechecked = try verification.run(only: again, observer: progress) { result in
                    progress.clear()
                    output.table(result)
                }
                results = results.filter { $0.isEqual } + rechecked
            }
            output.summary(results, repaired: repaired)
        } catch let error as VerifyFailure {
            progress.clear()
            throw RuntimeFailure(message: error.description)
        }
        if results.contains(where: { !$0.isEqual }) { throw ExitCode(1) }
    }
}

/// The pipeline verify needs running: the daemon's if one runs on the data directory, else one in
/// this process for as long as verify runs.
final class LocalPipeline: @unchecked Sendable {
    private var pipeline: Pipeline?
    private let done = DispatchSemaphore(value: 0)
    private let lock = NSLock()
    private var stopped = false

    init(config: SluiceConfig, logger: Logger, needed: Bool) throws {
        guard needed, DataDirectoryLock.isHeld(dataDirectory: config.dataDirectory) == nil else { return }
        let pipeline = try Pipeline(config: config, registry: SluiceMain.registry, logger: logger)
        self.pipeline = pipeline
        Thread { [done] in
            _ = pipeline.run()
            done.signal()
        }.start()
    }

    func stop() {
        lock.lock()
        defer { lock.unlock() }
        guard let pipeline, !stopped else { return }
        stopped = true
        pipeline.requestStop()
        done.wait()
    }
}

/// Rows and chunks per table on a terminal (stderr); nothing otherwise.
final class VerifyProgress: VerifyObserver {
    let terminal = isatty(STDERR_FILENO) == 1
    private var shown = false
    private var last = Date.distantPast

    func progress(sink: String, table: TableName, chunks: Int, rows: UInt64) {
        guard terminal, Date().timeIntervalSince(last) > 0.1 else { return }
        last = Date()
        shown = true
        Output.rawStandardError("\rverify \(sink) \(table): \(chunks) chunks, \(rows) rows\u{1B}[K")
    }

    func clear() {
        guard shown else { return }
        shown = false
        Output.rawStandardError("\r\u{1B}[K")
    }
}

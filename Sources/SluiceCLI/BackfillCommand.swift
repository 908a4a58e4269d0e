import ArgumentParser
import Foundation
import Logging
import SluiceKit
import SluiceRuntime

struct Backfill: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Copy the current rows of tables into every sink of a source, consistently with the live stream.",
        discussion: """
            Copies in primary-key chunks between watermarks written to the replication stream (DBLog), so \
            tables are not locked and a streamed change is never overwritten by an older copied row; a \
            table without a primary key is copied whole from a snapshot at a known stream position and \
            replaces the target's rows in one transaction. If \
            `sluice run` is running on the data directory, the daemon does the copying and this command \
            follows it; otherwise this command runs the pipeline itself until every sink has applied the \
            copy. Interrupted, it resumes at the last finished chunk when run again. Exits 0 when every sink \
            has applied the backfill. Shows a progress bar on a terminal, progress lines otherwise.
            """)

    @OptionGroup var options: ConfigOption

    @Option(help: "The source whose tables to copy (needed when the file has several).")
    var source: String?

    @Option(name: .customLong("table"), help: "A table to copy, as schema.table (repeat for several; default: every captured table).")
    var tables: [String] = []

    @Flag(help: "Drop a pending backfill request and stop a running backfill of the source (the chunks copied so far stay).")
    var cancel = false

    func run() throws {
        Signals.install()
        let config = try options.load()
        LogSetup.bootstrap(format: config.logFormat, level: config.logLevel ?? "warning")
        let logger = Logger(label: "sluice")
        guard let section = try chooseSource(config) else { return }
        if cancel {
            let job = try BackfillJob(config: config, registry: SluiceMain.registry, source: section, tables: [], logger: logger,
                                      checkTables: false)
            print("backfill: " + (try job.cancel()))
            return
        }
        let job: BackfillJob
        do {
            job = try BackfillJob(config: config, registry: SluiceMain.registry, source: section, tables: tables, logger: logger)
        } catch let error as ConnectorError {
            if case .misconfigured(let reason) = error { throw UsageError(message: reason) }
            throw RuntimeFailure(message: error.description)
        }
        if let resumed = try job.request() {
            Output.standardError("resuming backfill \(resumed)\n")
        }
        let display = ProgressDisplay()
        if job.daemonRunning {
            Signals.onStop {
                display.interrupted("""
                    stopped following; the running daemon goes on copying (sluice status shows its progress; \
                    sluice backfill --cancel stops it)
                    """)
                Foundation.exit(130)
            }
        } else {
            Signals.onStop {
                display.userStopped = true
                job.stop()
            }
        }
        let exitCode = try job.run(observer: display)
        // Interrupted: 130 whether this process ran the pipeline or followed a daemon.
        if job.wasInterrupted {
            display.interrupted("interrupted; the chunks copied so far stay, and the next sluice backfill or sluice run resumes the copy")
            throw ExitCode(130)
        }
        if exitCode != 0 { throw ExitCode(exitCode) }
    }

    private func chooseSource(_ config: SluiceConfig) throws -> ConnectorConfig? {
        if let source {
            guard let section = config.sources.first(where: { $0.name == source }) else {
                throw UsageError(message: "\(options.config): there is no source '\(source)'; sources: \(config.sources.map(\.name).joined(separator: ", "))")
            }
            return section
        }
        guard config.sources.count == 1 else {
            throw UsageError(message: "\(options.config) has several sources; choose one with --source (\(config.sources.map(\.name).joined(separator: ", ")))")
        }
        return config.sources[0]
    }
}

/// A progress bar on a terminal (stderr), plain lines every few seconds otherwise.
final class ProgressDisplay: BackfillObserver, @unchecked Sendable {
    /// Set from the signal handler: the stop is the user's, said once by `interrupted`.
    nonisolated(unsafe) var userStopped = false
    let terminal = isatty(STDERR_FILENO) == 1
    private var lastLine = Date.distantPast
    private var samples: [(Date, UInt64)] = []
    private var waitingShown = false

    func waiting() {
        guard !waitingShown else { return }
        waitingShown = true
        write("backfill: waiting for the source to start copying…\n")
    }

    func failed(_ progress: BackfillProgress, reason: String) {
        write((terminal ? "\n" : "") + "backfill: stopped after \(progress.copiedRows) rows, streaming goes on: \(reason)\n")
    }

    func interrupted(_ message: String) {
        write((terminal ? "\n" : "") + "backfill: \(message)\n")
    }

    func stopped() {
        guard !userStopped else { return }
        write((terminal ? "\n" : "") + "backfill: the pipeline stopped before the copy was applied; run the command again to resume\n")
    }

    func progress(_ progress: BackfillProgress) {
        let now = Date()
        samples.append((now, progress.copiedRows))
        samples.removeAll { now.timeIntervalSince($0.0) > 10 }
        let rate = samples.count > 1 ? Double(samples.last!.1 - samples.first!.1) / max(0.001, now.timeIntervalSince(samples.first!.0)) : 0
        let total = max(progress.totalRows, progress.copiedRows)
        let fraction = progress.isFinished ? 1 : total == 0 ? 0 : Double(progress.copiedRows) / Double(total)
        let remaining = rate > 0 ? Double(total - min(total, progress.copiedRows)) / rate : nil
        let eta = remaining.map { String(format: "%d:%02d", Int($0) / 60, Int($0) % 60) } ?? "--:--"
        let table = progress.tables.first(where: { !$0.done })?.table ?? "applying"
        // Only what is known: no "0/0 rows" before the size is counted, no rate or ETA before there is one.
        let amount = total > 0 ? "\(progress.copiedRows)/\(total) rows" : "\(progress.copiedRows) rows"
        let speed = rate > 0 ? "  \(Int(rate)) rows/s  ETA \(eta)" : ""
        let counts = "\(amount)\(speed)  \(table)"
        if terminal {
            let width = 30
            let filled = Int(fraction * Double(width))
            let bar = String(repeating: "=", count: filled) + (filled < width ? ">" : "") + String(repeating: " ", count: max(0, width - filled - 1))
            write("\r[\(bar)] \(String(format: "%3d", Int(fraction * 100)))%  \(counts)\u{1B}[K")
        } else if now.timeIntervalSince(lastLine) >= 2 {
            lastLine = now
            let percent = total > 0 || progress.isFinished ? "\(Int(fraction * 100))%  " : ""
            write("backfill: \(percent)\(counts)\n")
        }
    }

    func finished(_ progress: BackfillProgress, sinks: [String]) {
        write((terminal ? "\n" : "") + "backfill: copied \(progress.copiedRows) rows of \(progress.tables.map(\.table).joined(separator: ", ")); applied by \(sinks.isEmpty ? "no sink (the topic holds it)" : sinks.joined(separator: ", "))\n")
    }

    private func write(_ text: String) {
        Output.standardError(text)
    }
}

import ArgumentParser
import Foundation
import Logging
import SluiceKit
import SluiceRuntime

struct Status: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show each source's slot and retained WAL, each topic's end, and each sink's offset and lag.",
        discussion: """
            Reads the stores directly (topic files, source and target databases), so it works whether or not \
            `sluice run` is running; the running daemon adds each connector's state (running, retrying with \
            its last error, stopped). Offsets are those of commit markers: a sink is caught up when its \
            committed offset equals its topic's end offset. Lag in seconds is how long the oldest \
            transaction not yet applied has waited.
            """)

    @OptionGroup var options: ConfigOption

    @Flag(help: "One JSON object.")
    var json = false

    @Flag(help: "Redraw once a second until Ctrl-C: in place on a terminal, appended sections (or JSON lines) otherwise.")
    var watch = false

    func run() throws {
        let config = try options.load()
        LogSetup.bootstrap(format: config.logFormat, level: "error")
        guard watch else {
            let report = try StatusReport.gather(config: config, registry: SluiceMain.registry, logger: Logger(label: "sluice"))
            print(json ? StatusJSON.render(report) : StatusTable.render(report))
            return
        }
        StatusWatch(config: config, json: json).run()
    }
}

enum StatusTable {
    static func render(_ report: StatusReport) -> String {
        var out = "daemon: " + (report.daemonPID.map { "running (pid \($0))" } ?? "not running") + "\n\n"
        out += table(["SOURCE", "STATE", "SLOT", "CONFIRMED LSN", "RETAINED WAL", "NOTE"], report.sources.map { source in
            let details = Dictionary(source.status.details, uniquingKeysWith: { $1 })
            return [source.name, source.state, details["slot"] ?? "-", details["confirmed_flush_lsn"] ?? "-",
                    (source.status.retainedBytes.map(bytes) ?? "-") + (details["wal_forecast"].map { " (\($0))" } ?? ""),
                    source.error ?? source.status.error ?? source.status.warning ?? (details["slot_exists"] == "false" ? "slot not created yet" : "")]
        })
        out += "\n" + table(["TOPIC", "FIRST", "END", "EVENTS", "SIZE", "LAST COMMIT", "NOTE"], report.topics.map { topic in
            [topic.name, "\(topic.firstOffset)", topic.endOffset.map { "\($0)" } ?? "-", "\(topic.events)",
             bytes(topic.sizeBytes), topic.lastCommitTime.map(formatMicros) ?? "-",
             topic.damage.map { "DAMAGED: \($0)" } ?? topic.note ?? ""]
        })
        if !report.sinks.isEmpty {
            out += "\n" + table(["SINK", "STATE", "TOPIC", "COMMITTED", "LAG EVENTS", "LAG SECONDS", "LAST ERROR"],
                                report.sinks.flatMap { sink in
                sink.topics.map { entry in
                    [sink.name, sink.state, entry.topic, entry.committedOffset.map { "\($0)" } ?? "-", "\(entry.lagEvents)",
                     String(format: "%.1f", entry.lagSeconds), sink.error ?? ""]
                }
            })
        }
        if !report.backfills.isEmpty {
            out += "\n" + table(["BACKFILL", "SOURCE", "TABLES", "ROWS", "DONE", "ETA"], report.backfills.map { backfill in
                let progress = backfill.progress
                let done = progress.totalRows > 0 ? Double(progress.copiedRows) / Double(progress.totalRows) : 0
                return [progress.id, backfill.source, progress.tables.map(\.table).joined(separator: ","),
                        "\(progress.copiedRows)/\(progress.totalRows)", String(format: "%.1f%%", done * 100),
                        StatusJSON.backfillETA(progress).map { String(format: "%.0f s", $0) } ?? "-"]
            })
        }
        return out
    }

    static func table(_ header: [String], _ rows: [[String]]) -> String {
        let all = [header] + rows
        let widths = header.indices.map { column in all.map { $0[column].count }.max() ?? 0 }
        return all.map { row in
            row.enumerated().map { index, cell in
                index == row.count - 1 ? cell : cell.padding(toLength: widths[index], withPad: " ", startingAt: 0)
            }.joined(separator: "  ").trimmingCharacters(in: .whitespaces)
        }.joined(separator: "\n") + "\n"
    }

    static func bytes(_ count: UInt64) -> String {
        let units = ["B", "KB", "MB", "GB", "TB"]
        var value = Double(count)
        var unit = 0
        while value >= 1024 && unit < units.count - 1 {
            value /= 1024
            unit += 1
        }
        return unit == 0 ? "\(count) B" : String(format: "%.1f %@", value, units[unit])
    }
}

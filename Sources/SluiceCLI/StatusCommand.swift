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

    func run() throws {
        let config = try options.load()
        LogSetup.bootstrap(format: config.logFormat, level: "error")
        let report = try StatusReport.gather(config: config, registry: SluiceMain.registry, logger: Logger(label: "sluice"))
        print(json ? StatusJSON.render(report) : StatusTable.render(report))
    }
}

enum StatusJSON {
    static func render(_ report: StatusReport) -> String {
        func string(_ value: String?) -> String { value.map(jsonString) ?? "null" }
        func number<T: BinaryInteger>(_ value: T?) -> String { value.map { "\($0)" } ?? "null" }
        var parts: [String] = []
        parts.append("\"daemon\":{\"running\":\(report.daemonPID != nil),\"pid\":\(number(report.daemonPID))}")
        let sources = report.sources.map { source in
            var fields = ["\"name\":\(string(source.name))", "\"type\":\(string(source.type))",
                          "\"state\":\(string(source.state))", "\"error\":\(string(source.error ?? source.status.error))"]
            for (key, value) in source.status.details {
                fields.append("\(jsonString(key)):" + (value == "true" || value == "false" ? value : string(value)))
            }
            fields.append("\"retained_wal_bytes\":\(number(source.status.retainedBytes))")
            fields.append("\"warning\":\(string(source.status.warning))")
            return "{" + fields.joined(separator: ",") + "}"
        }
        parts.append("\"sources\":[" + sources.joined(separator: ",") + "]")
        let topics = report.topics.map { topic in
            "{\"name\":\(string(topic.name)),\"first_offset\":\(topic.firstOffset),\"end_offset\":\(number(topic.endOffset)),"
                + "\"events\":\(topic.events),\"size_bytes\":\(topic.sizeBytes),"
                + "\"last_commit_lsn\":\(string(topic.lastCommitLSN?.description)),"
                + "\"last_commit_time\":\(string(topic.lastCommitTime.map(formatMicros))),"
                + "\"damage\":\(string(topic.damage))}"
        }
        parts.append("\"topics\":[" + topics.joined(separator: ",") + "]")
        let sinks = report.sinks.map { sink in
            let topics = sink.topics.map { entry in
                "{\"topic\":\(string(entry.topic)),\"committed_offset\":\(number(entry.committedOffset)),"
                    + "\"lsn\":\(string(entry.lsn?.description)),\"lag_events\":\(entry.lagEvents),"
                    + "\"lag_seconds\":\(String(format: "%.3f", entry.lagSeconds))}"
            }
            return "{\"name\":\(string(sink.name)),\"type\":\(string(sink.type)),\"state\":\(string(sink.state)),"
                + "\"error\":\(string(sink.error)),\"lag_events\":\(sink.lagEvents),"
                + "\"lag_seconds\":\(String(format: "%.3f", sink.lagSeconds)),\"topics\":[" + topics.joined(separator: ",") + "]}"
        }
        parts.append("\"sinks\":[" + sinks.joined(separator: ",") + "]")
        return "{" + parts.joined(separator: ",") + "}"
    }
}

enum StatusTable {
    static func render(_ report: StatusReport) -> String {
        var out = "daemon: " + (report.daemonPID.map { "running (pid \($0))" } ?? "not running") + "\n\n"
        out += table(["SOURCE", "STATE", "SLOT", "CONFIRMED LSN", "RETAINED WAL", "NOTE"], report.sources.map { source in
            let details = Dictionary(source.status.details, uniquingKeysWith: { $1 })
            return [source.name, source.state, details["slot"] ?? "-", details["confirmed_flush_lsn"] ?? "-",
                    source.status.retainedBytes.map(bytes) ?? "-",
                    source.error ?? source.status.error ?? source.status.warning ?? (details["slot_exists"] == "false" ? "slot not created yet" : "")]
        })
        out += "\n" + table(["TOPIC", "FIRST", "END", "EVENTS", "SIZE", "LAST COMMIT", "NOTE"], report.topics.map { topic in
            [topic.name, "\(topic.firstOffset)", topic.endOffset.map { "\($0)" } ?? "-", "\(topic.events)",
             bytes(topic.sizeBytes), topic.lastCommitTime.map(formatMicros) ?? "-",
             topic.damage.map { "DAMAGED: \($0)" } ?? ""]
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

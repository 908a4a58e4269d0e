import Foundation
import Logging
import SluiceKit
import SluiceRuntime

/// `sluice status --watch`: the console's terminal twin. Once a second it gathers the report again
/// and redraws it in place on a terminal, or appends it (a dated section, or a JSON line with
/// `--json`) when stdout is a pipe or a file; SIGINT or SIGTERM end it with exit 0.
struct StatusWatch {
    let config: SluiceConfig
    let json: Bool
    /// Samples in each sink's sparkline: the last minute.
    static let sparklineLength = 60

    func run() {
        let interrupted = DispatchSemaphore(value: 0)
        var sources: [any DispatchSourceSignal] = []
        for number in [SIGINT, SIGTERM] {
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
            source.setEventHandler { interrupted.signal() }
            source.resume()
            sources.append(source)
        }
        defer { sources.forEach { $0.cancel() } }
        let terminal = isatty(STDOUT_FILENO) == 1
        var lags: [String: HistoryRing<UInt64>] = [:]
        repeat {
            let frame: String
            do {
                let report = try StatusReport.gather(config: config, registry: SluiceMain.registry, logger: Logger(label: "sluice"))
                for sink in report.sinks {
                    lags[sink.name, default: HistoryRing(capacity: Self.sparklineLength)].append(sink.lagEvents)
                }
                frame = json ? StatusJSON.render(report) : StatusTable.render(report) + Self.sinkLines(report, lags)
                    + Self.changeLines(report)
            } catch {
                frame = json ? "{\"error\":\(jsonString("\(error)"))}" : "sluice status: \(error)\n"
            }
            if json {
                print(frame)
            } else if terminal {
                // Home, each line cleared to its end, then the rest of the screen: no flicker.
                let lines = frame.split(separator: "\n", omittingEmptySubsequences: false).map { $0 + "\u{1B}[K" }
                Output.standardOutput("\u{1B}[H" + lines.joined(separator: "\n") + "\u{1B}[J")
            } else {
                print("--- \(ISO8601DateFormatter().string(from: Date()))\n" + frame)
            }
        } while interrupted.wait(timeout: .now() + 1) == .timedOut
        if terminal && !json { Output.standardOutput("\n") }
    }

    /// Each sink's lag over the last minute, one line per sink.
    static func sinkLines(_ report: StatusReport, _ lags: [String: HistoryRing<UInt64>]) -> String {
        guard !report.sinks.isEmpty else { return "" }
        let rows = report.sinks.map { sink -> [String] in
            let values = lags[sink.name]?.elements ?? []
            return [sink.name, sparkline(values), "now \(sink.lagEvents) events, \(String(format: "%.1f", sink.lagSeconds)) s",
                    "max \(values.max() ?? 0)"]
        }
        return "\n" + StatusTable.table(["SINK", "LAG (LAST MINUTE)", "", ""], rows)
    }

    /// The daemon's last state changes, newest first (at most 10 here; the page shows 50).
    static func changeLines(_ report: StatusReport) -> String {
        guard !report.changes.isEmpty else { return "" }
        let formatter = DateFormatter()
        formatter.dateFormat = "HH:mm:ss"
        let rows = report.changes.suffix(10).reversed().map { change in
            [formatter.string(from: change.at), "\(change.kind) \(change.name)", "\(change.from ?? "-") → \(change.to)",
             change.reason.map(Secrets.redact) ?? ""]
        }
        return "\n" + StatusTable.table(["CHANGED", "COMPONENT", "STATE", "REASON"], rows)
    }

    /// `▁▂▃▄▅▆▇█`, scaled to the largest value; a space per missing sample so the line keeps its width.
    static func sparkline(_ values: [UInt64], width: Int = sparklineLength) -> String {
        let blocks = Array("▁▂▃▄▅▆▇█")
        let top = max(values.max() ?? 0, 1)
        let drawn = values.suffix(width).map { blocks[Int((Double($0) / Double(top)) * Double(blocks.count - 1))] }
        return String(repeating: " ", count: max(0, width - drawn.count)) + String(drawn)
    }
}

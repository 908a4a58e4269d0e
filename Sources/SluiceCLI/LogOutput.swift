import Foundation
import Logging
import SluiceKit

/// Log lines on stderr: a readable line on a terminal (`human`), one JSON object per line for
/// log shippers (`json`).
struct StderrLogHandler: LogHandler {
    enum Format: String { case human, json }

    let label: String
    let format: Format
    let colors: Bool
    var logLevel: Logger.Level
    var metadata: Logger.Metadata = [:]

    init(label: String, format: Format, level: Logger.Level) {
        self.label = label
        self.format = format
        self.logLevel = level
        colors = format == .human && isatty(STDERR_FILENO) == 1
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        var merged = metadata
        if let extra = event.metadata { merged.merge(extra) { $1 } }
        // Hidden before encoding, so a secret is found also where JSON would escape it.
        let message = Secrets.redact(event.message.description)
        let context = merged.sorted(by: { $0.key < $1.key }).map { ($0.key, Secrets.redact($0.value.description)) }
        let line: String
        switch format {
        case .json:
            var fields = ["\"time\":\(jsonString(formatMicros(nowMicros())))",
                          "\"level\":\(jsonString(event.level.rawValue))",
                          "\"message\":\(jsonString(message))"]
            for (key, value) in context {
                fields.append("\(jsonString(key)):\(jsonString(value))")
            }
            line = "{" + fields.joined(separator: ",") + "}\n"
        case .human:
            let time = formatMicros(nowMicros()).replacingOccurrences(of: "T", with: " ")
            let level = event.level.rawValue.uppercased().padding(toLength: 7, withPad: " ", startingAt: 0)
            let pairs = context.map { "\($0.0)=\($0.1)" }.joined(separator: " ")
            let painted = colors ? paint(level, event.level) : level
            line = "\(time.dropLast(4))Z \(painted) \(message)\(pairs.isEmpty ? "" : "  " + pairs)\n"
        }
        Output.standardError(line)
    }

    private func paint(_ text: String, _ level: Logger.Level) -> String {
        let code: String
        switch level {
        case .error, .critical: code = "31"
        case .warning: code = "33"
        case .notice: code = "32"
        case .debug, .trace: code = "2"
        case .info: return text
        }
        return "\u{1B}[\(code)m\(text)\u{1B}[0m"
    }
}

enum LogSetup {
    nonisolated(unsafe) static var done = false

    /// Installs the handler once; `format`/`level` come from the config's `logging:` section or flags.
    static func bootstrap(format: String?, level: String?) {
        guard !done else { return }
        done = true
        // Human lines unless the config asks for JSON (colours only on a terminal, see `colors`).
        let chosen = StderrLogHandler.Format(rawValue: format ?? "human") ?? .human
        let parsed = Logger.Level(rawValue: level ?? ProcessInfo.processInfo.environment["SLUICE_LOG_LEVEL"] ?? "info") ?? .info
        LoggingSystem.bootstrap { label in StderrLogHandler(label: label, format: chosen, level: parsed) }
    }

    /// The configuration's warnings, in its log format, whatever level the command logs at.
    static func warn(_ warnings: [String], format: String?) {
        guard !warnings.isEmpty else { return }
        let chosen = StderrLogHandler.Format(rawValue: format ?? "human") ?? .human
        let logger = Logger(label: "sluice") { StderrLogHandler(label: $0, format: chosen, level: .warning) }
        for warning in warnings { logger.warning("\(warning)") }
    }
}

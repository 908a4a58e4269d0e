import Foundation
import SluiceKit

/// Fields the console adds to the `status --json` object (rates, histories, state changes), as
/// rendered `"key":value` pairs.
protocol StatusJSONExtras {
    func top() -> [String]
    func source(_ name: String) -> [String]
    func topic(_ name: String) -> [String]
    func sink(_ name: String) -> [String]
}

/// `sluice status --json`, and the base of the console's `/api/status`: one object.
public enum StatusJSON {
    public static func render(_ report: StatusReport) -> String { render(report, extras: nil) }

    /// A source detail that is a JSON boolean or number (a count of bytes or seconds, a rate), unquoted,
    /// so `jq '.wal_limit_in_seconds < 86400'` compares numbers; nil for a string.
    static func detailLiteral(key: String, value: String) -> String? {
        if value == "true" || value == "false" { return value }
        let numeric = ["_bytes", "_seconds", "_per_second"].contains(where: key.hasSuffix)
        return numeric && Int64(value) != nil ? value : nil
    }

    static func render(_ report: StatusReport, extras: (any StatusJSONExtras)?) -> String {
        func string(_ value: String?) -> String { value.map { jsonString(Secrets.redact($0)) } ?? "null" }
        func number<T: BinaryInteger>(_ value: T?) -> String { value.map { "\($0)" } ?? "null" }
        func date(_ value: Date?) -> String { value.map { "\"\(timestamp($0))\"" } ?? "null" }
        var parts: [String] = []
        parts.append("\"daemon\":{\"running\":\(report.daemonPID != nil),\"pid\":\(number(report.daemonPID))}")
        let sources = report.sources.map { source in
            var fields = ["\"name\":\(string(source.name))", "\"type\":\(string(source.type))",
                          "\"state\":\(string(source.state))", "\"error\":\(string(source.error ?? source.status.error))",
                          "\"since\":\(date(source.since))"]
            for (key, value) in source.status.details {
                fields.append("\(jsonString(key)):" + (detailLiteral(key: key, value: value) ?? string(value)))
            }
            fields.append("\"retained_wal_bytes\":\(number(source.status.retainedBytes))")
            fields.append("\"retained_wal_warning_bytes\":\(number(source.status.retainedWarningBytes))")
            fields.append("\"warning\":\(string(source.status.warning))")
            fields += extras?.source(source.name) ?? []
            return "{" + fields.joined(separator: ",") + "}"
        }
        parts.append("\"sources\":[" + sources.joined(separator: ",") + "]")
        let topics = report.topics.map { topic in
            var fields = ["\"name\":\(string(topic.name))", "\"first_offset\":\(topic.firstOffset)",
                          "\"end_offset\":\(number(topic.endOffset))", "\"events\":\(topic.events)",
                          "\"size_bytes\":\(topic.sizeBytes)", "\"last_commit_lsn\":\(string(topic.lastCommitLSN?.description))",
                          "\"last_commit_time\":\(string(topic.lastCommitTime.map(formatMicros)))",
                          "\"damage\":\(string(topic.damage))",
                          "\"exists\":\(topic.exists.map { $0 ? "true" : "false" } ?? "null")", "\"note\":\(string(topic.note))"]
            fields += extras?.topic(topic.name) ?? []
            return "{" + fields.joined(separator: ",") + "}"
        }
        parts.append("\"topics\":[" + topics.joined(separator: ",") + "]")
        let sinks = report.sinks.map { sink in
            let topics = sink.topics.map { entry in
                "{\"topic\":\(string(entry.topic)),\"committed_offset\":\(number(entry.committedOffset)),"
                    + "\"lsn\":\(string(entry.lsn?.description)),\"lag_events\":\(entry.lagEvents),"
                    + "\"lag_seconds\":\(String(format: "%.3f", entry.lagSeconds))}"
            }
            var fields = ["\"name\":\(string(sink.name))", "\"type\":\(string(sink.type))", "\"state\":\(string(sink.state))",
                          "\"error\":\(string(sink.error))", "\"since\":\(date(sink.since))",
                          "\"last_error\":\(string(sink.lastError))", "\"last_error_at\":\(date(sink.lastErrorAt))",
                          "\"lag_events\":\(sink.lagEvents)", "\"lag_seconds\":\(String(format: "%.3f", sink.lagSeconds))",
                          "\"topics\":[" + topics.joined(separator: ",") + "]"]
            fields += extras?.sink(sink.name) ?? []
            return "{" + fields.joined(separator: ",") + "}"
        }
        parts.append("\"sinks\":[" + sinks.joined(separator: ",") + "]")
        let backfills = report.backfills.map { backfill in
            let progress = backfill.progress
            let tables = progress.tables.map { table in
                "{\"table\":\(string(table.table)),\"copied_rows\":\(table.copiedRows),"
                    + "\"total_rows\":\(number(table.totalRows)),\"done\":\(table.done)}"
            }
            return "{\"source\":\(string(backfill.source)),\"id\":\(string(progress.id)),"
                + "\"started_at\":\(date(progress.startedAt)),\"copied_rows\":\(progress.copiedRows),"
                + "\"total_rows\":\(progress.totalRows),\"eta_seconds\":\(backfillETA(progress).map { String(format: "%.0f", $0) } ?? "null"),"
                + "\"tables\":[" + tables.joined(separator: ",") + "]}"
        }
        parts.append("\"backfills\":[" + backfills.joined(separator: ",") + "]")
        let changes = report.changes.reversed().map { change in
            "{\"at\":\(date(change.at)),\"kind\":\(string(change.kind)),\"name\":\(string(change.name)),"
                + "\"from\":\(string(change.from)),\"to\":\(string(change.to)),\"reason\":\(string(change.reason))}"
        }
        // Newest first.
        parts.append("\"changes\":[" + changes.joined(separator: ",") + "]")
        parts += extras?.top() ?? []
        return "{" + parts.joined(separator: ",") + "}"
    }

    /// Seconds left at the average rate since the backfill started; nil before any row is copied.
    public static func backfillETA(_ progress: BackfillProgress, now: Date = Date()) -> Double? {
        let elapsed = now.timeIntervalSince(progress.startedAt)
        guard progress.copiedRows > 0, elapsed > 0, progress.totalRows >= progress.copiedRows else { return nil }
        return Double(progress.totalRows - progress.copiedRows) / (Double(progress.copiedRows) / elapsed)
    }

    /// UTC to the millisecond, rounded, so a time read back from the status file prints the same.
    static func timestamp(_ date: Date) -> String {
        let millis = Int64((date.timeIntervalSince1970 * 1000).rounded())
        let (seconds, rest) = (millis.quotientAndRemainder(dividingBy: 1000))
        let (whole, fraction) = rest < 0 ? (seconds - 1, rest + 1000) : (seconds, rest)
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime]
        let text = formatter.string(from: Date(timeIntervalSince1970: TimeInterval(whole)))
        return text.dropLast() + "." + String(1000 + fraction).dropFirst() + "Z"
    }

    /// What ``timestamp(_:)`` wrote, or a time in whole seconds.
    static func parseTimestamp(_ text: String) -> Date? {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        if let date = formatter.date(from: text) { return date }
        formatter.formatOptions = [.withInternetDateTime]
        return formatter.date(from: text)
    }
}

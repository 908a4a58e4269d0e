import Foundation

/// A goal from BENCHMARKS.md, matched to a result by the start of its name.
struct Goal {
    enum Kind { case ratioAtLeast, p99Below, peakRSSBelow }
    var prefix: String
    var kind: Kind
    var value: Double

    static let all: [Goal] = [
        Goal(prefix: "capture (source → topic)", kind: .ratioAtLeast, value: 0.9),
        Goal(prefix: "catch-up: ", kind: .ratioAtLeast, value: 2.0),
        Goal(prefix: "apply stage only: topic → PostgreSQL", kind: .ratioAtLeast, value: 0.5),
        Goal(prefix: "apply stage only: topic → SQLite", kind: .ratioAtLeast, value: 0.5),
        Goal(prefix: "apply to PostgreSQL (end to end)", kind: .ratioAtLeast, value: 0.5),
        Goal(prefix: "apply to SQLite (end to end)", kind: .ratioAtLeast, value: 0.5),
        Goal(prefix: "backfill", kind: .ratioAtLeast, value: 0.7),
        Goal(prefix: "PostgreSQL → PostgreSQL, inserts", kind: .ratioAtLeast, value: 1.5),
        Goal(prefix: "PostgreSQL → PostgreSQL, 50% updates", kind: .ratioAtLeast, value: 1.0),
        Goal(prefix: "latency, 5000 tx/s", kind: .p99Below, value: 10),
        Goal(prefix: "latency,", kind: .p99Below, value: 50),
        Goal(prefix: "large transaction", kind: .ratioAtLeast, value: 2.0),
        Goal(prefix: "latency through JetStream", kind: .p99Below, value: 25),
        Goal(prefix: "one ", kind: .peakRSSBelow, value: 150),
        Goal(prefix: "capture → JetStream, replicas 1", kind: .ratioAtLeast, value: 0.7),
        Goal(prefix: "capture → JetStream, replicas 3", kind: .ratioAtLeast, value: 0.4),
        Goal(prefix: "apply stage only: JetStream", kind: .ratioAtLeast, value: 0.7),
    ]

    static func of(_ result: Result) -> Goal? {
        // A bare-publisher comparison is a diagnosis, not a goal.
        guard !result.name.contains("bare publisher") else { return nil }
        return all.first { result.name.hasPrefix($0.prefix) }
    }
}

/// The run as one SVG: each case's figure against its goal, then each latency case's distribution.
enum BenchChart {
    static let width = 900.0

    static func svg(_ results: [Result], title: String) -> String {
        var body = ""
        var y = 40.0
        body += text(20, 24, title, size: 15, weight: "600")
        body += text(20, y + 14, "Each case against its goal (BENCHMARKS.md): green met, red missed; the line is the goal.", size: 11, fill: "#667085")
        y += 28
        for result in results {
            guard let goal = Goal.of(result), let figure = figure(result, goal) else { continue }
            body += bar(result.name, figure: figure, goal: goal, y: y)
            y += 26
        }
        let latencies = results.filter { $0.latencyBuckets != nil }
        if !latencies.isEmpty {
            y += 16
            body += text(20, y + 14, "Commit → applied latency: share of rows per bucket (ms)", size: 13, weight: "600")
            y += 28
            for result in latencies {
                body += histogram(result, y: y)
                y += 150
            }
        }
        return """
            <svg xmlns="http://www.w3.org/2000/svg" width="\(Int(width))" height="\(Int(y + 10))" viewBox="0 0 \(Int(width)) \(Int(y + 10))" \
            font-family="system-ui, sans-serif"><rect width="100%" height="100%" fill="#fff"/>\(body)</svg>

            """
    }

    /// The figure the goal is about: the ratio, the p99 in ms, or the peak RSS in MB.
    static func figure(_ result: Result, _ goal: Goal) -> Double? {
        switch goal.kind {
        case .ratioAtLeast: return result.ratio
        case .p99Below: return result.latencyP99
        case .peakRSSBelow: return result.peakRSSMB
        }
    }

    static func bar(_ name: String, figure: Double, goal: Goal, y: Double) -> String {
        let left = 330.0, span = 320.0
        let top = max(goal.value * 2, figure * 1.05)
        let x = { (value: Double) in left + span * min(value, top) / top }
        let met = goal.kind == .ratioAtLeast ? figure >= goal.value : figure < goal.value
        let label: String
        switch goal.kind {
        case .ratioAtLeast: label = String(format: "%.2f× (goal ≥ %.1f)", figure, goal.value)
        case .p99Below: label = String(format: "p99 %.1f ms (goal < %.0f)", figure, goal.value)
        case .peakRSSBelow: label = String(format: "%.0f MB (goal < %.0f)", figure, goal.value)
        }
        return text(20, y + 13, String(name.prefix(52)), size: 11)
            + "<rect x=\"\(left)\" y=\"\(y + 2)\" width=\"\(span)\" height=\"14\" fill=\"#f2f4f7\"/>"
            + "<rect x=\"\(left)\" y=\"\(y + 2)\" width=\"\(format(x(figure) - left))\" height=\"14\" fill=\"\(met ? "#12805c" : "#c0262d")\"/>"
            + "<line x1=\"\(format(x(goal.value)))\" x2=\"\(format(x(goal.value)))\" y1=\"\(y - 1)\" y2=\"\(y + 19)\" stroke=\"#1d2430\" stroke-width=\"2\"/>"
            + text(left + span + 10, y + 13, label + (met ? "" : " — missed"), size: 11, fill: met ? "#1d2430" : "#c0262d")
    }

    static func histogram(_ result: Result, y: Double) -> String {
        let counts = result.latencyBuckets ?? []
        let total = max(1, counts.reduce(0, +))
        let left = 60.0, height = 90.0, slot = (width - left - 40) / Double(max(1, counts.count))
        let top = Double(counts.max() ?? 1) / Double(total)
        var out = text(20, y + 12, String(result.name.prefix(90)) + String(format: " — p50 %.1f ms, p99 %.1f ms", result.latencyP50 ?? 0,
                                                                            result.latencyP99 ?? 0), size: 11)
        for (index, count) in counts.enumerated() {
            let share = Double(count) / Double(total)
            let h = top > 0 ? height * share / top : 0
            let x = left + Double(index) * slot
            out += "<rect x=\"\(format(x + 2))\" y=\"\(format(y + 20 + height - h))\" width=\"\(format(slot - 4))\" height=\"\(format(h))\" fill=\"#2e6bd9\"/>"
            if count > 0 {
                out += text(x + slot / 2, y + 16 + height - h, String(format: share < 0.01 ? "%.2f%%" : "%.0f%%", share * 100),
                            size: 9, fill: "#667085", anchor: "middle")
            }
            out += text(x + slot / 2, y + 34 + height, Latency.bucketLabels[index], size: 10, fill: "#667085", anchor: "middle")
        }
        return out
    }

    static func text(_ x: Double, _ y: Double, _ content: String, size: Int, weight: String = "400", fill: String = "#1d2430",
                     anchor: String = "start") -> String {
        let escaped = content.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
            .replacingOccurrences(of: ">", with: "&gt;")
        return "<text x=\"\(format(x))\" y=\"\(format(y))\" font-size=\"\(size)\" font-weight=\"\(weight)\" fill=\"\(fill)\" "
            + "text-anchor=\"\(anchor)\">\(escaped)</text>"
    }

    static func format(_ value: Double) -> String { String(format: "%.1f", value) }
}

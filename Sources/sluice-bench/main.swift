import Foundation

// sluice-bench [--quick | --full] [--only case,case] [--keep] [--svg PATH]
// Starts two throwaway PostgreSQL clusters (and, for the JetStream cases, nats-servers), runs each case and its reference on identical seeded
// workloads in this run, and prints one table. See BENCHMARKS.md.

let arguments = Array(CommandLine.arguments.dropFirst())
let full = arguments.contains("--full")
let keep = arguments.contains("--keep")
let only = arguments.firstIndex(of: "--only").flatMap { arguments.indices.contains($0 + 1) ? arguments[$0 + 1] : nil }
    .map { Set($0.split(separator: ",").map(String.init)) }
func wanted(_ name: String) -> Bool { only?.contains(name) ?? true }

let events = full ? 1_000_000 : 100_000
var root = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
while root.path != "/" && !FileManager.default.fileExists(atPath: root.path + "/Package.swift") { root.deleteLastPathComponent() }
let scratch = NSTemporaryDirectory() + "sluice-bench-\(getpid())"
try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
chmod(scratch, 0o755)

print("sluice-bench: \(full ? "full" : "quick") mode, \(events) events; scratch \(scratch)")
let bench = try Bench(root: root.path, scratch: scratch, events: events)
nonisolated(unsafe) var failures: [String] = []
/// Runs one case. Replication slots are the cluster's and `max_replication_slots` is bounded, so the
/// slots a case created are dropped after it, except a capture case's (the stage cases read them).
@MainActor func step(_ name: String, keepSlots: Bool = false, _ body: () throws -> Void) {
    guard wanted(name) else { return }
    FileHandle.standardError.write(Data("… \(name)\n".utf8))
    let before = (try? bench.slotNames()) ?? []
    do { try body() } catch {
        failures.append("\(name): \(error)")
        FileHandle.standardError.write(Data("!! \(name): \(error)\n".utf8))
    }
    guard !keepSlots else { return }
    do { try bench.dropSlots(except: before) } catch {
        failures.append("\(name): dropping its slots: \(error)")
    }
}
step("capture", keepSlots: true) { try bench.capture() }
step("capture-filtered") { try bench.captureFiltered() }
step("catch-up") { try bench.catchUp() }
step("catch-up-costs") { try bench.catchUpCosts() }
step("stage-pg") { try bench.applyStage(postgres: true) }
step("stage-sqlite") { try bench.applyStage(postgres: false) }
step("stage-transforms") { try bench.applyStageTransformed() }
step("stage-transforms-pg") { try bench.applyStageTransformed(postgres: true) }
step("stage-transforms-mixed") { try bench.applyStageTransformedMixed() }
step("stage-aggregates") { try bench.applyStageAggregates() }
step("apply-pg") { try bench.applyPostgres() }
step("apply-sqlite") { try bench.applySQLite() }
step("native-pg") {
    try bench.nativeSubscription(updates: false)
    try bench.nativeSubscription(updates: true)
}
step("latency") { try bench.latency(seconds: full ? 30 : 5, rate: 2000) }
step("latency-5000") {
    try bench.latency(seconds: full ? 30 : 5, rate: 5000, name: "latency_5000")
    try bench.latency(seconds: full ? 30 : 5, rate: 5000, name: "latency_5000_native", label: "native subscription latency", native: true)
}
step("memory") {
    if full { try bench.memory(rows: events / 10) }
    try bench.memory(rows: events)
}
step("backfill") { try bench.backfill(rows: full ? 2_000_000 : 200_000) }
step("large-tx") { try bench.largeTransaction(rows: full ? 2_000_000 : 300_000) }
step("verify") { try bench.verify(rows: events) }
// Topics in JetStream: quick mode keeps them tiny (5,000 events, 1 s of latency).
let jetStream = JetStreamCases(bench: bench, full: full)
var skipped: [String] = []
if let reason = JetStreamCases.unavailable {
    let names = ["capture-js", "stage-js", "latency-js"].filter(wanted)
    if !names.isEmpty {
        skipped.append("\(names.joined(separator: ", ")): \(reason)")
        print("sluice-bench: skipping \(skipped[0])")
    }
} else {
    step("capture-js", keepSlots: true) { try jetStream.capture() }
    step("stage-js") { try jetStream.applyStage() }
    step("latency-js") { try jetStream.latency(seconds: full ? 30 : 1, rate: 2000) }
}
jetStream.shutdown()
bench.shutdown()
if !keep { try? FileManager.default.removeItem(atPath: scratch) }

func cell(_ value: Double?, _ format: String) -> String { value.map { String(format: format, $0) } ?? "–" }
print("")
print("| case | events | seconds | events/s | reference | reference events/s | ratio | peak RSS MB | CPU s | notes |")
print("|---|---:|---:|---:|---|---:|---:|---:|---:|---|")
for result in bench.results {
    let referenceRate = result.reference.map { Double(result.events) / $0 }
    print("| \(result.name) | \(result.events) | \(cell(result.seconds, "%.2f")) | \(cell(result.eventsPerSecond, "%.0f")) | "
        + "\(result.referenceName ?? "–") | \(cell(referenceRate, "%.0f")) | \(cell(result.ratio, "%.2f")) | "
        + "\(cell(result.peakRSSMB, "%.1f")) | \(cell(result.cpuSeconds, "%.2f")) | \(result.note) |")
}
for line in skipped { print("\nskipped: " + line) }
// The run's chart: each case against its goal, and the latency distribution (see BENCHMARKS.md).
let stamp = ISO8601DateFormatter().string(from: Date())
let svgPath = arguments.firstIndex(of: "--svg").flatMap { arguments.indices.contains($0 + 1) ? arguments[$0 + 1] : nil }
    ?? root.path + "/bench-results/bench-\(full ? "full" : "quick")-\(stamp.replacingOccurrences(of: ":", with: "")).svg"
do {
    try FileManager.default.createDirectory(atPath: (svgPath as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
    try BenchChart.svg(bench.results, title: "sluice-bench, \(full ? "full" : "quick") mode, \(stamp)")
        .write(toFile: svgPath, atomically: true, encoding: .utf8)
    print("\nchart: \(svgPath)")
} catch {
    failures.append("chart \(svgPath): \(error)")
}
if !failures.isEmpty {
    print("\nfailed: " + failures.joined(separator: "; "))
    exit(1)
}

import Foundation
import SluiceNATS
import SluiceWire

/// The nats-server binary, or nil when it is not installed (scripts/setup.sh installs it).
let natsServerBinary: String? = ["/usr/sbin/nats-server", "/usr/bin/nats-server", "/usr/local/bin/nats-server"]
    .first { FileManager.default.isExecutableFile(atPath: $0) }

/// One nats-server with JetStream that the bench starts: 127.0.0.1 at a free port, its own store
/// directory under the scratch directory, optionally a member of a cluster. Only the process started
/// here is ever signalled.
final class NATSNode {
    let name: String
    let port: Int
    let logPath: String
    private var child: Child?

    var url: String { "nats://127.0.0.1:\(port)" }

    /// `cluster`: the cluster's name, this node's route port and every node's route port.
    init(name: String, scratch: String, cluster: (name: String, port: Int, routes: [Int])? = nil) throws {
        guard let binary = natsServerBinary else { throw BenchError("nats-server is not installed") }
        self.name = name
        port = try freePort()
        let store = scratch + "/nats-\(name)"
        logPath = scratch + "/nats-\(name).log"
        try FileManager.default.createDirectory(atPath: store, withIntermediateDirectories: true)
        var arguments = [binary, "-js", "-sd", store, "-a", "127.0.0.1", "-p", String(port), "--name", name]
        if let cluster {
            arguments += ["--cluster", "nats://127.0.0.1:\(cluster.port)", "--cluster_name", cluster.name,
                          "--routes", cluster.routes.filter { $0 != cluster.port }.map { "nats://127.0.0.1:\($0)" }.joined(separator: ",")]
        }
        child = try Child(arguments, output: logPath)
    }

    /// Waits until the server accepts client connections (its INFO line arrives).
    func waitAccepting() throws {
        try waitUntil(timeout: 30, "\(name) to accept connections on \(port) (log: \(logPath))") {
            if let child, kill(child.pid, 0) != 0 { throw BenchError("\(name) exited at start (log: \(logPath))") }
            return acceptsConnections(port: port)
        }
    }

    /// User + system CPU seconds the server used so far (from /proc/<pid>/stat).
    var cpuSeconds: Double {
        guard let child, let stat = try? String(contentsOfFile: "/proc/\(child.pid)/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")") else { return 0 }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        guard fields.count > 12, let user = Double(fields[11]), let system = Double(fields[12]) else { return 0 }
        return (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
    }

    /// SIGKILL (a throwaway server: nothing to keep) and reap it.
    func stop() {
        guard let child else { return }
        kill(child.pid, SIGKILL)
        child.wait()
        self.child = nil
    }
}

/// A TCP connect to `port` that reads the server's `INFO {...}` greeting.
private func acceptsConnections(port: Int) -> Bool {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { return false }
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    address.sin_port = in_port_t(UInt16(port).bigEndian)
    let connected = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    guard connected == 0 else { return false }
    var timeout = timeval(tv_sec: 1, tv_usec: 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    var buffer = [UInt8](repeating: 0, count: 4)
    return recv(fd, &buffer, 4, Int32(MSG_WAITALL)) == 4 && buffer == Array("INFO".utf8)
}

/// One JetStream node, or a three-node cluster, and the replicas its streams get.
final class NATSDeployment {
    let nodes: [NATSNode]
    let replicas: Int
    var urls: [String] { nodes.map(\.url) }
    var label: String { "replicas \(replicas) (\(nodes.count) node\(nodes.count == 1 ? "" : "s"))" }

    /// Starts the servers and waits until JetStream accepts a stream with `replicas`.
    init(name: String, size: Int, replicas: Int, scratch: String) throws {
        self.replicas = replicas
        if size == 1 {
            nodes = [try NATSNode(name: name, scratch: scratch)]
        } else {
            let routes = try (0..<size).map { _ in try freePort() }
            var started: [NATSNode] = []
            do {
                for index in 0..<size {
                    started.append(try NATSNode(name: "\(name)-n\(index + 1)", scratch: scratch,
                                                cluster: (name: name, port: routes[index], routes: routes)))
                }
            } catch {
                started.forEach { $0.stop() }
                throw error
            }
            nodes = started
        }
        do {
            for node in nodes { try node.waitAccepting() }
            // A probe stream: the cluster has a metadata leader and places streams with these replicas.
            // Short requests: one sent before the metadata leader is elected goes unanswered.
            var quick = JetStreamOptions()
            quick.requestTimeoutMilliseconds = 500
            let jetStream = try connect(quick)
            var probe = StreamConfig(name: "BENCH_PROBE", subjects: ["bench.probe"])
            probe.replicas = replicas
            try retrying("JetStream to accept a stream with \(replicas) replicas") { try jetStream.addStream(probe) }
            try retrying("the probe stream to go") { try jetStream.deleteStream("BENCH_PROBE") }
        } catch {
            stop()
            throw error
        }
    }

    /// The `topics:` value of a Sluice config writing streams `<prefix>_<topic>`.
    func topics(prefix: String) -> String {
        "{backend: jetstream, servers: [\(urls.joined(separator: ", "))], replicas: \(replicas), stream_prefix: \(prefix)}"
    }

    func connect(_ options: JetStreamOptions = JetStreamOptions()) throws -> JetStream {
        var connectOptions = NATSOptions(servers: urls)
        connectOptions.name = "sluice-bench"
        return try NATSConnection(options: connectOptions).jetStream(options: options)
    }

    /// Every node's CPU seconds so far, summed.
    var cpuSeconds: Double { nodes.reduce(0) { $0 + $1.cpuSeconds } }

    func stop() { nodes.forEach { $0.stop() } }
}

/// Retries `body` while it throws a transient NATS error (no leader yet, a timeout), up to 30 s.
@discardableResult
func retrying<R>(_ what: String, _ body: () throws -> R) throws -> R {
    let deadline = now() + 30
    while true {
        do {
            return try body()
        } catch let error as NATSError where error.isTransient && now() < deadline {
            usleep(100_000)
        } catch {
            throw BenchError("\(what): \(error)")
        }
    }
}

/// The JetStream cases (see BENCHMARKS.md, "Topics in JetStream"): capture into a one-node stream
/// with replicas 1 and a three-node one with replicas 3 against the embedded log, on one workload in
/// this run; a bare asynchronous publisher of the very messages Sluice stored (what JetStream itself
/// accepts here); the apply stage reading JetStream against reading the embedded log; and the
/// commit-to-applied latency through the cluster. The servers are started on first use and killed
/// by `shutdown`.
final class JetStreamCases {
    let bench: Bench
    let full: Bool
    /// Events of the capture workload: the bench's in full mode, a tiny workload in quick mode.
    let events: Int
    private var single: NATSDeployment?
    private var cluster: NATSDeployment?

    /// What the capture case left for the apply-stage case.
    private struct Captured {
        var url: String
        /// A capture run's slot (at the end of the workload), its data directory and `topics:`.
        var embedded: (slot: String, dataDirectory: String)
        var jetStream: (slot: String, dataDirectory: String, topics: String)
    }
    private var captured: Captured?

    init(bench: Bench, full: Bool) {
        self.bench = bench
        self.full = full
        events = full ? bench.events : 5_000
    }

    /// Why the cases cannot run here, or nil.
    static var unavailable: String? {
        natsServerBinary == nil ? "nats-server is not installed (scripts/setup.sh installs it)" : nil
    }

    func oneNode() throws -> NATSDeployment {
        if let single { return single }
        let started = try NATSDeployment(name: "bench1", size: 1, replicas: 1, scratch: bench.scratch)
        single = started
        return started
    }

    func threeNodes() throws -> NATSDeployment {
        if let cluster { return cluster }
        let started = try NATSDeployment(name: "bench3", size: 3, replicas: 3, scratch: bench.scratch)
        cluster = started
        return started
    }

    func shutdown() {
        single?.stop()
        cluster?.stop()
    }

    /// Source → topic, as the capture case measures it (same workload, same end condition), with the
    /// embedded log, JetStream replicas 1 and JetStream replicas 3 from identical slots. Full mode runs
    /// each side twice in the order E 1 3 3 1 E and takes the means; quick mode once each.
    func capture() throws {
        let one = try oneNode(), three = try threeNodes()
        let url = try Workload.database("capture_js", on: bench.source)
        let db = try PGConnection(url: url)
        typealias Run = (slot: String, deployment: NATSDeployment?)
        let runs: [Run] = full
            ? [("e_a", nil), ("r1_a", one), ("r3_a", three), ("r3_b", three), ("r1_b", one), ("e_b", nil)]
            : [("e_a", nil), ("r1_a", one), ("r3_a", three)]
        for run in runs { try db.execute("SELECT pg_create_logical_replication_slot('\(run.slot)', 'pgoutput')") }
        try Workload.load(url: url, total: events, perTransaction: 100)
        let end = try Workload.flushedEnd(url: url)

        struct Measured { var seconds: Double; var usage: Child.Usage; var natsCPU: Double }
        var measured: [String: Measured] = [:]
        for run in runs {
            let name = "capture_js_\(run.slot)"
            let topics = run.deployment?.topics(prefix: prefix(run.slot))
            let cpu = run.deployment?.cpuSeconds ?? 0
            let (seconds, usage) = try bench.captureRun(name, url: url, slot: run.slot, end: end, topics: topics)
            measured[run.slot] = Measured(seconds: seconds, usage: usage, natsCPU: (run.deployment?.cpuSeconds ?? 0) - cpu)
        }
        captured = Captured(url: url, embedded: ("e_a", bench.scratch + "/capture_js_e_a-data"),
                            jetStream: ("r1_a", bench.scratch + "/capture_js_r1_a-data", one.topics(prefix: prefix("r1_a"))))

        let sides = full ? ["a", "b"] : ["a"]
        func mean(_ side: String, _ value: (Measured) -> Double) -> Double {
            sides.map { value(measured["\(side)_\($0)"]!) }.reduce(0, +) / Double(sides.count)
        }
        func each(_ side: String) -> String {
            sides.map { String(format: "%.2f", measured["\(side)_\($0)"]!.seconds) }.joined(separator: "/")
        }
        let embedded = mean("e") { $0.seconds }
        for (side, deployment, goal) in [("r1", one, 0.7), ("r3", three, 0.4)] {
            let seconds = mean(side) { $0.seconds }
            let peak = sides.map { Double(measured["\(side)_\($0)"]!.usage.peakRSSKilobytes) / 1024 }.max() ?? 0
            let embeddedPeak = sides.map { Double(measured["e_\($0)"]!.usage.peakRSSKilobytes) / 1024 }.max() ?? 0
            let runsText = full ? "mean of 2 runs each (JetStream \(each(side)) s, embedded \(each("e")) s); " : ""
            bench.results.append(Result(
                name: "capture → JetStream, \(deployment.label)", events: events, seconds: seconds,
                reference: embedded, referenceName: "capture → embedded log", peakRSSMB: peak,
                cpuSeconds: mean(side) { $0.usage.cpuSeconds },
                note: runsText + String(format: "goal ≥ %.1f×; nats-server CPU %.2f s; embedded: %.1f MB RSS, %.2f s CPU",
                                        goal, mean(side) { $0.natsCPU }, embeddedPeak, mean("e") { $0.usage.cpuSeconds })))
        }

        // What JetStream itself accepts: the messages the first JetStream runs stored, republished.
        for (side, deployment) in [("r1", one), ("r3", three)] {
            try bare(prefix: prefix("\(side)_a"), deployment: deployment, sluiceSeconds: mean(side) { $0.seconds },
                     sluicePeak: sides.map { Double(measured["\(side)_\($0)"]!.usage.peakRSSKilobytes) / 1024 }.max() ?? 0,
                     sluiceCPU: mean(side) { $0.usage.cpuSeconds })
        }
        // Only the stream the apply-stage case replays is kept.
        for run in runs where run.deployment != nil && run.slot != captured?.jetStream.slot {
            let jetStream = try run.deployment!.connect()
            try retrying("delete a capture stream") { try jetStream.deleteStream(prefix(run.slot) + "_bench") }
        }
    }

    private func prefix(_ slot: String) -> String { "CAP_" + slot }

    /// Reads every message of `stream` (not timed), then publishes the same bodies, subjects and
    /// JetStream headers (`Nats-Msg-Id`, `Nats-Expected-Last-Sequence`) into a fresh stream with the
    /// same settings: once asynchronously (`publishAsync`, 256 in flight: the reference) and once
    /// synchronously, one message at a time, as Sluice's publisher does (a note).
    private func bare(prefix: String, deployment: NATSDeployment, sluiceSeconds: Double, sluicePeak: Double, sluiceCPU: Double) throws {
        var options = JetStreamOptions()
        options.maxPendingAsync = 256
        options.stallWaitMilliseconds = 60_000
        options.asyncAckTimeoutMilliseconds = 60_000
        let jetStream = try deployment.connect(options)
        let stream = prefix + "_bench"
        guard let info = try jetStream.streamInfo(stream) else { throw BenchError("stream \(stream) is missing") }
        let last = info.state.lastSequence
        var messages: [(subject: String, data: [UInt8])] = []
        messages.reserveCapacity(Int(last))
        let reader = try StreamReader(jetStream, stream: stream, subject: prefix + ".bench.>", startSequence: 1)
        while reader.nextSequence <= last {
            let batch = try reader.next(max: 1_000, timeoutMilliseconds: 5_000)
            guard !batch.isEmpty else { throw BenchError("reading \(stream): nothing after sequence \(reader.nextSequence - 1) of \(last)") }
            for message in batch { messages.append((String(message.subject.split(separator: ".").last ?? "m"), message.data)) }
        }
        let bytes = messages.reduce(0) { $0 + $1.data.count }

        func publish(_ name: String, async: Bool) throws -> (seconds: Double, natsCPU: Double) {
            var config = StreamConfig(name: name, subjects: [name + ".>"])
            config.replicas = deployment.replicas
            config.maxMessageSize = Int32(900 * 1024 + 64 * 1024)
            config.duplicateWindow = .seconds(120)
            config.allowDirect = true
            try retrying("create stream \(name)") { try jetStream.addStream(config) }
            let subjects = ["m": name + ".bench.m", "s": name + ".bench.s", "d": name + ".bench.d"]
            let cpu = deployment.cpuSeconds
            let started = now()
            for (index, message) in messages.enumerated() {
                let sequence = UInt64(index + 1)
                let subject = subjects[message.subject] ?? name + ".bench.m"
                if async {
                    try jetStream.publishAsync(subject, message.data, messageID: "\(name):\(sequence)",
                                               expectedLastSequence: sequence - 1, tag: sequence)
                } else {
                    try jetStream.publish(subject, message.data, messageID: "\(name):\(sequence)", expectedLastSequence: sequence - 1)
                }
            }
            if async { try jetStream.waitForAsyncAcks(timeoutMilliseconds: 120_000) }
            let seconds = now() - started
            let natsCPU = deployment.cpuSeconds - cpu
            if async {
                let acks = jetStream.takeAsyncAcks()
                let failed = acks.filter { if case .success(let ack) = $0.result { ack.duplicate } else { true } }
                guard acks.count == messages.count, failed.isEmpty else {
                    throw BenchError("bare publish into \(name): \(acks.count) acks for \(messages.count) messages, \(failed.count) failed or duplicate")
                }
            }
            guard try jetStream.streamInfo(name)?.state.messages == UInt64(messages.count) else {
                throw BenchError("bare publish into \(name): the stream does not hold the \(messages.count) messages")
            }
            try retrying("delete stream \(name)") { try jetStream.deleteStream(name) }
            return (seconds, natsCPU)
        }
        let base = "BARE_R\(deployment.replicas)"
        let asynchronous = try publish(base + "_async", async: true)
        let synchronous = try publish(base + "_sync", async: false)
        let megabytes = Double(bytes) / 1_000_000
        bench.results.append(Result(
            name: "capture → JetStream, \(deployment.label), against a bare publisher of its messages", events: events,
            seconds: sluiceSeconds, reference: asynchronous.seconds, referenceName: "bare publishAsync, 256 in flight",
            peakRSSMB: sluicePeak, cpuSeconds: sluiceCPU,
            note: String(format: "%d messages, %.1f MB (mean %.0f KB): bare async %.0f MB/s, nats-server CPU %.2f s; bare synchronous, one at a time: %.2f s (%.0f events/s), nats-server CPU %.2f s",
                         messages.count, megabytes, megabytes * 1000 / Double(max(1, messages.count)),
                         megabytes / asynchronous.seconds, asynchronous.natsCPU,
                         synchronous.seconds, Double(events) / synchronous.seconds, synchronous.natsCPU)))
    }

    /// Topic → target only, as the apply-stage cases measure it: a sink replays the topic a capture
    /// run wrote (its slot is at the end, the source has nothing new), once from the embedded log and
    /// once from the JetStream replicas-1 stream, into fresh targets. Full mode: E J J E, means.
    func applyStage() throws {
        guard let captured else { throw BenchError("needs the capture-js case") }
        let order = full ? [false, true, true, false] : [false, true]
        for postgres in [true, false] {
            var seconds: [Bool: [Double]] = [:]
            var usages: [Bool: [Child.Usage]] = [:]
            var natsCPU = 0.0
            for (index, fromJetStream) in order.enumerated() {
                let name = "stage_js_\(postgres ? "pg" : "sqlite")_\(index)"
                var done: () throws -> Bool
                var rows: () throws -> String?
                var sink: String
                if postgres {
                    let targetURL = try Workload.database(name, on: bench.target, publication: false)
                    let targetDB = try PGConnection(url: targetURL)
                    try targetDB.execute("DROP TABLE bench; DROP TABLE done; DROP PROCEDURE load")
                    sink = bench.postgresSink(targetURL)
                    done = { (try? targetDB.execute("SELECT count(*) FROM done").string(0, 0)) == "1" }
                    rows = { try targetDB.execute("SELECT count(*) FROM bench").string(0, 0) }
                } else {
                    let path = bench.scratch + "/\(name).db"
                    sink = bench.sqliteSink(path)
                    done = {
                        guard FileManager.default.fileExists(atPath: path),
                              let db = try? SQLiteDatabase(path: path, readOnly: true) else { return false }
                        return (try? db.query("SELECT count(*) FROM done").first?.first ?? nil) == "1"
                    }
                    rows = { try SQLiteDatabase(path: path, readOnly: true).query("SELECT count(*) FROM bench").first?.first ?? nil }
                }
                // A copy of the embedded capture's data directory (not timed): a run's sink passing the
                // topic lets retention delete its old segments, which the next run replays.
                // And a copy of its slot: a run's source confirms its slot past the topic's end (a heartbeat
                // while idle), which the next run's fresh copy of the directory would not match.
                let embeddedCopy = bench.scratch + "/\(name)-data"
                let slotCopy = "stage_\(postgres ? "pg" : "sqlite")_\(index)"
                let sourceDB = try PGConnection(url: captured.url)
                if !fromJetStream {
                    try FileManager.default.copyItem(atPath: captured.embedded.dataDirectory, toPath: embeddedCopy)
                    try sourceDB.execute("SELECT pg_copy_logical_replication_slot('\(captured.embedded.slot)', '\(slotCopy)')")
                }
                defer {
                    if !fromJetStream {
                        try? FileManager.default.removeItem(atPath: embeddedCopy)
                        _ = try? sourceDB.execute("SELECT pg_drop_replication_slot('\(slotCopy)')")
                    }
                }
                let config = fromJetStream
                    ? try bench.config(name, source: captured.url, slot: captured.jetStream.slot, sinks: [sink],
                                       dataDirectory: captured.jetStream.dataDirectory, topics: captured.jetStream.topics)
                    : try bench.config(name, source: captured.url, slot: slotCopy, sinks: [sink],
                                       dataDirectory: embeddedCopy)
                let cpu = single?.cpuSeconds ?? 0
                let (taken, usage) = try bench.runSluice(config, until: done)
                if fromJetStream { natsCPU += (single?.cpuSeconds ?? 0) - cpu }
                // Not timed: the end marker arrived, so every row must be there.
                let held = try rows()
                guard held == String(events) else {
                    throw BenchError("\(name): the target holds \(held ?? "no") rows of \(events) (\(fromJetStream ? "JetStream" : "embedded log"))")
                }
                seconds[fromJetStream, default: []].append(taken)
                usages[fromJetStream, default: []].append(usage)
            }
            func mean(_ values: [Double]) -> Double { values.reduce(0, +) / Double(values.count) }
            let runs = Double(order.count / 2)
            let each = { (side: Bool) in seconds[side]!.map { String(format: "%.2f", $0) }.joined(separator: "/") }
            bench.results.append(Result(
                name: "apply stage only: JetStream (replicas 1) → \(postgres ? "PostgreSQL" : "SQLite")", events: events,
                seconds: mean(seconds[true]!), reference: mean(seconds[false]!),
                referenceName: "the same sink reading the embedded log",
                peakRSSMB: usages[true]!.map { Double($0.peakRSSKilobytes) / 1024 }.max(),
                cpuSeconds: mean(usages[true]!.map(\.cpuSeconds)),
                note: (full ? "mean of 2 runs each (JetStream \(each(true)) s, embedded \(each(false)) s); " : "")
                    + String(format: "goal ≥ 0.7×; nats-server CPU %.2f s; embedded: %.1f MB RSS, %.2f s CPU", natsCPU / runs,
                             usages[false]!.map { Double($0.peakRSSKilobytes) / 1024 }.max() ?? 0,
                             mean(usages[false]!.map(\.cpuSeconds)))))
        }
    }

    /// The latency case through the three-node cluster (replicas 3). The daemon creates the stream as it
    /// starts; the timed writes begin once a first row went through (its delay is in the note).
    func latency(seconds: Int, rate: Int) throws {
        let three = try threeNodes()
        let cpu = three.cpuSeconds, before = bench.results.count
        // The note is completed even when the case fails (lost rows): its figures are in the table.
        defer {
            if bench.results.count > before {
                bench.results[bench.results.count - 1].note += String(format: "; goal p99 < 25 ms; nats-server CPU %.2f s",
                                                                      three.cpuSeconds - cpu)
            }
        }
        try bench.latency(seconds: seconds, rate: rate, name: "latency_js", topics: three.topics(prefix: "LAT"),
                          label: "latency through JetStream, \(three.label)", warmUp: true)
    }
}

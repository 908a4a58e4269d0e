import Foundation
import XCTest

// nats-server processes for the JetStream integration tests: single servers and three-node clusters,
// each on free ports with its own store directory, killed with SIGKILL and restarted on the same
// store and ports. Only processes started here are ever signalled.

/// The nats-server binary, or nil when it is not installed (scripts/setup.sh installs it).
let natsServerBinary: String? = {
    var candidates = ["/usr/sbin/nats-server", "/usr/bin/nats-server", "/usr/local/bin/nats-server"]
    for directory in (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":") {
        candidates.append(String(directory) + "/nats-server")
    }
    return candidates.first { FileManager.default.isExecutableFile(atPath: $0) }
}()

/// Skips the calling test where nats-server is not installed.
func skipUnlessNATSServerIsInstalled() throws {
    guard natsServerBinary != nil else {
        throw XCTSkip("nats-server is not installed; scripts/setup.sh installs it (Debian package nats-server)")
    }
}

/// One nats-server with JetStream on 127.0.0.1: a client port, a monitoring port (`-m`, for `/jsz`),
/// a store directory kept across `kill()` and `start()`, and for a cluster member its route ports.
final class NATSNode {
    let name: String
    let port: Int
    let monitorPort: Int
    let storeDirectory: String
    let logPath: String
    /// For a cluster member: the cluster's name, this node's route port and every member's route port.
    let cluster: (name: String, routePort: Int, routePorts: [Int])?
    private(set) var process: SluiceProcess?
    /// How many times this node was started.
    private(set) var starts = 0
    /// More nats-server options (e.g. `--user`, `--pass`).
    var extraArguments: [String] = []

    var url: String { "nats://127.0.0.1:\(port)" }
    var isRunning: Bool { process?.isRunning == true }

    init(name: String, directory: String, cluster: (name: String, routePort: Int, routePorts: [Int])? = nil) throws {
        self.name = name
        port = try freePort()
        monitorPort = try freePort()
        self.cluster = cluster
        storeDirectory = directory + "/nats-\(name)-store"
        logPath = directory + "/nats-\(name).log"
        try FileManager.default.createDirectory(atPath: storeDirectory, withIntermediateDirectories: true)
    }

    var arguments: [String] {
        var arguments = ["-js", "-sd", storeDirectory, "-a", "127.0.0.1", "-p", String(port), "-m", String(monitorPort), "--name", name]
        if let cluster {
            arguments += ["--cluster", "nats://127.0.0.1:\(cluster.routePort)", "--cluster_name", cluster.name,
                          "--routes", cluster.routePorts.filter { $0 != cluster.routePort }.map { "nats://127.0.0.1:\($0)" }
                              .joined(separator: ",")]
        }
        return arguments + extraArguments
    }

    /// Starts the server (on the same ports and store as before, after a kill) and waits until its
    /// client port answers with the server's INFO greeting.
    func start(timeout: TimeInterval = 30) throws {
        guard let binary = natsServerBinary else { throw TestFailure("nats-server is not installed (scripts/setup.sh installs it)") }
        precondition(!isRunning, "nats-server \(name) is already running")
        let child = try SluiceProcess(program: binary, arguments, logPath: logPath)
        process = child
        starts += 1
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if acceptsClients() { return }
            if !child.isRunning {
                process = nil
                throw TestFailure("nats-server \(name) exited at start (status \(child.wait())):\n\(logTail)")
            }
            usleep(20_000)
        }
        throw TestFailure("nats-server \(name) does not accept connections on port \(port) after \(timeout) s:\n\(logTail)")
    }

    /// SIGKILL: the server gets no chance to flush or to hand over leadership.
    func kill() {
        process?.kill()
        process = nil
    }

    var logTail: String {
        let text = (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "(no log)"
        return String(text.suffix(4_000))
    }

    /// A TCP connect to the client port that reads the `INFO {` greeting.
    func acceptsClients() -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard connected == 0 else { return false }
        var timeout = timeval(tv_sec: 1, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var buffer = [UInt8](repeating: 0, count: 4)
        return recv(fd, &buffer, 4, Int32(MSG_WAITALL)) == 4 && buffer == Array("INFO".utf8)
    }

    // MARK: Monitoring (/jsz)

    /// `GET /jsz?accounts=true&streams=true`, parsed.
    func jsz() throws -> [String: Any] {
        let response = try opsHTTPGet(port: monitorPort, path: "/jsz?accounts=true&streams=true")
        guard response.status == 200,
              let object = try JSONSerialization.jsonObject(with: Data(response.body.utf8)) as? [String: Any] else {
            throw TestFailure("nats-server \(name): /jsz answered \(response.status): \(response.body.prefix(500))")
        }
        return object
    }

    /// The JetStream meta leader this node knows of, if any.
    func metaLeader() throws -> String? {
        let leader = (try jsz()["meta_cluster"] as? [String: Any])?["leader"] as? String
        return leader?.isEmpty == false ? leader : nil
    }

    /// What this node reports of `stream`: its state and, in a cluster, its leader.
    func stream(_ stream: String) throws -> NATSStreamView? {
        let accounts = try jsz()["account_details"] as? [[String: Any]] ?? []
        for account in accounts {
            for detail in account["stream_detail"] as? [[String: Any]] ?? [] where detail["name"] as? String == stream {
                return NATSStreamView(detail)
            }
        }
        return nil
    }
}

/// A stream as `/jsz?streams=true` shows it.
struct NATSStreamView {
    let json: [String: Any]
    init(_ json: [String: Any]) { self.json = json }

    var state: [String: Any] { json["state"] as? [String: Any] ?? [:] }
    var messages: Int { state["messages"] as? Int ?? 0 }
    var bytes: Int { state["bytes"] as? Int ?? 0 }
    var lastSequence: Int { state["last_seq"] as? Int ?? 0 }
    var leader: String? {
        let leader = (json["cluster"] as? [String: Any])?["leader"] as? String
        return leader?.isEmpty == false ? leader : nil
    }
    var replicas: [[String: Any]] { (json["cluster"] as? [String: Any])?["replicas"] as? [[String: Any]] ?? [] }
    var text: String {
        (try? JSONSerialization.data(withJSONObject: json, options: [.sortedKeys])).map { String(decoding: $0, as: UTF8.self) } ?? "\(json)"
    }
}

/// `size` nats-servers routed into one JetStream cluster, each with its own store and ports.
final class NATSNodeCluster {
    let nodes: [NATSNode]
    var urls: [String] { nodes.map(\.url) }

    init(name: String, directory: String, size: Int = 3) throws {
        let routePorts = try (0..<size).map { _ in try freePort() }
        nodes = try (0..<size).map { index in
            try NATSNode(name: "n\(index + 1)", directory: directory,
                         cluster: (name: name, routePort: routePorts[index], routePorts: routePorts))
        }
    }

    func node(named name: String) -> NATSNode? { nodes.first { $0.name == name } }

    /// Starts every node, then waits until every running node knows the same JetStream meta leader.
    func start(timeout: TimeInterval = 60) throws {
        for node in nodes where !node.isRunning { try node.start() }
        try waitForMetaLeader(timeout: timeout)
    }

    func waitForMetaLeader(timeout: TimeInterval = 60, file: StaticString = #filePath, line: UInt = #line) throws {
        try eventually(timeout: timeout, "the JetStream cluster to elect a meta leader known to every running node: "
                       + nodes.filter(\.isRunning).map { "\($0.name): \((try? $0.metaLeader()).flatMap { $0 } ?? "none")" }.joined(separator: ", "),
                       file: file, line: line) {
            let leaders = try nodes.filter(\.isRunning).map { try $0.metaLeader() }
            return !leaders.isEmpty && leaders.allSatisfy { $0 != nil && $0 == leaders[0] }
        }
    }

    /// The stream's leader as the running nodes agree on it, or nil while they do not.
    func streamLeader(_ stream: String) -> String? {
        let leaders = nodes.filter(\.isRunning).map { (try? $0.stream(stream))?.leader }
        guard let first = leaders.first ?? nil, leaders.allSatisfy({ $0 == first }) else { return nil }
        return first
    }
}

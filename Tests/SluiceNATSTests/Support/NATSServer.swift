import Foundation
import SluiceNATS
import XCTest

/// The nats-server binary, or nil when it is not installed (scripts/setup.sh installs it).
let natsServerBinary: String? = {
    for path in ["/usr/sbin/nats-server", "/usr/bin/nats-server", "/usr/local/bin/nats-server"]
    where FileManager.default.isExecutableFile(atPath: path) {
        return path
    }
    return nil
}()

/// One nats-server with JetStream that a test starts: 127.0.0.1 at a free port, its own store
/// directory (kept across `kill()` and `start()`, as a restarted server keeps its disk), optionally
/// a member of a cluster. Only the process started here is ever signalled.
final class NATSServer {
    let name: String
    let port: Int
    let storeDirectory: String
    let logPath: String
    /// For a cluster member: the cluster's name, this node's route port and every node's route port.
    let cluster: (name: String, port: Int, routes: [Int])?
    /// More command-line options (`--user`, `--auth`, …).
    var extraArguments: [String] = []
    private(set) var pid: pid_t?

    var url: String { "nats://127.0.0.1:\(port)" }

    init(name: String, directory: String, port: Int? = nil, cluster: (name: String, port: Int, routes: [Int])? = nil) throws {
        self.name = name
        self.port = try port ?? freePort()
        self.cluster = cluster
        storeDirectory = directory + "/\(name)-store"
        logPath = directory + "/\(name).log"
        try FileManager.default.createDirectory(atPath: storeDirectory, withIntermediateDirectories: true)
    }

    var arguments: [String] {
        var arguments = ["-js", "-sd", storeDirectory, "-a", "127.0.0.1", "-p", String(port), "-n", name]
        if let cluster {
            arguments += ["--cluster", "nats://127.0.0.1:\(cluster.port)", "--cluster_name", cluster.name,
                          "--routes", cluster.routes.filter { $0 != cluster.port }.map { "nats://127.0.0.1:\($0)" }.joined(separator: ",")]
        }
        return arguments + extraArguments
    }

    /// Starts the server and waits until it accepts client connections (its INFO line arrives).
    func start(timeout: TimeInterval = 30) throws {
        guard let binary = natsServerBinary else { throw TestFailure("nats-server is not installed (scripts/setup.sh installs it)") }
        precondition(pid == nil, "\(name) is already running")
        pid = try spawn(binary, arguments, logPath: logPath)
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if acceptsConnections() { return }
            if let pid, waitpid(pid, nil, WNOHANG) == pid {
                self.pid = nil
                throw TestFailure("\(name) exited at start:\n\(logTail)")
            }
            usleep(20_000)
        }
        throw TestFailure("\(name) does not accept connections on \(port) after \(timeout)s:\n\(logTail)")
    }

    /// SIGKILL: the server gets no chance to flush or say goodbye.
    func kill() {
        guard let pid else { return }
        Foundation.kill(pid, SIGKILL)
        while waitpid(pid, nil, 0) < 0 && errno == EINTR {}
        self.pid = nil
    }

    var isRunning: Bool { pid != nil }

    var logTail: String {
        let text = (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "(no log)"
        return String(text.suffix(4_000))
    }

    /// A TCP connect to the client port that reads the server's `INFO {...}` greeting.
    private func acceptsConnections() -> Bool {
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
}

/// Three (or `size`) nats-servers routed into one JetStream cluster, each with its own store.
final class NATSCluster {
    let servers: [NATSServer]
    var urls: [String] { servers.map(\.url) }

    init(name: String, directory: String, size: Int = 3) throws {
        let routePorts = try (0..<size).map { _ in try freePort() }
        servers = try (0..<size).map { index in
            try NATSServer(name: "n\(index + 1)", directory: directory,
                           cluster: (name: name, port: routePorts[index], routes: routePorts))
        }
    }

    func start() throws {
        for server in servers { try server.start() }
    }

    func server(named name: String) -> NATSServer? { servers.first { $0.name == name } }

    func killAll() { servers.forEach { $0.kill() } }
}

/// Base of the tests: a scratch directory, the servers a test starts (killed in tearDown), and a
/// skip when nats-server is missing.
class NATSTestCase: XCTestCase {
    var directory: String!
    var servers: [NATSServer] = []

    override func setUpWithError() throws {
        guard natsServerBinary != nil else {
            throw XCTSkip("nats-server is not installed; scripts/setup.sh installs it (Debian package nats-server)")
        }
        directory = NSTemporaryDirectory() + "sluice-nats-test-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    }

    override func tearDown() {
        servers.forEach { $0.kill() }
        servers.removeAll()
        if let directory { try? FileManager.default.removeItem(atPath: directory) }
    }

    /// A started single server, killed at teardown.
    func startServer(name: String = "n1", arguments: [String] = []) throws -> NATSServer {
        let server = try NATSServer(name: name, directory: directory)
        server.extraArguments = arguments
        servers.append(server)
        try server.start()
        return server
    }

    /// A started three-node cluster, killed at teardown.
    func startCluster() throws -> NATSCluster {
        let cluster = try NATSCluster(name: "sluice-test", directory: directory)
        servers += cluster.servers
        try cluster.start()
        return cluster
    }

    func connect(_ urls: [String], configure: (inout NATSOptions) -> Void = { _ in }) throws -> NATSConnection {
        var options = NATSOptions(servers: urls)
        options.reconnectWaitMilliseconds = 100
        configure(&options)
        return try NATSConnection(options: options)
    }

    /// Retries `body` while it throws a transient error (no stream leader yet, reconnecting), up to `timeout`.
    func retrying<R>(timeout: TimeInterval = 30, _ what: String, _ body: () throws(NATSError) -> R) throws -> R {
        let deadline = Date().addingTimeInterval(timeout)
        while true {
            let result = Result(catching: body)
            switch result {
            case .success(let value):
                return value
            // 10005, no suitable peers: a new cluster's meta leader has not heard from every node yet.
            case .failure(let error) where (error.isTransient || error.jetStreamCode == 10005) && Date() < deadline:
                usleep(50_000)
            case .failure(let error):
                throw TestFailure("\(what): \(error)")
            }
        }
    }
}

/// The error `body` threw, or nil.
func failure(_ body: () throws(NATSError) -> Void) -> NATSError? {
    do throws(NATSError) {
        try body()
        return nil
    } catch {
        return error
    }
}

/// Waits for `condition`, polling, up to `timeout`.
func eventually(timeout: TimeInterval = 30, _ what: @autoclosure () -> String,
                _ condition: () throws -> Bool) throws {
    let deadline = Date().addingTimeInterval(timeout)
    while Date() < deadline {
        if (try? condition()) == true { return }
        usleep(50_000)
    }
    if try condition() { return }
    throw TestFailure("timed out waiting for \(what())")
}

func spawn(_ program: String, _ arguments: [String], logPath: String) throws -> pid_t {
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
    posix_spawn_file_actions_addopen(&actions, 1, logPath, O_WRONLY | O_CREAT | O_APPEND, 0o644)
    posix_spawn_file_actions_adddup2(&actions, 1, 2)
    let argv = ([program] + arguments).map { strdup($0) } + [nil]
    defer { argv.forEach { free($0) } }
    var child: pid_t = 0
    let rc = posix_spawn(&child, program, &actions, nil, argv, environ)
    guard rc == 0 else { throw TestFailure("cannot start \(program): \(String(cString: strerror(rc)))") }
    return child
}

/// A TCP port nothing listens on right now.
func freePort() throws -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    address.sin_port = 0
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let bound = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) }
    }
    guard bound == 0 else { throw TestFailure("bind failed") }
    _ = withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
    }
    return Int(UInt16(bigEndian: address.sin_port))
}

struct TestFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// `count` bytes of a recognisable body for message `index`.
func body(_ index: Int, size: Int = 64) -> [UInt8] {
    var bytes = Array("m\(index):".utf8)
    while bytes.count < size { bytes.append(UInt8(truncatingIfNeeded: bytes.count &+ index)) }
    return Array(bytes.prefix(Swift.max(size, bytes.count)))
}

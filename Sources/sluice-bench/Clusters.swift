import Foundation
import SluiceWire

/// A throwaway PostgreSQL cluster, started with the repository's scripts/pg-cluster.sh.
final class Cluster {
    let directory: String
    let port: Int
    var url: String { "postgresql://postgres@127.0.0.1:\(port)/postgres" }

    init(name: String, root: String, scratch: String) throws {
        port = try freePort()
        directory = scratch + "/" + name
        self.root = root
        try run([root + "/scripts/pg-cluster.sh", "start", directory, String(port)])
    }

    private let root: String

    func stop() { _ = try? run([root + "/scripts/pg-cluster.sh", "stop", directory]) }

    func connect() throws -> PGConnection { try PGConnection(url: url) }

    func scalar(_ sql: String) throws -> String? {
        try connect().execute(sql).string(0, 0)
    }
}

func freePort() throws -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let bound = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) }
    }
    guard bound == 0 else { throw BenchError("cannot bind a port") }
    _ = withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
    }
    return Int(UInt16(bigEndian: address.sin_port))
}

func lsn(_ text: String?) -> UInt64 {
    guard let text else { return 0 }
    let parts = text.split(separator: "/")
    guard parts.count == 2 else { return 0 }
    return (UInt64(parts[0], radix: 16) ?? 0) << 32 | (UInt64(parts[1], radix: 16) ?? 0)
}

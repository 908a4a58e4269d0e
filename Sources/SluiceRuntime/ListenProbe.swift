import Foundation
import SluiceKit

/// Whether the metrics listener's address can be bound, asked before the server starts: the HTTP
/// server itself only reports a failed bind as a start-up timeout.
enum ListenProbe {
    /// Nil when `host:port` can be bound now; else why not, in plain words.
    static func problem(host: String, port: Int) -> String? {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        let ip = host == "localhost" ? "127.0.0.1" : host
        guard inet_pton(AF_INET, ip, &address.sin_addr) == 1 else {
            return "'\(host)' is not an IPv4 address (use 127.0.0.1, 0.0.0.0 or this host's address)"
        }
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return "cannot create a socket: \(String(cString: strerror(errno)))" }
        defer { close(fd) }
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound != 0 else { return nil }
        switch errno {
        case EADDRINUSE: return "address already in use: another process listens on \(host):\(port) (another sluice?); choose another port in metrics.listen"
        case EADDRNOTAVAIL: return "\(host) is not an address of this machine"
        case EACCES: return "permission denied: ports below 1024 need privileges; choose a port above 1024"
        default: return String(cString: strerror(errno))
        }
    }

    static func finding(_ metrics: SluiceConfig.Metrics?, dataDirectory: String) -> [CheckFinding] {
        guard let metrics else { return [] }
        if let problem = problem(host: metrics.host, port: metrics.port) {
            // The daemon of this very file holds it: that is what it is for.
            if let pid = DataDirectoryLock.isHeld(dataDirectory: dataDirectory) {
                return [CheckFinding(.ok, "metrics", "\(metrics.host):\(metrics.port) is in use, presumably by the running daemon (pid \(pid))")]
            }
            return [CheckFinding(.error, "metrics", "cannot listen on \(metrics.host):\(metrics.port): \(problem)")]
        }
        return [CheckFinding(.ok, "metrics", "\(metrics.host):\(metrics.port) is free for /metrics and /health")]
    }
}

import Foundation

/// Whether something accepts TCP connections at `host:port`, within `timeoutMillis`: nil if so, else
/// why not. Sends nothing, so a receiver sees no request (used by `probe` and `check`).
func tcpUnreachable(host: String, port: Int, timeoutMillis: Int32) -> String? {
    var hints = addrinfo()
    hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
    var list: UnsafeMutablePointer<addrinfo>?
    let status = getaddrinfo(host, String(port), &hints, &list)
    guard status == 0, let first = list else { return "cannot resolve \(host): \(String(cString: gai_strerror(status)))" }
    defer { freeaddrinfo(list) }
    var reason = "no address for \(host)"
    var entry: UnsafeMutablePointer<addrinfo>? = first
    while let info = entry {
        entry = info.pointee.ai_next
        let fd = socket(info.pointee.ai_family, info.pointee.ai_socktype, info.pointee.ai_protocol)
        guard fd >= 0 else { continue }
        defer { close(fd) }
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
        if connect(fd, info.pointee.ai_addr, info.pointee.ai_addrlen) == 0 { return nil }
        guard errno == EINPROGRESS else {
            reason = String(cString: strerror(errno))
            continue
        }
        var poller = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
        guard poll(&poller, 1, timeoutMillis) == 1 else {
            reason = "no answer within \(timeoutMillis) ms"
            continue
        }
        var error: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length)
        if error == 0 { return nil }
        reason = String(cString: strerror(error))
    }
    return reason
}

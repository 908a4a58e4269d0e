import Foundation
import XCTest

// Reading what a running daemon reports: `sluice status --json`, HTTP (/health, /metrics) and the
// Prometheus text format.

// MARK: Status

/// `sluice status --config F --json` (with `environment`), parsed.
func sluiceStatus(_ config: String, environment: [String: String] = [:],
                  file: StaticString = #filePath, line: UInt = #line) throws -> StatusView {
    let result = try sluice(["status", "--config", config, "--json"], environment: environment, timeout: 60)
    guard result.status == 0 else {
        XCTFail("sluice status --json failed: \(result.describe)", file: file, line: line)
        throw TestFailure("sluice status --json failed: \(result.describe)")
    }
    guard let object = try JSONSerialization.jsonObject(with: Data(result.out.utf8)) as? [String: Any] else {
        throw TestFailure("sluice status --json printed no JSON object: \(result.out)")
    }
    return StatusView(object)
}

/// Accessors for the parsed `status --json` object.
struct StatusView {
    let json: [String: Any]
    init(_ json: [String: Any]) { self.json = json }

    var daemon: [String: Any] { json["daemon"] as? [String: Any] ?? [:] }
    var daemonRunning: Bool? { daemon["running"] as? Bool }
    var sources: [[String: Any]] { json["sources"] as? [[String: Any]] ?? [] }
    var topics: [[String: Any]] { json["topics"] as? [[String: Any]] ?? [] }
    var sinks: [[String: Any]] { json["sinks"] as? [[String: Any]] ?? [] }

    func source(_ name: String) -> [String: Any]? { sources.first { $0["name"] as? String == name } }
    func topic(_ name: String) -> [String: Any]? { topics.first { $0["name"] as? String == name } }
    func sink(_ name: String) -> [String: Any]? { sinks.first { $0["name"] as? String == name } }
    func sinkTopic(_ sink: String, _ topic: String) -> [String: Any]? {
        (self.sink(sink)?["topics"] as? [[String: Any]])?.first { $0["topic"] as? String == topic }
    }
    func endOffset(_ topic: String) -> Int? { self.topic(topic)?["end_offset"] as? Int }
    func events(_ topic: String) -> Int? { self.topic(topic)?["events"] as? Int }
    func committedOffset(_ sink: String, _ topic: String) -> Int? { sinkTopic(sink, topic)?["committed_offset"] as? Int }
    func state(sink: String) -> String? { self.sink(sink)?["state"] as? String }
    func error(sink: String) -> String? { self.sink(sink)?["error"] as? String }

    /// The sink has applied everything the topic holds.
    func caughtUp(_ sink: String, _ topic: String) -> Bool {
        guard let end = endOffset(topic), let committed = committedOffset(sink, topic) else { return false }
        return end == committed && (sinkTopic(sink, topic)?["lag_events"] as? Int) == 0
            && (self.sink(sink)?["lag_events"] as? Int) == 0
    }

    var text: String {
        (try? JSONSerialization.data(withJSONObject: json, options: [.sortedKeys]))
            .map { String(decoding: $0, as: UTF8.self) } ?? "\(json)"
    }
}

// MARK: HTTP

/// A plain HTTP/1.1 GET over a socket to 127.0.0.1; returns the status code and the body.
func opsHTTPGet(port: Int, path: String, headers: [String] = [], timeout: TimeInterval = 5) throws -> (status: Int, body: String) {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw TestFailure("socket failed") }
    defer { close(fd) }
    var time = timeval(tv_sec: Int(timeout), tv_usec: 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &time, socklen_t(MemoryLayout<timeval>.size))
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &time, socklen_t(MemoryLayout<timeval>.size))
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    address.sin_port = UInt16(port).bigEndian
    let connected = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    guard connected == 0 else { throw TestFailure("cannot connect to 127.0.0.1:\(port): \(String(cString: strerror(errno)))") }
    let request = "GET \(path) HTTP/1.1\r\nHost: 127.0.0.1:\(port)\r\nConnection: close\r\nAccept: */*\r\n"
        + headers.map { $0 + "\r\n" }.joined() + "\r\n"
    let sent = request.withCString { send(fd, $0, strlen($0), 0) }
    guard sent == request.utf8.count else { throw TestFailure("send failed") }
    var data = [UInt8]()
    var buffer = [UInt8](repeating: 0, count: 65536)
    let deadline = Date().addingTimeInterval(timeout)
    while Date() < deadline {
        let count = recv(fd, &buffer, buffer.count, 0)
        if count <= 0 { break }
        data += buffer[0..<count]
        // Stop once a Content-Length body is complete (in case the server keeps the connection).
        if let (headerEnd, length) = contentLength(data), data.count >= headerEnd + length { break }
    }
    guard let separator = findSeparator(data) else {
        throw TestFailure("no HTTP response from 127.0.0.1:\(port)\(path): \(String(decoding: data, as: UTF8.self))")
    }
    let head = String(decoding: data[0..<separator], as: UTF8.self)
    var body = Array(data[(separator + 4)...])
    let statusLine = head.split(separator: "\r\n").first.map(String.init) ?? ""
    let parts = statusLine.split(separator: " ")
    guard parts.count >= 2, let status = Int(parts[1]) else { throw TestFailure("bad status line: \(statusLine)") }
    if head.lowercased().contains("transfer-encoding: chunked") { body = dechunk(body) }
    if let (_, length) = contentLength(data), body.count > length { body = Array(body.prefix(length)) }
    return (status, String(decoding: body, as: UTF8.self))
}

private func findSeparator(_ data: [UInt8]) -> Int? {
    guard data.count >= 4 else { return nil }
    for index in 0...(data.count - 4) where data[index] == 13 && data[index + 1] == 10 && data[index + 2] == 13 && data[index + 3] == 10 {
        return index
    }
    return nil
}

private func contentLength(_ data: [UInt8]) -> (Int, Int)? {
    guard let separator = findSeparator(data) else { return nil }
    let head = String(decoding: data[0..<separator], as: UTF8.self).lowercased()
    for line in head.split(separator: "\r\n") where line.hasPrefix("content-length:") {
        if let length = Int(line.dropFirst("content-length:".count).trimmingCharacters(in: .whitespaces)) {
            return (separator + 4, length)
        }
    }
    return nil
}

private func dechunk(_ body: [UInt8]) -> [UInt8] {
    var out: [UInt8] = []
    var index = 0
    while index < body.count {
        guard let lineEnd = (index..<(body.count - 1)).first(where: { body[$0] == 13 && body[$0 + 1] == 10 }) else { break }
        let sizeText = String(decoding: body[index..<lineEnd], as: UTF8.self).split(separator: ";").first ?? ""
        guard let size = Int(sizeText.trimmingCharacters(in: .whitespaces), radix: 16), size > 0 else { break }
        let start = lineEnd + 2
        out += body[start..<min(body.count, start + size)]
        index = start + size + 2
    }
    return out
}

// MARK: Prometheus text

/// One sample line of the Prometheus text format.
struct OpsSample {
    var name: String
    var labels: [String: String]
    var value: Double
}

func opsParseMetrics(_ text: String) -> [OpsSample] {
    text.split(separator: "\n").compactMap { raw -> OpsSample? in
        let line = raw.trimmingCharacters(in: .whitespaces)
        guard !line.isEmpty, !line.hasPrefix("#") else { return nil }
        var name = ""
        var labels: [String: String] = [:]
        var rest: Substring
        if let brace = line.firstIndex(of: "{"), let close = line.lastIndex(of: "}") {
            name = String(line[..<brace])
            let inner = line[line.index(after: brace)..<close]
            // label="value" pairs; values have no escaped quotes in these metrics.
            var scan = inner[...]
            while let equals = scan.firstIndex(of: "=") {
                let key = scan[..<equals].trimmingCharacters(in: CharacterSet(charactersIn: ", "))
                let afterEquals = scan[scan.index(after: equals)...]
                guard afterEquals.first == "\"", let end = afterEquals.dropFirst().firstIndex(of: "\"") else { break }
                labels[key] = String(afterEquals[afterEquals.index(after: afterEquals.startIndex)..<end])
                scan = afterEquals[afterEquals.index(after: end)...]
            }
            rest = line[line.index(after: close)...]
        } else {
            guard let space = line.firstIndex(of: " ") else { return nil }
            name = String(line[..<space])
            rest = line[space...]
        }
        let fields = rest.split(separator: " ")
        guard let first = fields.first, let value = Double(first) else { return nil }
        return OpsSample(name: name, labels: labels, value: value)
    }
}

/// The sum of the samples named `name` whose labels include `labels`; nil when there is none.
func opsMetric(_ samples: [OpsSample], _ name: String, _ labels: [String: String] = [:]) -> Double? {
    let matching = samples.filter { sample in
        sample.name == name && labels.allSatisfy { sample.labels[$0.key] == $0.value }
    }
    return matching.isEmpty ? nil : matching.reduce(0) { $0 + $1.value }
}

/// Mounts a tmpfs of `size` (e.g. "8m") on `path`, creating it first: a small disk a test can fill.
/// Needs root; skips the test otherwise. The caller unmounts it (`umount -l`) in its tear-down.
func mountTmpfs(on path: String, size: String) throws {
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    do {
        try IntegrationTests.run(["/usr/bin/mount", "-t", "tmpfs", "-o", "size=\(size)", "tmpfs", path])
    } catch {
        if getuid() != 0 { throw XCTSkip("mounting a tmpfs needs root: \(error)") }
        throw error
    }
}

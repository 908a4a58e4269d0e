import Foundation
import SluiceWire
import XCTest

// Helpers for the operations tests (bad configs, check, status, metrics, heartbeats, backfill).

// MARK: Running sluice

/// The outcome of one `sluice` invocation.
struct OpsResult {
    var status: Int32
    var out: String
    var err: String
    /// True when the command did not exit within its time limit and was killed.
    var timedOut: Bool
    var all: String { out + err }
    var describe: String { "exit \(status)\(timedOut ? " (timed out, killed)" : "")\n--- stdout ---\n\(out)\n--- stderr ---\n\(err)" }
}

/// Runs `sluice` to completion, or kills it after `timeout` seconds; stdout and stderr apart.
func opsSluice(_ arguments: [String], environment: [String: String] = [:], timeout: TimeInterval = 60) throws -> OpsResult {
    let base = NSTemporaryDirectory() + "sluice-opsout-\(UUID().uuidString)"
    defer {
        try? FileManager.default.removeItem(atPath: base + ".out")
        try? FileManager.default.removeItem(atPath: base + ".err")
    }
    // `exec`: the shell becomes sluice, so a kill reaches sluice itself.
    let command = "exec " + ([sluiceBinary] + arguments).map { "'" + $0.replacingOccurrences(of: "'", with: "'\\''") + "'" }
        .joined(separator: " ") + " >'\(base).out' 2>'\(base).err'"
    let child = try Child(["/bin/sh", "-c", command], output: "/dev/null", environment: environment)
    let deadline = Date().addingTimeInterval(timeout)
    var timedOut = false
    while child.isRunning {
        if Date() > deadline {
            timedOut = true
            child.signal(SIGKILL)
            break
        }
        usleep(20_000)
    }
    let status = child.wait()
    let out = (try? String(contentsOfFile: base + ".out", encoding: .utf8)) ?? ""
    let err = (try? String(contentsOfFile: base + ".err", encoding: .utf8)) ?? ""
    return OpsResult(status: status, out: out, err: err, timedOut: timedOut)
}

/// `sluice status --config F --json`, parsed.
func opsStatus(_ config: String, file: StaticString = #filePath, line: UInt = #line) throws -> [String: Any] {
    let result = try opsSluice(["status", "--config", config, "--json"], timeout: 60)
    guard result.status == 0 else {
        XCTFail("sluice status --json failed: \(result.describe)", file: file, line: line)
        throw TestFailure("sluice status --json failed: \(result.describe)")
    }
    guard let object = try JSONSerialization.jsonObject(with: Data(result.out.utf8)) as? [String: Any] else {
        throw TestFailure("sluice status --json printed no JSON object: \(result.out)")
    }
    return object
}

/// Accessors for the parsed `status --json` object.
struct OpsStatusView {
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
func opsHTTPGet(port: Int, path: String, timeout: TimeInterval = 5) throws -> (status: Int, body: String) {
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
    let request = "GET \(path) HTTP/1.1\r\nHost: 127.0.0.1:\(port)\r\nConnection: close\r\nAccept: */*\r\n\r\n"
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

// MARK: Tables

/// Rows of a PostgreSQL table as sorted lines of their columns' text forms.
func opsPostgresRows(_ connection: PGConnection, table: String, columns: [String]) throws -> [String] {
    let list = columns.map(PGConnection.quoteIdentifier).joined(separator: ", ")
    let result = try connection.execute("SELECT \(list) FROM \(table)")
    return (0..<result.rowCount).map { row in opsRowLine((0..<result.columnCount).map { result.string(row, $0) }) }.sorted()
}

/// Rows of an SQLite table as sorted lines (integers, text and numerics' text forms compare as the source's).
func opsSQLiteRows(path: String, table: String, columns: [String]) throws -> [String] {
    let db = try SQLiteDatabase(path: path, readOnly: true)
    let list = columns.map(SQLiteDatabase.quoteIdentifier).joined(separator: ", ")
    return try db.query("SELECT \(list) FROM \(SQLiteDatabase.quoteIdentifier(table))").map(opsRowLine).sorted()
}

func opsRowLine(_ row: [String?]) -> String {
    row.map { $0.map { "'" + $0 + "'" } ?? "NULL" }.joined(separator: " | ")
}

/// nil when equal; otherwise a short account of missing and extra rows.
func opsDifference(expected: [String], actual: [String], examples: Int = 6) -> String? {
    guard expected != actual else { return nil }
    var counts: [String: Int] = [:]
    for row in expected { counts[row, default: 0] += 1 }
    for row in actual { counts[row, default: 0] -= 1 }
    let missing = counts.filter { $0.value > 0 }.sorted { $0.key < $1.key }
    let extra = counts.filter { $0.value < 0 }.sorted { $0.key < $1.key }
    func show(_ rows: [(key: String, value: Int)]) -> String {
        rows.prefix(examples).map { "\n    \(abs($0.value))× \($0.key.prefix(200))" }.joined()
    }
    return "expected \(expected.count) rows, got \(actual.count); \(missing.reduce(0) { $0 + $1.value }) missing:\(show(missing))"
        + "\n  \(extra.reduce(0) { $0 - $1.value }) extra or duplicated:\(show(extra))"
}

func opsLSN(_ value: UInt64) -> String { String(format: "%X/%X", value >> 32, value & 0xFFFF_FFFF) }

// MARK: A pipeline fixture

/// A source cluster, a PostgreSQL target cluster, a scratch directory and an SQLite target: the config
/// streams source `app` (topic `app`) into sink `replica` (PostgreSQL) and sink `local` (SQLite).
class OpsPipelineTestCase: DaemonTestCase {
    var target: PostgresCluster!

    override var fixtureName: String { "ops" }
    var sqlitePath: String { directory + "/replica.db" }
    var dataDirectory: String { directory + "/data" }

    override func setUpWithError() throws {
        directory = scratchDirectory(fixtureName)
        source = try PostgresCluster(name: fixtureName + "-src")
        target = try PostgresCluster(name: fixtureName + "-dst")
    }

    override func tearDown() {
        super.tearDown()
        target?.destroy()
    }

    /// Writes the standard config; `sourceExtra` lines go into the source, `topExtra` at the top level.
    @discardableResult
    func writeConfig(tables: [String]?, sourceExtra: [String] = [], topExtra: [String] = []) throws -> String {
        var lines = ["data_dir: \(dataDirectory)"] + topExtra + [
            "sources:",
            "  - name: app",
            "    type: postgres",
            "    url: \(source.url)",
        ]
        if let tables { lines.append("    tables: [\(tables.joined(separator: ", "))]") }
        lines += sourceExtra.map { "    " + $0 }
        lines += [
            "sinks:",
            "  - name: replica",
            "    type: postgres",
            "    url: \(target.url)",
            "    topics: [app]",
            "  - name: local",
            "    type: sqlite",
            "    path: \(sqlitePath)",
            "    topics: [app]",
        ]
        try (lines.joined(separator: "\n") + "\n").write(toFile: configPath, atomically: true, encoding: .utf8)
        return configPath
    }

    /// Runs `statements` in one transaction and returns an LSN at or before its commit record.
    @discardableResult
    func commitMarked(_ statements: String) throws -> UInt64 {
        let connection = try source.connect()
        try connection.execute("BEGIN")
        try connection.execute(statements)
        let lsn = try XCTUnwrap(connection.execute("SELECT pg_current_wal_insert_lsn()::text").string(0, 0))
        try connection.execute("COMMIT")
        return lsnValue(lsn)
    }

    func postgresTargetLSN() throws -> UInt64? {
        try target.scalar("SELECT lsn::text FROM public.sluice_offsets WHERE sink = 'replica' AND topic = 'app'").map(lsnValue)
    }

    func sqliteTargetLSN() throws -> UInt64? {
        guard FileManager.default.fileExists(atPath: sqlitePath) else { return nil }
        let db = try SQLiteDatabase(path: sqlitePath, readOnly: true)
        guard let text = try db.query("SELECT lsn FROM sluice_offsets WHERE sink = 'local' AND topic = 'app'").first?[0] else {
            return nil
        }
        return lsnValue(text)
    }

    /// Waits until both targets applied everything up to `lsn`.
    func waitForTargets(lsn: UInt64, timeout: TimeInterval = 120, file: StaticString = #filePath, line: UInt = #line) throws {
        try eventually(timeout: timeout, "both targets to reach LSN \(opsLSN(lsn)) (postgres: \((try? postgresTargetLSN())?.map(opsLSN) ?? "none"), "
                       + "sqlite: \((try? sqliteTargetLSN())?.map(opsLSN) ?? "none"))" + logTail, file: file, line: line) {
            guard let pg = try postgresTargetLSN(), pg >= lsn else { return false }
            guard let lite = try sqliteTargetLSN(), lite >= lsn else { return false }
            return true
        }
    }

    /// Both targets hold exactly the source's rows of `public.<table>` (every column, as text).
    func assertTargetsEqualSource(_ table: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let columns = try source.query("""
            SELECT attname FROM pg_attribute WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum
            """, ["public." + table]).map { $0[0]! }
        let expected = try opsPostgresRows(try source.connect(), table: "public." + table, columns: columns)
        let replica = try opsPostgresRows(try target.connect(), table: "public." + table, columns: columns)
        if let difference = opsDifference(expected: expected, actual: replica) {
            XCTFail("public.\(table): the PostgreSQL target differs from the source: \(difference)", file: file, line: line)
        }
        let lite = try opsSQLiteRows(path: sqlitePath, table: table, columns: columns)
        if let difference = opsDifference(expected: expected, actual: lite) {
            XCTFail("public.\(table): the SQLite target differs from the source: \(difference)", file: file, line: line)
        }
    }

    func count(_ cluster: PostgresCluster, _ table: String) throws -> Int {
        Int(try cluster.scalar("SELECT count(*) FROM \(table)") ?? "0") ?? 0
    }

    func sqliteCount(_ table: String) throws -> Int {
        let db = try SQLiteDatabase(path: sqlitePath, readOnly: true)
        return Int(try db.query("SELECT count(*) FROM \(SQLiteDatabase.quoteIdentifier(table))").first?[0] ?? "0") ?? 0
    }
}

/// A counter shared with worker threads.
final class OpsCounter: @unchecked Sendable {
    private let lock = NSLock()
    private var counts: [String: Int] = [:]
    func add(_ key: String, _ amount: Int = 1) { lock.lock(); counts[key, default: 0] += amount; lock.unlock() }
    subscript(_ key: String) -> Int { lock.lock(); defer { lock.unlock() }; return counts[key] ?? 0 }
    var summary: String { lock.lock(); defer { lock.unlock() }; return "\(counts.sorted { $0.key < $1.key })" }
}

/// A stop flag and a thread running a workload until it is set.
final class OpsWorkload: @unchecked Sendable {
    private let lock = NSLock()
    private var stopped = false
    private let done = DispatchGroup()

    var isStopped: Bool { lock.lock(); defer { lock.unlock() }; return stopped }

    init(_ name: String, _ body: @escaping @Sendable (OpsWorkload) -> Void) {
        done.enter()
        let thread = Thread { [done] in
            body(self)
            done.leave()
        }
        thread.name = name
        thread.start()
    }

    /// Asks the workload to stop and waits for it.
    func stop() {
        lock.lock(); stopped = true; lock.unlock()
        done.wait()
    }
}

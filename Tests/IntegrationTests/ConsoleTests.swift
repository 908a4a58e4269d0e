import Foundation
import SluiceWire
import XCTest

/// The console against a real daemon (PostgreSQL source, PostgreSQL and SQLite sinks) behind a
/// token: `/api/status` has every source, topic and sink with rates and bounded histories; 401
/// without the token, 200 with it as a header or `?token=`; the page in headless Chromium shows the
/// source, the sinks and their lag, then the PostgreSQL target going down and coming back; no
/// password (in both URLs) nor the token anywhere in the page or the API. Then `status --watch`,
/// piped and under a pseudo-terminal, until SIGINT.
final class ConsoleTests: SinkTestCase {
    override var fixtureName: String { "console" }
    let password = "Pw-zq81-Console-Secret"
    let token = "tok-3f9c2e7a51d8"

    func testConsoleShowsThePipelineLiveBehindItsToken() throws {
        try source.query("""
            CREATE TABLE orders (id int PRIMARY KEY, qty int NOT NULL);
            INSERT INTO orders SELECT i, i FROM generate_series(1, 200) i;
            """)
        let port = try freePort()
        // Trust authentication ignores the passwords: they are only there to be looked for.
        let withPassword = { (url: String) in url.replacingOccurrences(of: "postgres@", with: "postgres:\(self.password)@") }
        let config = [
            "data_dir: \(dataDirectory)",
            "metrics:", "  listen: \"127.0.0.1:\(port)\"", "  token: ${CONSOLE_TOKEN}",
            "sources:", "  - name: app", "    type: postgres", "    url: \(withPassword(source.url))", "    tables: [public.orders]",
            "sinks:", "  - name: replica", "    type: postgres", "    url: \(withPassword(target.url))", "    topics: [app]",
            "  - name: local", "    type: sqlite", "    path: \(sqlitePath)", "    topics: [app]",
        ]
        try (config.joined(separator: "\n") + "\n").write(toFile: configPath, atomically: true, encoding: .utf8)
        let environment = ["CONSOLE_TOKEN": token]
        _ = try startDaemon(environment: environment)
        try waitForSlotActive()
        let bearer = ["Authorization: Bearer \(token)"]
        func api() throws -> StatusView {
            let response = try opsHTTPGet(port: port, path: "/api/status", headers: bearer)
            guard response.status == 200 else { throw TestFailure("/api/status answered \(response.status): \(response.body)") }
            assertNoSecret(response.body, "/api/status")
            return StatusView(try XCTUnwrap(JSONSerialization.jsonObject(with: Data(response.body.utf8)) as? [String: Any]))
        }
        var status = StatusView([:])
        func history(_ sink: String) -> [[Double]] { status.sink(sink)?["history"] as? [[Double]] ?? [] }
        try eventually(timeout: 60, "both sinks running and caught up in /api/status: \(status.text)" + logTail) {
            status = try api()
            return status.state(sink: "replica") == "running" && status.state(sink: "local") == "running"
                && status.caughtUp("replica", "app") && status.caughtUp("local", "app") && status.endOffset("app") != nil
                && !history("replica").isEmpty && !history("local").isEmpty
                && status.source("app")?["confirmed_flush_lsn"] != nil  // asked every 2 s
        }

        // Access: the console needs the token, /metrics and /health do not.
        for path in ["/", "/api/status", "/api/other"] {
            XCTAssertEqual(try opsHTTPGet(port: port, path: path).status, 401, "\(path) without the token")
            XCTAssertEqual(try opsHTTPGet(port: port, path: path, headers: ["Authorization: Bearer \(token)x"]).status, 401,
                           "\(path) with a wrong token")
            XCTAssertEqual(try opsHTTPGet(port: port, path: path + "?token=nope").status, 401, "\(path)?token= wrong")
        }
        for path in ["/", "/api/status"] {
            XCTAssertEqual(try opsHTTPGet(port: port, path: path, headers: bearer).status, 200, "\(path) with Bearer")
            XCTAssertEqual(try opsHTTPGet(port: port, path: path + "?token=\(token)").status, 200, "\(path)?token=")
        }
        XCTAssertEqual(try opsHTTPGet(port: port, path: "/metrics").status, 200)
        XCTAssertEqual(try opsHTTPGet(port: port, path: "/health").status, 200)
        let page = try opsHTTPGet(port: port, path: "/", headers: bearer).body
        XCTAssertTrue(page.contains("fetch(\"api/status\"") && !page.contains("http://") && !page.contains("https://")
                      && !page.contains("<script src") && !page.contains("<link"), "one self-contained page that fetches its data")
        assertNoSecret(page, "the page")

        // The object: `status --json`'s fields, plus rates and histories.
        let app = try XCTUnwrap(status.source("app"))
        XCTAssertEqual(app["state"] as? String, "running")
        XCTAssertEqual(app["slot"] as? String, "sluice_app")
        XCTAssertNotNil(app["confirmed_flush_lsn"] as? String)
        XCTAssertNotNil(app["retained_wal_bytes"] as? Int)
        XCTAssertEqual(app["retained_wal_warning_bytes"] as? Int, 1 << 30)
        XCTAssertNotNil(app["events_per_second"] as? Double)
        let topic = try XCTUnwrap(status.topic("app"))
        for key in ["first_offset", "end_offset", "size_bytes", "events"] { XCTAssertNotNil(topic[key] as? Int, "topic \(key)") }
        XCTAssertNotNil(topic["events_per_second"] as? Double)
        for name in ["replica", "local"] {
            let sink = try XCTUnwrap(status.sink(name))
            XCTAssertNotNil(sink["events_per_second"] as? Double, "\(name) events/s")
            XCTAssertNotNil(sink["lag_seconds"] as? Double, "\(name) lag seconds")
            XCTAssertNotNil(status.committedOffset(name, "app"), "\(name) position")
            let samples = history(name)
            XCTAssertTrue((1...900).contains(samples.count), "\(name): \(samples.count) samples, at most 15 minutes")
            XCTAssertEqual(samples.first?.count, 4, "[time, lag events, lag seconds, events/s]")
        }
        let changes = try XCTUnwrap(status.json["changes"] as? [[String: Any]])
        XCTAssertTrue(changes.contains { $0["name"] as? String == "replica" && $0["to"] as? String == "running" }, "\(changes)")
        XCTAssertNotNil(status.json["backfills"] as? [Any])
        XCTAssertEqual(status.json["history_seconds"] as? Int, 900)

        // The page in a real browser: the source, both sinks with their state and lag.
        let pageURL = "http://127.0.0.1:\(port)/?token=\(token)"
        let first = try headlessChromium(pageURL)
        XCTAssertTrue(first.dom.contains("data-source=\"app\""), "the source on the page:\n\(first.dom)")
        for name in ["replica", "local"] {
            let card = sinkCard(first.dom, name)
            XCTAssertTrue(card.contains("data-state=\"running\""), "\(name) running on the page:\n\(card)")
            XCTAssertTrue(card.contains("class=\"lag-events\">0<"), "\(name) lag on the page:\n\(card)")
        }
        XCTAssertFalse(first.log.contains("Uncaught"), "no script error:\n\(first.log)")
        XCTAssertFalse(first.log.contains("Refused to"), "nothing refused by the page's policy:\n\(first.log)")
        assertNoSecret(first.dom, "the rendered page")

        // A steady workload; the PostgreSQL target goes down: the page shows its sink retrying, and lag grows.
        let stop = SinkTestFlag()
        let url = source.url
        let writer = SinkTestWorker("console-writer", stop: stop) {
            guard let db = try? PGConnection(url: url) else { return }
            var id = 1000
            while !stop.isSet {
                id += 1
                _ = try? db.execute("INSERT INTO orders VALUES ($1, 1)", [String(id)])
                usleep(20_000)
            }
        }
        defer { writer.stop() }
        target.stop()
        var shown = ""
        try eventually(timeout: 45, "the page to show sink replica retrying:\n\(shown)" + logTail) {
            shown = sinkCard(try headlessChromium(pageURL).dom, "replica")
            return shown.contains("data-state=\"retrying\"")
        }
        assertNoSecret(shown, "the page during the outage")
        var lagging = 0
        try eventually(timeout: 30, "replica's lag to grow while its target is down" + logTail) {
            status = try api()
            lagging = status.sink("replica")?["lag_events"] as? Int ?? 0
            return lagging > 0 && status.state(sink: "local") == "running"
        }
        XCTAssertNotNil(status.sink("replica")?["last_error"] as? String)
        if let path = ProcessInfo.processInfo.environment["SLUICE_CONSOLE_SCREENSHOT"] { _ = try headlessChromium(pageURL, screenshot: path) }

        // Back: the sink catches up and the lag falls to zero; the history kept the outage.
        try target.start()
        stop.set()
        writer.join()
        try eventually(timeout: 90, "replica to catch up after its target is back: \(status.text)" + logTail) {
            status = try api()
            // The last sample (taken once a second) shows it too.
            return status.state(sink: "replica") == "running" && status.caughtUp("replica", "app") && history("replica").last?[1] == 0
        }
        XCTAssertGreaterThan(history("replica").map { $0[1] }.max() ?? 0, 0, "the outage's lag is in the history")
        let changed = try XCTUnwrap(status.json["changes"] as? [[String: Any]])
        XCTAssertTrue(changed.contains { $0["name"] as? String == "replica" && $0["to"] as? String == "retrying" }, "\(changed)")
        let back = sinkCard(try headlessChromium(pageURL).dom, "replica")
        XCTAssertTrue(back.contains("data-state=\"running\""), "the page shows replica running again:\n\(back)")

        try checkStatusWatch(environment: environment)
    }

    /// `status --watch` piped: repeated dated sections until SIGINT, exit 0; under a pseudo-terminal:
    /// redrawn in place (cursor home) with a lag sparkline per sink.
    func checkStatusWatch(environment: [String: String]) throws {
        let output = directory + "/watch.out"
        let watch = try SluiceProcess(["status", "--config", configPath, "--watch"], logPath: output, environment: environment)
        var text = ""
        try eventually(timeout: 60, "three sections from status --watch:\n\(text)") {
            text = (try? String(contentsOfFile: output, encoding: .utf8)) ?? ""
            return text.split(separator: "\n").filter { $0.hasPrefix("--- ") }.count >= 3
        }
        watch.signal(SIGINT)
        XCTAssertEqual(watch.wait(timeout: 30), 0, "status --watch exits 0 on SIGINT:\n\(text)")
        for section in ["SOURCE", "TOPIC", "SINK", "LAG (LAST MINUTE)", "CHANGED"] {
            XCTAssertTrue(text.contains(section), "\(section) in:\n\(text)")
        }
        XCTAssertFalse(text.contains("\u{1B}["), "no terminal codes when piped")
        assertNoSecret(text, "status --watch")

        let terminal = try PseudoTerminalRun([sluiceBinary, "status", "--config", configPath, "--watch"], environment: environment)
        try eventually(timeout: 60, "status --watch to redraw on a terminal:\n\(terminal.output)") {
            terminal.output.components(separatedBy: "\u{1B}[H").count >= 3
        }
        XCTAssertEqual(terminal.interrupt(), 0, "status --watch exits 0 on SIGINT on a terminal")
        XCTAssertTrue(terminal.output.contains("replica") && terminal.output.contains("▁"), "a sparkline:\n\(terminal.output)")
    }

    func assertNoSecret(_ text: String, _ what: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertFalse(text.contains(password), "\(what) shows the database password", file: file, line: line)
        XCTAssertFalse(text.contains(token), "\(what) shows the console token", file: file, line: line)
    }

    /// The sink's card in the rendered DOM (up to the next card or section).
    func sinkCard(_ dom: String, _ name: String) -> String {
        guard let start = dom.range(of: "data-sink=\"\(name)\"") else { return "" }
        let rest = dom[start.lowerBound...]
        let end = rest.dropFirst().range(of: "data-sink=")?.lowerBound ?? rest.range(of: "<h2")?.lowerBound ?? rest.endIndex
        return String(rest[..<end])
    }

    /// A sink whose target has not answered since the start: `/api/status`, `status --json` and
    /// /metrics all count every event of the topic as its lag (the console said 0), and the two
    /// objects agree on the topic's storage and on the connectors' times (to the millisecond).
    func testASinkWhoseTargetNeverAnsweredShowsItsLagEverywhere() throws {
        try source.query("""
            CREATE TABLE orders (id int PRIMARY KEY, qty int NOT NULL);
            INSERT INTO orders SELECT i, i FROM generate_series(1, 120) i;
            """)
        let port = try freePort()
        let nobody = try freePort()
        try """
            data_dir: \(dataDirectory)
            metrics: {listen: "127.0.0.1:\(port)"}
            sources:
              - {name: app, type: postgres, url: "\(source.url)", tables: [public.orders]}
            sinks:
              - {name: local, type: sqlite, path: "\(sqlitePath)"}
              - {name: down, type: postgres, url: "postgresql://postgres@127.0.0.1:\(nobody)/nothing"}
            """.write(toFile: configPath, atomically: true, encoding: .utf8)
        _ = try startDaemon()
        func api() throws -> StatusView {
            let response = try opsHTTPGet(port: port, path: "/api/status")
            guard response.status == 200 else { throw TestFailure("/api/status answered \(response.status): \(response.body)") }
            return StatusView(try XCTUnwrap(JSONSerialization.jsonObject(with: Data(response.body.utf8)) as? [String: Any]))
        }
        func command() throws -> StatusView {
            let result = try sluice(["status", "--config", configPath, "--json"])
            return StatusView(try XCTUnwrap(JSONSerialization.jsonObject(with: Data(result.out.utf8)) as? [String: Any], result.describe))
        }
        var live = StatusView([:])
        var printed = StatusView([:])
        // The snapshot is one transaction of 120 events: once the SQLite sink has it, the topic is still.
        // The sinks as each view shows them, without the console's histories.
        func sinks(_ view: StatusView) -> String {
            view.sinks.map { $0.filter { $0.key != "history" }.map { "\($0.key)=\($0.value)" }.sorted().joined(separator: " ") }
                .joined(separator: " | ")
        }
        try eventually(timeout: 90, "the SQLite sink caught up, the other retrying, in both views: \(sinks(live)) || \(sinks(printed))" + logTail) {
            live = try api()
            printed = try command()
            return live.caughtUp("local", "app") && printed.caughtUp("local", "app") && live.events("app") == 120
                && live.state(sink: "down") == "retrying" && printed.state(sink: "down") == "retrying"
                && live.sink("down")?["since"] as? String == printed.sink("down")?["since"] as? String
        }
        for view in [live, printed] {
            XCTAssertEqual(view.sink("down")?["lag_events"] as? Int, 120, view.text)
            XCTAssertEqual(view.sinkTopic("down", "app")?["lag_events"] as? Int, 120, view.text)
            XCTAssertGreaterThan(view.sink("down")?["lag_seconds"] as? Double ?? 0, 0, view.text)
            XCTAssertEqual(view.topic("app")?["exists"] as? Bool, true, view.text)
        }
        let since = try XCTUnwrap(printed.sink("down")?["since"] as? String)
        XCTAssertNotNil(since.range(of: #"\.\d{3}Z$"#, options: .regularExpression), since)
        // The gauges are refreshed once a second.
        var metrics = ""
        try eventually(timeout: 30, "sluice_sink_lag_events of sink down at 120 in /metrics: \(metrics)") {
            metrics = try opsHTTPGet(port: port, path: "/metrics").body
            let gauge = metrics.split(separator: "\n").first { $0.hasPrefix("sluice_sink_lag_events{") && $0.contains("sink=\"down\"") }
            return gauge.flatMap { $0.split(separator: " ").last }.flatMap { Double($0) } == 120
        }
    }
}

/// Loads `url` in headless Chromium (Debian's package; scripts/setup.sh installs it) with a few
/// seconds of virtual time, so the page's polls run; returns the DOM and the browser's log
/// (console messages included). With `screenshot`, writes a PNG there instead of the DOM.
func headlessChromium(_ url: String, screenshot: String? = nil) throws -> (dom: String, log: String) {
    guard let browser = ["/usr/bin/chromium", "/usr/bin/chromium-browser"].first(where: FileManager.default.isExecutableFile) else {
        throw TestFailure("headless Chromium is missing: run scripts/setup.sh (apt-get install chromium)")
    }
    let profile = NSTemporaryDirectory() + "sluice-chromium-\(UUID().uuidString.prefix(8))"
    defer { try? FileManager.default.removeItem(atPath: profile) }
    var arguments = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                     "--user-data-dir=\(profile)", "--virtual-time-budget=3000", "--enable-logging=stderr", "--v=0"]
    arguments += screenshot.map { ["--window-size=1280,1100", "--screenshot=\($0)"] } ?? ["--dump-dom"]
    let result = try execute(arguments + [url], timeout: 60)
    guard result.status == 0, !result.timedOut else { throw TestFailure("chromium failed: \(result.describe)") }
    return (result.out, result.err)
}

/// A command whose stdout and stderr are a pseudo-terminal (stdin /dev/null); what it writes is
/// collected from the terminal's other side.
final class PseudoTerminalRun: @unchecked Sendable {
    private let master: Int32
    private let child: SluiceProcess
    private let lock = NSLock()
    private var collected = Data()
    private let reader = DispatchGroup()

    init(_ arguments: [String], environment: [String: String] = [:]) throws {
        // posix_openpt and friends are hidden by Glibc's headers here: /dev/ptmx and its two ioctls.
        master = open("/dev/ptmx", O_RDWR | O_NOCTTY)
        var unlock: Int32 = 0
        var number: UInt32 = 0
        guard master >= 0, ioctl(master, 0x4004_5431 /* TIOCSPTLCK */, &unlock) == 0,
              ioctl(master, 0x8004_5430 /* TIOCGPTN */, &number) == 0 else {
            throw TestFailure("no pseudo-terminal: \(String(cString: strerror(errno)))")
        }
        child = try SluiceProcess(program: arguments[0], Array(arguments.dropFirst()), logPath: "/dev/pts/\(number)",
                                  environment: environment)
        reader.enter()
        let thread = Thread { [self] in
            var buffer = [UInt8](repeating: 0, count: 4096)
            while true {
                let count = read(master, &buffer, buffer.count)
                if count <= 0 { break }
                lock.lock()
                collected.append(contentsOf: buffer[0..<count])
                lock.unlock()
            }
            reader.leave()
        }
        thread.start()
    }

    var output: String {
        lock.lock()
        defer { lock.unlock() }
        return String(decoding: collected, as: UTF8.self)
    }

    /// SIGINT, then the exit code (nil if it did not exit within 30 s; it is killed then).
    func interrupt() -> Int32? {
        child.signal(SIGINT)
        let code = child.wait(timeout: 30)
        if code == nil { child.kill() }
        close(master)
        _ = reader.wait(timeout: .now() + 5)
        return code
    }
}

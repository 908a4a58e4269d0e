import Foundation
import SluiceWire
import XCTest

/// Crashes the real `sluice` binary at every named failpoint (docs/failpoints.md) through
/// SLUICE_FAILPOINTS while a workload writes, restarts it without, and checks what the SIGKILL loops
/// check: both database targets hold exactly the source's rows (as multisets, so a row applied twice to
/// the keyless table shows) and the file sink's files are exactly the topic — nothing lost, nothing
/// applied twice.
///
/// The points of one area share a pipeline: each crash starts from what the previous recovery left,
/// and everything is compared after each one.
final class FailpointCrashTests: SinkTestCase {
    override var fixtureName: String { "failpoint" }

    static let tables = ["public.items", "public.tags", "public.journal"]
    /// Rows in `items` before the first start: the initial snapshot, and eight backfill chunks.
    static let preloaded = 8_000
    var filesDirectory: String { directory + "/files" }
    private var workload: FailpointWorkload?
    private var workloads = 0

    override func tearDown() {
        workload?.stop()
        super.tearDown()
    }

    // MARK: The points

    func testCrashesInTheLogAndTheSourceLoseAndRepeatNothing() throws {
        try createPipeline()
        // The first fsync of a fresh data directory is the initial snapshot's commit marker.
        try crash("log.before_fsync@1", at: "log.before_fsync")
        XCTAssertEqual(occurrences("initial snapshot done"), 0, "the crash came before the snapshot was durable" + logTail)
        try recoverAndCompare(after: "log.before_fsync@1")
        XCTAssertEqual(occurrences("snapshot copied table"), Self.tables.count,
                       "the snapshot in the topic was kept, not taken again" + logTail)

        try crash("log.after_fsync@5", at: "log.after_fsync")
        try recoverAndCompare(after: "log.after_fsync@5")
        try crash("source.before_confirm@3:exit(42)", at: "source.before_confirm", status: 42)
        try recoverAndCompare(after: "source.before_confirm@3:exit(42)")
    }

    func testCrashesInEachSinkLoseAndRepeatNothing() throws {
        try createPipeline()
        try runCleanly()
        let points = [
            ("sink.postgres.before_commit@3", "sink.postgres.before_commit"),
            ("sink.postgres.after_commit@3", "sink.postgres.after_commit"),
            ("sink.postgres.mid_copy@1", "sink.postgres.mid_copy"),
            ("sink.sqlite.before_commit@3", "sink.sqlite.before_commit"),
            // A list, and a sleep on every batch before the crash.
            ("sink.sqlite.before_commit:sleep(20), sink.sqlite.after_commit@3", "sink.sqlite.after_commit"),
            ("sink.file.rotate@2", "sink.file.rotate"),
        ]
        for (spec, point) in points {
            try crash(spec, at: point)
            try recoverAndCompare(after: spec)
        }
        XCTAssertGreaterThanOrEqual(pluginTopicFiles(filesDirectory, topic: "app").count, 3, "the file sink rotated")
    }

    func testCrashesInBackfillLoseAndRepeatNothing() throws {
        try createPipeline()
        try runCleanly()
        // `sluice backfill` with no daemon runs the pipeline itself; each run resumes the same backfill.
        let backfill = ["backfill", "--config", configPath, "--table", "public.items"]
        try crash("backfill.after_low_watermark@2", at: "backfill.after_low_watermark", arguments: backfill)
        try crash("backfill.before_high_watermark@2", at: "backfill.before_high_watermark", arguments: backfill)
        try crash("backfill.before_save_progress@2", at: "backfill.before_save_progress", arguments: backfill)
        let result = try sluice(backfill, timeout: 180)
        XCTAssertEqual(result.status, 0, "the last run finishes the backfill: \(result.describe)" + logTail)
        try recoverAndCompare(after: "backfill")
    }

    // MARK: Steps

    /// Source tables (keyed, keyless with REPLICA IDENTITY FULL, serial) and a config with three sinks:
    /// PostgreSQL `replica`, SQLite `local`, and JSON-lines files `files` rotated every 16 KB.
    func createPipeline() throws {
        try source.query("""
            CREATE TABLE items (id int PRIMARY KEY, val int NOT NULL, note text);
            INSERT INTO items SELECT i, i % 100, 'item ' || i FROM generate_series(1, \(Self.preloaded)) i;
            CREATE TABLE tags (k int, v text);
            ALTER TABLE tags REPLICA IDENTITY FULL;
            INSERT INTO tags SELECT i % 40, 'dup' FROM generate_series(1, 200) i;
            CREATE TABLE journal (id bigserial PRIMARY KEY, label text, payload text);
            """)
        try writeConfig(tables: Self.tables, sourceExtra: ["backfill_chunk_size: 1000"])
        let config = try String(contentsOfFile: configPath, encoding: .utf8) + """
              - name: files
                type: file
                path: \(filesDirectory)
                max_file_bytes: 16KB
                topics: [app]

            """
        try config.write(toFile: configPath, atomically: true, encoding: .utf8)
    }

    /// A first run without failpoints: the initial snapshot reaches every sink.
    func runCleanly() throws {
        let daemon = try startDaemon()
        try waitForSlotActive()
        try waitForTargets(lsn: try commitMarked("INSERT INTO journal (label) VALUES ('started')"))
        XCTAssertEqual(daemon.terminate(), 0, "clean exit on SIGTERM" + logTail)
    }

    /// Runs `sluice arguments…` (default `run`) with SLUICE_FAILPOINTS=`spec` while the workload writes,
    /// and waits for it to die at `point` with `status` (137: SIGKILL).
    func crash(_ spec: String, at point: String, status expected: Int32 = 128 + SIGKILL, arguments: [String]? = nil,
               file: StaticString = #filePath, line: UInt = #line) throws {
        let fired = "sluice: failpoint \(point) fired"
        let before = occurrences(fired)
        if workload == nil {
            workloads += 1
            workload = FailpointWorkload(url: source.url, firstID: workloads * 1_000_000)
        }
        let process = try SluiceProcess(arguments ?? ["run", "--config", configPath], logPath: logPath,
                                        environment: ["SLUICE_FAILPOINTS": spec])
        daemons.append(process)
        guard let status = process.wait(timeout: 90) else {
            process.kill()
            XCTFail("SLUICE_FAILPOINTS=\(spec): sluice did not reach the point in 90 s" + logTail, file: file, line: line)
            throw TestFailure("failpoint \(spec) not reached")
        }
        XCTAssertEqual(status, expected, "SLUICE_FAILPOINTS=\(spec): the exit status" + logTail, file: file, line: line)
        XCTAssertEqual(occurrences(fired), before + 1, "SLUICE_FAILPOINTS=\(spec): the point fired once" + logTail,
                       file: file, line: line)
    }

    /// Restarts `sluice run` without failpoints, lets it stream under the workload, stops the workload,
    /// waits for the targets, stops the daemon, and compares every target with the source.
    func recoverAndCompare(after spec: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let daemon = try startDaemon()
        try waitForSlotActive(file: file, line: line)
        usleep(500_000)
        if let workload {
            workload.stop()
            self.workload = nil
            print("failpoint \(spec): recovered; workload \(workload.stats.summary)")
            XCTAssertGreaterThan(workload.stats["committed"], 10, "\(spec): the workload ran: \(workload.stats.summary) \(workload.stats.notes)",
                                 file: file, line: line)
            XCTAssertEqual(workload.stats["failed"], 0, "\(spec): \(workload.stats.notes)", file: file, line: line)
        }
        let end = try commitMarked("INSERT INTO journal (label) VALUES ('after \(spec)')")
        try waitForTargets(lsn: end, file: file, line: line)
        // A graceful stop drains every sink, the file sink included, up to what the topic holds.
        XCTAssertEqual(daemon.terminate(), 0, "\(spec): clean exit on SIGTERM" + logTail, file: file, line: line)

        for table in Self.tables { try assertTargetsEqualSource(table, file: file, line: line) }
        let tail = try sluice(["tail", "app", "--config", configPath, "--from-beginning", "--json"], timeout: 120)
        XCTAssertEqual(tail.status, 0, tail.describe, file: file, line: line)
        let files = pluginTopicText(filesDirectory, topic: "app")
        if files != tail.out {
            let written = files.split(separator: "\n"), topic = tail.out.split(separator: "\n")
            let common = min(written.count, topic.count)
            let firstDifference = (0..<common).first { written[$0] != topic[$0] } ?? common
            XCTFail("""
                \(spec): the file sink's \(written.count) lines are not the topic's \(topic.count) records; first difference \
                at line \(firstDifference + 1): \(written.dropFirst(firstDifference).first?.prefix(300) ?? "(none)") vs \
                \(topic.dropFirst(firstDifference).first?.prefix(300) ?? "(none)")
                """ + logTail, file: file, line: line)
        }
    }

    func occurrences(_ text: String) -> Int {
        ((try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "").components(separatedBy: text).count - 1
    }
}

/// A bad SLUICE_FAILPOINTS is never ignored: `sluice` exits 2 naming the variable, before it reads
/// its configuration.
final class FailpointSpecTests: XCTestCase {
    func testABadSpecExitsTwoNamingTheVariable() throws {
        for spec in ["log.befor_fsync", "log.before_fsync@0", "sink.postgres.after_commit:explode", "log.before_fsync,,"] {
            let result = try sluice(["run", "--config", "/nonexistent/sluice.yml"], environment: ["SLUICE_FAILPOINTS": spec])
            XCTAssertEqual(result.status, 2, "SLUICE_FAILPOINTS=\(spec): \(result.describe)")
            XCTAssertTrue(result.err.contains("SLUICE_FAILPOINTS=\(spec): "), "names the variable: \(result.describe)")
            XCTAssertFalse(result.all.contains("/nonexistent"), "checked before the configuration: \(result.describe)")
        }
        // A good value changes nothing where no point is reached.
        let help = try sluice(["--help"], environment: ["SLUICE_FAILPOINTS": "log.before_fsync@2:exit(3),sink.file.rotate"])
        XCTAssertEqual(help.status, 0, help.describe)
        XCTAssertTrue(help.out.contains("USAGE"), help.describe)
    }
}

/// Small mixed transactions until stopped, on one connection: inserts, updates, deletes and key changes
/// on `items`, now and then 400 inserts at once (a COPY run at the PostgreSQL sink); identical rows and
/// changes to one of several identical rows on the keyless `tags`; inserts into `journal`; every 13th
/// transaction rolls back.
final class FailpointWorkload: @unchecked Sendable {
    let stats = SinkTestStats()
    private let stopping = SinkTestFlag()
    private var worker: SinkTestWorker?

    init(url: String, firstID: Int) {
        let stats = stats, stopping = stopping
        worker = SinkTestWorker("failpoint-workload") {
            Self.run(url: url, firstID: firstID, stop: stopping, stats: stats)
        }
    }

    func stop() {
        stopping.set()
        worker?.join()
    }

    private static func run(url: String, firstID: Int, stop: SinkTestFlag, stats: SinkTestStats) {
        guard let db = try? PGConnection(url: url) else {
            stats.note("cannot connect")
            stats.count("failed")
            return
        }
        var nextID = firstID
        var sequence = 0
        while !stop.isSet {
            sequence += 1
            runWorkloadTransaction(on: db, sequence: sequence, stats: stats, label: "") {
                if sequence % 25 == 0 {
                    try db.execute("INSERT INTO items SELECT i, i % 7, 'bulk ' || i FROM generate_series($1::int, $2::int) i",
                                   [String(nextID + 1), String(nextID + 400)])
                    nextID += 400
                }
                for _ in 0..<Int.random(in: 1...4) {
                    let id = String(Int.random(in: 1...FailpointCrashTests.preloaded))
                    switch Int.random(in: 0..<10) {
                    case 0, 1:
                        nextID += 1
                        try db.execute("INSERT INTO items VALUES ($1, $2, $3)", [String(nextID), String(sequence), "new \(sequence)"])
                    case 2:
                        try db.execute("UPDATE items SET val = val + 1, note = $2 WHERE id = $1", [id, "upd \(sequence)"])
                    case 3:
                        try db.execute("DELETE FROM items WHERE id = $1", [id])
                    case 4:
                        nextID += 1
                        try db.execute("UPDATE items SET id = $2, note = 'moved' WHERE id = $1", [id, String(nextID)])
                    case 5:
                        try db.execute("INSERT INTO tags SELECT $1::int, 'dup' FROM generate_series(1, 3)", [String(Int.random(in: 0..<40))])
                    case 6:
                        try db.execute("DELETE FROM tags WHERE ctid = (SELECT ctid FROM tags WHERE k = $1 AND v = 'dup' LIMIT 1)",
                                       [String(Int.random(in: 0..<40))])
                    case 7:
                        try db.execute("UPDATE tags SET v = 'changed' WHERE ctid = (SELECT ctid FROM tags WHERE k = $1 AND v = 'dup' LIMIT 1)",
                                       [String(Int.random(in: 0..<40))])
                    default:
                        try db.execute("INSERT INTO journal (label, payload) VALUES ('workload', $1)",
                                       ["entry \(sequence) " + String(repeating: "x", count: sequence % 150)])
                    }
                }
            }
            usleep(UInt32.random(in: 1_000...4_000))
        }
    }
}

import Foundation
import SluiceWire
import XCTest

/// `sluice backfill`: copies the current rows of tables into every sink of the source, consistently
/// with the live stream, with or without a running daemon; resumes after SIGKILL; refuses tables it
/// cannot copy with exit 2 (tables without a primary key: KeylessBackfillTests).
final class BackfillTests: SinkTestCase {
    override var fixtureName: String { "backfill" }

    var stateDirectory: String { dataDirectory + "/sources/app" }

    func createTable(rows: Int) throws {
        try source.query("""
            CREATE TABLE t (id int PRIMARY KEY, a int NOT NULL, b text, c numeric(12,2), d bigint);
            INSERT INTO t SELECT i, i % 1000, 'row ' || i, (i * 1.25)::numeric(12,2), CASE WHEN i % 7 = 0 THEN NULL ELSE i * 1000 END
            FROM generate_series(1, \(rows)) i;
            """)
    }

    /// backfill.json, decoded loosely.
    func progress() -> [String: Any]? {
        guard let data = FileManager.default.contents(atPath: stateDirectory + "/backfill.json") else { return nil }
        return try? JSONSerialization.jsonObject(with: data) as? [String: Any]
    }

    func copiedRows(_ progress: [String: Any]?) -> Int {
        (progress?["tables"] as? [[String: Any]] ?? []).reduce(0) { $0 + ($1["copiedRows"] as? Int ?? 0) }
    }

    /// Rows of public.t in the PostgreSQL target (0 while the table does not exist there).
    func targetRows() throws -> Int {
        guard try target.scalar("SELECT to_regclass('public.t')::text") != nil else { return 0 }
        return try target.count("public.t")
    }

    // MARK: (a) with the daemon running, under a concurrent workload

    func testBackfillWithDaemonRunningUnderConcurrentWorkload() throws {
        let rows = 50_000
        try createTable(rows: rows)
        // Chunks of 5000: ten copy windows for the workload to interleave with.
        try writeConfig(tables: ["public.t"], sourceExtra: ["snapshot: never", "backfill_chunk_size: 5000"])
        let daemon = try startDaemon()
        try waitForSlotActive()

        // Updates, deletes, inserts and re-inserts on the rows being copied, in small transactions.
        let url = source.url
        let stats = SinkTestStats()
        let stopWriting = SinkTestFlag()
        let workload = SinkTestWorker("backfill-writer", stop: stopWriting) {
            guard let db = try? PGConnection(url: url) else { stats.count("connect failed"); return }
            var sequence = 0
            while !stopWriting.isSet {
                sequence += 1
                let id = Int.random(in: 1...rows)
                do {
                    try db.execute("BEGIN")
                    try db.execute("UPDATE t SET a = a + 1, b = 'updated \(sequence)', d = NULL WHERE id = \(id)")
                    try db.execute("DELETE FROM t WHERE id = \(Int.random(in: 1...rows))")
                    try db.execute("""
                        INSERT INTO t VALUES (\(Int.random(in: 1...rows)), -1, 'reinserted \(sequence)', 0.5, \(sequence))
                        ON CONFLICT (id) DO UPDATE SET c = t.c + 1, b = excluded.b
                        """)
                    try db.execute("INSERT INTO t VALUES (\(rows + sequence), \(sequence), 'new \(sequence)', 1.75, NULL)")
                    if sequence % 4 == 0 { try db.execute("UPDATE t SET b = 'bulk \(sequence)' WHERE id BETWEEN \(id) AND \(id + 20)") }
                    try db.execute("COMMIT")
                    stats.count("committed")
                } catch {
                    stats.count("failed")
                    _ = try? db.execute("ROLLBACK")
                }
                usleep(2_000)
            }
        }
        defer { workload.stop() }
        try eventually(timeout: 30, "the workload to commit") { stats["committed"] >= 50 }
        XCTAssertLessThan(try targetRows(), rows / 2, "before the backfill the target holds only streamed rows")

        let started = Date()
        let result = try sluice(["backfill", "--config", configPath, "--table", "public.t"], timeout: 240)
        let took = Date().timeIntervalSince(started)
        XCTAssertEqual(result.status, 0, result.describe + logTail)
        XCTAssertTrue(result.err.contains("backfill: copied"), result.describe)
        XCTAssertTrue(result.err.contains("public.t"), result.describe)
        XCTAssertTrue(result.err.contains("replica") && result.err.contains("local"), "names the sinks that applied it: \(result.describe)")
        XCTAssertTrue(daemon.isRunning, "the daemon keeps running" + logTail)
        let finished = try XCTUnwrap(progress(), "backfill.json")
        XCTAssertNotNil(finished["finishedAt"], "\(finished)")
        // Once backfill exits 0 the targets hold at least every row that existed before it (minus deletions).
        XCTAssertGreaterThan(try targetRows(), rows / 2, "backfill exited 0 before the sinks applied the copy")

        // Keep writing a little after the copy, then compare everything.
        let committedAtEnd = stats["committed"]
        try eventually(timeout: 30, "more workload after the backfill") { stats["committed"] >= committedAtEnd + 20 }
        workload.stop()
        XCTAssertEqual(stats["failed"], 0, stats.summary)
        let marker = try commitMarked("UPDATE t SET b = 'final' WHERE id = (SELECT min(id) FROM t)")
        try waitForTargets(lsn: marker, timeout: 120)
        let sourceCount = try source.count("t")
        XCTAssertEqual(try target.count("t"), sourceCount)
        XCTAssertEqual(try sqliteCount("public.t"), sourceCount)
        try assertTargetsEqualSource("public.t")
        print("backfill with daemon: \(took) s, workload \(stats.summary), copied \(copiedRows(finished)) rows")
        XCTAssertEqual(daemon.terminate(), 0, logTail)
    }

    // MARK: (b) without a daemon

    func testBackfillWithoutDaemonRunsThePipelineItself() throws {
        let rows = 20_000
        try createTable(rows: rows)
        try writeConfig(tables: ["public.t"], sourceExtra: ["snapshot: never"])
        // A first run creates the slot, then stops; changes made afterwards wait in the slot.
        let daemon = try startDaemon()
        try waitForSlotActive()
        XCTAssertEqual(daemon.terminate(), 0, logTail)
        try source.query("""
            UPDATE t SET a = -a, b = 'changed while stopped' WHERE id % 100 = 0;
            DELETE FROM t WHERE id % 250 = 1;
            INSERT INTO t SELECT i, 0, 'added while stopped', 2.5, NULL FROM generate_series(\(rows + 1), \(rows + 500)) i;
            """)

        let result = try sluice(["backfill", "--config", configPath], timeout: 180)
        XCTAssertEqual(result.status, 0, result.describe)
        XCTAssertTrue(result.err.contains("backfill: copied"), result.describe)
        XCTAssertFalse(result.err.contains("ERROR") || result.err.contains("error:"), result.describe)
        // The pipeline it ran is gone, and the targets equal the source with no daemon involved.
        let status = try sluiceStatus(configPath)
        XCTAssertEqual(status.daemonRunning, false, status.text)
        XCTAssertEqual(status.source("app")?["slot_active"] as? Bool, false, status.text)
        XCTAssertTrue(status.caughtUp("replica", "app") && status.caughtUp("local", "app"), status.text)
        let sourceCount = try source.count("t")
        XCTAssertEqual(sourceCount, rows - rows / 250 + 500)
        XCTAssertEqual(try target.count("t"), sourceCount)
        XCTAssertEqual(try sqliteCount("public.t"), sourceCount)
        try assertTargetsEqualSource("public.t")
        XCTAssertNotNil(progress()?["finishedAt"], "\(progress() ?? [:])")
    }

    // MARK: Ctrl-C: exit 130 either way, saying what goes on; progress lines that make sense

    func testInterruptedBackfillExits130AndSaysWhatContinues() throws {
        let rows = 100_000
        try createTable(rows: rows)
        try writeConfig(tables: ["public.t"], sourceExtra: ["snapshot: never", "backfill_chunk_size: 2000"])

        // Running the pipeline itself: SIGINT stops it gracefully, 130, the copy resumes later.
        let local = try SluiceProcess(["backfill", "--config", configPath, "--table", "public.t"], logPath: directory + "/backfill-local.log")
        daemons.append(local)
        try eventually(timeout: 120, "backfill to copy rows\n" + local.log) { copiedRows(progress()) > 0 || !local.isRunning }
        local.signal(SIGINT)
        XCTAssertEqual(local.wait(timeout: 30), 130, local.log)
        XCTAssertTrue(local.log.contains("interrupted; the chunks copied so far stay"), local.log)
        for line in local.log.split(separator: "\n") where line.hasPrefix("backfill:") {
            XCTAssertFalse(line.contains("0/0 rows") || line.contains(" 0 rows/s"), "a progress line that says nothing: \(line)")
        }

        // Following a daemon: SIGINT stops following only, 130, and says the daemon goes on.
        let daemon = try startDaemon()
        try waitForSlotActive()
        let follower = try SluiceProcess(["backfill", "--config", configPath, "--table", "public.t"], logPath: directory + "/backfill-follow.log")
        daemons.append(follower)
        try eventually(timeout: 60, "the follower to show progress\n" + follower.log) {
            follower.log.contains("backfill:") || !follower.isRunning
        }
        follower.signal(SIGINT)
        XCTAssertEqual(follower.wait(timeout: 30), 130, follower.log)
        XCTAssertTrue(follower.log.contains("the running daemon goes on copying"), follower.log)
        XCTAssertTrue(daemon.isRunning, "the daemon goes on")
        try eventually(timeout: 240, "the daemon to finish the copy" + logTail) { try target.count("t") == rows }
        XCTAssertEqual(daemon.terminate(timeout: 20), 0, logTail)
    }

    // MARK: (c) interrupted by SIGKILL, then resumed

    func testBackfillResumesAfterSIGKILL() throws {
        let rows = 100_000
        try createTable(rows: rows)
        try writeConfig(tables: ["public.t"], sourceExtra: ["snapshot: never", "backfill_chunk_size: 2000"])

        let first = try SluiceProcess(["backfill", "--config", configPath, "--table", "public.t"], logPath: directory + "/backfill-1.log")
        daemons.append(first)
        try eventually(timeout: 120, "backfill.json to show copied rows\n" + first.log) {
            copiedRows(progress()) > 0 || !first.isRunning
        }
        first.kill()
        let before = try XCTUnwrap(progress(), "backfill.json after the kill\n" + first.log)
        let copiedBefore = copiedRows(before)
        let id = try XCTUnwrap(before["id"] as? String)
        XCTAssertNil(before["finishedAt"], "the first run was killed before it finished; make the table larger: \(before)")
        XCTAssertGreaterThan(copiedBefore, 0)
        XCTAssertLessThan(copiedBefore, rows, "\(before)")
        XCTAssertEqual(copiedBefore % 2000, 0, "progress is saved per whole chunk: \(before)")

        let started = Date()
        let rerun = try sluice(["backfill", "--config", configPath, "--table", "public.t"], timeout: 240)
        XCTAssertEqual(rerun.status, 0, rerun.describe)
        XCTAssertTrue(rerun.err.contains("resuming backfill \(id)"), "the rerun says it resumes backfill \(id): \(rerun.describe)")
        let after = try XCTUnwrap(progress())
        XCTAssertEqual(after["id"] as? String, id, "the same backfill finished: \(after)")
        XCTAssertNotNil(after["finishedAt"], "\(after)")
        // Resumed at the last finished chunk: the copy did not start over from 0.
        XCTAssertEqual(copiedRows(after), rows, "copiedRows after the resume (was \(copiedBefore) at the kill): \(after)")
        XCTAssertTrue(rerun.err.contains("copied \(rows) rows"), rerun.describe)

        XCTAssertEqual(try target.count("t"), rows)
        XCTAssertEqual(try sqliteCount("public.t"), rows)
        XCTAssertEqual(try target.scalar("SELECT count(DISTINCT id) FROM t"), "\(rows)")
        try assertTargetsEqualSource("public.t")
        // The topic holds each row once, or again only for chunks copied after the last saved progress.
        let status = try sluiceStatus(configPath)
        let events = try XCTUnwrap(status.events("app"), status.text)
        XCTAssertGreaterThanOrEqual(events, rows, status.text)
        XCTAssertLessThan(events, rows + copiedBefore + 2 * 2000, "the resumed copy did not start over: \(status.text)")
        print("backfill resume: killed at \(copiedBefore) copied rows; rerun took \(Date().timeIntervalSince(started)) s; topic events \(events)")
    }

    /// A TRUNCATE committed between a chunk's SELECT and its high watermark: the rows read are stale and
    /// must not be written after the watermark (they would bring back every truncated row at the sinks).
    func testTruncateInsideAChunkWindowDropsTheChunk() throws {
        try createTable(rows: 300)
        try writeConfig(tables: ["public.t"], sourceExtra: ["heartbeat_interval: 500ms"])
        _ = try startDaemon(environment: ["SLUICE_FAILPOINTS": "backfill.before_high_watermark:sleep(3000)"])
        try waitForSlotActive()
        try waitForTargets(lsn: try commitMarked("UPDATE t SET b = 'first' WHERE id = 1"))
        XCTAssertEqual(try targetRows(), 300)

        let backfill = try SluiceProcess(["backfill", "--config", configPath, "--table", "public.t"], logPath: directory + "/backfill.log")
        daemons.append(backfill)
        // The chunk is read and the daemon sleeps before its high watermark: the table is emptied meanwhile.
        try eventually(timeout: 60, "the chunk's SELECT to be done" + logTail) {
            (try String(contentsOfFile: logPath, encoding: .utf8)).contains("failpoint backfill.before_high_watermark fired")
        }
        try source.query("TRUNCATE t")
        XCTAssertEqual(backfill.wait(timeout: 120), 0, backfill.log + logTail)
        try waitForTargets(lsn: try commitMarked("INSERT INTO t VALUES (1000000, 1, 'after', 1, 1)"))
        XCTAssertEqual(try targetRows(), 1, "only the row inserted after the TRUNCATE" + logTail)
        XCTAssertEqual(try sqliteCount("public.t"), 1, logTail)
    }

    // MARK: (d) tables it cannot copy

    func testBackfillRefusesTablesItCannotCopy() throws {
        try createTable(rows: 10)
        try source.query("""
            CREATE TABLE keyless (k int, label text);
            ALTER TABLE keyless REPLICA IDENTITY FULL;
            INSERT INTO keyless VALUES (1, 'a');
            CREATE TABLE other (id int PRIMARY KEY);
            """)
        try writeConfig(tables: ["public.t", "public.keyless"])
        let cases: [(arguments: [String], expect: [String])] = [
            (["--table", "public.other"], ["public.other", "not captured"]),
            (["--table", "other"], ["public.other", "not captured"]),
            (["--source", "billing"], ["billing"]),
        ]
        for (arguments, expect) in cases {
            let result = try sluice(["backfill", "--config", configPath] + arguments, timeout: 60)
            let label = "sluice backfill \(arguments.joined(separator: " "))"
            XCTAssertEqual(result.status, 2, "\(label): \(result.describe)")
            for text in expect {
                XCTAssertTrue(result.err.contains(text), "\(label) mentions \"\(text)\": \(result.describe)")
            }
            XCTAssertFalse(FileManager.default.fileExists(atPath: stateDirectory + "/backfill-request.json"),
                           "\(label) left a backfill request behind")
            XCTAssertEqual(try source.scalar("SELECT count(*) FROM pg_replication_slots"), "0", "\(label) created a slot")
        }
    }
}

import Foundation
import SluiceWire
import XCTest

/// A transaction T reaches the topic, one sink applies it and the slot confirms it; then, with the
/// daemon stopped, one byte of T's commit marker is flipped. Recovery can only drop T, and PostgreSQL
/// will not send it again: the topic has lost a transaction the slot is past. The daemon must refuse
/// to capture (exit non-zero, saying which LSNs were lost and how to recover), every time it is
/// started, and no sink may be reported caught up on the damaged topic.
final class DamagedTopicTests: SinkTestCase {
    override var fixtureName: String { "damaged" }

    private var topicDirectory: String { directory + "/data/topics/app" }

    func testASlotAheadOfADamagedTopicStopsCaptureWithAnExplanation() throws {
        try source.query("""
            CREATE TABLE accounts (id int PRIMARY KEY, balance int);
            INSERT INTO accounts SELECT g, g * 10 FROM generate_series(1, 100) g;
            """)
        try writeConfig(tables: ["public.accounts"])
        let daemon = try startDaemon()
        try waitForSlotActive()
        let db = try source.connect()
        let first = try commitMarked("UPDATE accounts SET balance = balance + 1 WHERE id = 1", on: db)
        try waitForTargets(lsn: first, timeout: 60)

        // Sink replica falls behind; T reaches the topic, the SQLite target and the slot.
        target.stop()
        let t = try commitMarked("INSERT INTO accounts VALUES (9999, 1)", on: db)
        try eventually(timeout: 60, "the SQLite target to apply T (at or after \(lsnText(t)))" + logTail) {
            try sqliteTargetLSN() ?? 0 >= t
        }
        try eventually(timeout: 60, "the slot to confirm T" + logTail) {
            try source.scalar("SELECT (confirmed_flush_lsn >= $1::pg_lsn)::text FROM pg_replication_slots WHERE slot_name = 'sluice_app'",
                              [lsnText(t)]) == "true"
        }
        XCTAssertEqual(daemon.terminate(), 0, "clean exit on SIGTERM" + logTail)

        // Damage T's commit marker: the last frame of the newest segment.
        let segment = try XCTUnwrap(damagedSegmentNames(topicDirectory).last, "the topic has a segment")
        let path = topicDirectory + "/" + segment
        var bytes = [UInt8](try XCTUnwrap(FileManager.default.contents(atPath: path)))
        let frames = walkFrames(bytes)
        let last = try XCTUnwrap(frames.last, "the segment \(path) holds frames")
        XCTAssertEqual(last.start + 4 + last.size, bytes.count, "the frames of \(path) end at the end of the file")
        XCTAssertEqual(bytes[last.start + 9], 4, "the last record of \(path) is a commit marker")
        let body = last.start + 18
        let tCommitLSN = readU64(bytes, body + 4)
        let tEndLSN = readU64(bytes, body + 12)
        XCTAssertGreaterThanOrEqual(tCommitLSN, t, "the last commit marker is T's")
        let flipAt = bytes.count - 3
        XCTAssertGreaterThan(flipAt, body, "the flipped byte lies inside the commit marker's body")
        bytes[flipAt] ^= 0xFF
        try Data(bytes).write(to: URL(fileURLWithPath: path))

        let slotBefore = try slotConfirmedLSN()
        XCTAssertGreaterThanOrEqual(slotBefore, tEndLSN, "the slot is past T")
        try target.start()

        // First start after the damage: refuses, and says why.
        let firstRefusal = try startRefusing("daemon-refused-1.log", tCommitLSN: tCommitLSN, slot: slotBefore)

        // No sink is reported caught up on the damaged topic.
        let status = try sluiceStatus(configPath)
        let replica = try XCTUnwrap(status.sink("replica"), status.text)
        let state = replica["state"] as? String
        let error = (replica["error"] as? String ?? "").lowercased()
        XCTAssertFalse(state == "running" && (replica["lag_events"] as? Int) == 0,
                       "sink replica must not look caught up on a topic that lost a transaction: \(status.text)")
        XCTAssertTrue(state == "failed" || error.contains("lost") || error.contains("damaged"),
                      "sink replica is failed or its error names the lost/damaged topic: \(status.text)")
        let human = try sluice(["status", "--config", configPath])
        XCTAssertEqual(human.status, 0, human.describe)
        XCTAssertTrue(human.out.lowercased().contains("lost"), "`sluice status` mentions the lost transactions: \(human.describe)")

        // The PostgreSQL target was not marked past T, nor given T from nowhere.
        let replicaLSN = try XCTUnwrap(postgresTargetLSN(), "the PostgreSQL target keeps its offset")
        XCTAssertLessThan(replicaLSN, t, "sink replica's stored LSN (\(lsnText(replicaLSN))) stays below T (\(lsnText(t)))")
        XCTAssertGreaterThanOrEqual(replicaLSN, first, "sink replica keeps what it applied before the outage")
        XCTAssertEqual(try target.scalar("SELECT count(*) FROM accounts WHERE id = 9999"), "0",
                       "the lost transaction did not reach the PostgreSQL target")

        // The refusal is persistent: a second start refuses again, with the same explanation.
        let secondRefusal = try startRefusing("daemon-refused-2.log", tCommitLSN: tCommitLSN, slot: slotBefore)
        XCTAssertNotEqual(firstRefusal, 0)
        XCTAssertNotEqual(secondRefusal, 0)
        XCTAssertEqual(try slotConfirmedLSN(), slotBefore, "a refusing daemon confirms nothing to the slot")
        XCTAssertLessThan(try XCTUnwrap(postgresTargetLSN()), t, "sink replica is still below T after the second refusal")
    }

    /// A topic deleted after the slot confirmed what it held is not an interrupted initial snapshot:
    /// the source refuses (the slot stays, with its position) instead of dropping the slot and
    /// sending every sink a second snapshot.
    func testADeletedTopicIsNotTakenForAnInterruptedSnapshot() throws {
        try source.query("CREATE TABLE accounts (id int PRIMARY KEY, balance int); INSERT INTO accounts VALUES (1, 10)")
        try writeSourceConfig(tables: ["public.accounts"], sinks: ["  - {name: local, type: sqlite, path: \(sqlitePath)}"])
        let daemon = try startDaemon()
        try waitForSlotActive()
        let t = try commitMarked("INSERT INTO accounts VALUES (2, 20)")
        try eventually(timeout: 60, "the slot to confirm the insert" + logTail) { try slotConfirmedLSN() >= t }
        XCTAssertEqual(daemon.terminate(), 0, logTail)
        let confirmed = try slotConfirmedLSN()
        try FileManager.default.removeItem(atPath: topicDirectory)

        let result = try sluice(["run", "--config", configPath], timeout: 60)
        XCTAssertNotEqual(result.status, 0, result.describe)
        XCTAssertTrue(result.err.contains("topic 'app' is empty: the transactions it held were lost"), result.describe)
        XCTAssertTrue(result.err.contains("pg_drop_replication_slot('sluice_app')"), "says how to re-snapshot: \(result.describe)")
        XCTAssertTrue(result.err.contains("after replication slot 'sluice_app' confirmed them up to LSN"), result.describe)
        XCTAssertFalse(result.err.contains("dropped the slot"), result.describe)
        XCTAssertEqual(try slotConfirmedLSN(), confirmed, "the slot is kept where it was")
    }

    /// A damaged backfill request (here: cut short) is not taken for no request: the rows it asks for
    /// would never be copied. The source stops, naming the file and what to do, and leaves the file.
    func testADamagedBackfillRequestStopsCaptureNamingTheFile() throws {
        try source.query("CREATE TABLE accounts (id int PRIMARY KEY, balance int); INSERT INTO accounts VALUES (1, 10);")
        try writeConfig(tables: ["public.accounts"])
        let daemon = try startDaemon()
        try waitForSlotActive()
        let first = try commitMarked("UPDATE accounts SET balance = 11 WHERE id = 1", on: try source.connect())
        try waitForTargets(lsn: first, timeout: 60)
        XCTAssertEqual(daemon.terminate(), 0, "clean exit on SIGTERM" + logTail)

        let request = dataDirectory + "/sources/app/backfill-request.json"
        try Data("{\"id\":\"b1\",\"tables\":[\"public.acc".utf8).write(to: URL(fileURLWithPath: request))
        let logFile = directory + "/daemon-damaged-request.log"
        let again = try SluiceProcess(["run", "--config", configPath], logPath: logFile)
        daemons.append(again)
        func log() -> String { (try? String(contentsOfFile: logFile, encoding: .utf8)) ?? "" }
        try eventually(timeout: 60, "the daemon to stop on the damaged request:\n\(log())") { !again.isRunning }
        XCTAssertNotEqual(again.wait(), 0, log())
        XCTAssertTrue(log().contains("\(request) is damaged"), "the log names the damaged file:\n\(log())")
        XCTAssertTrue(log().contains("sluice backfill"), "the log says how to copy those rows:\n\(log())")
        XCTAssertTrue(FileManager.default.fileExists(atPath: request), "the damaged request is left for the operator")
    }

    /// A damaged source state file (here: cut short) is not taken for a fresh start, which would forget the
    /// cluster the topic belongs to: run stops naming the file and what to do, check reports it, the file stays.
    func testADamagedSourceStateStopsCaptureNamingTheFile() throws {
        try source.query("CREATE TABLE accounts (id int PRIMARY KEY, balance int); INSERT INTO accounts VALUES (1, 10);")
        try writeConfig(tables: ["public.accounts"])
        let daemon = try startDaemon()
        try waitForSlotActive()
        XCTAssertEqual(daemon.terminate(), 0, "clean exit on SIGTERM" + logTail)

        let state = dataDirectory + "/sources/app/state.json"
        let saved = try XCTUnwrap(FileManager.default.contents(atPath: state), "the source recorded its state")
        try saved.prefix(saved.count / 2).write(to: URL(fileURLWithPath: state))
        let logFile = directory + "/daemon-damaged-state.log"
        let again = try SluiceProcess(["run", "--config", configPath], logPath: logFile)
        daemons.append(again)
        func log() -> String { (try? String(contentsOfFile: logFile, encoding: .utf8)) ?? "" }
        try eventually(timeout: 60, "the daemon to stop on the damaged state:\n\(log())") { !again.isRunning }
        XCTAssertNotEqual(again.wait(), 0, log())
        XCTAssertTrue(log().contains("\(state) is damaged") && log().contains("Restore it from a copy, or delete it"), log())
        let check = try sluice(["check", "--config", configPath])
        XCTAssertEqual(check.status, 2, check.describe)
        XCTAssertTrue(check.out.contains("\(state) is damaged"), check.describe)
        XCTAssertTrue(FileManager.default.fileExists(atPath: state), "the damaged file is left for the operator")
    }

    /// Starts `sluice run`, expects it to exit non-zero by itself within 60 s, and checks that its log
    /// explains: the slot is ahead of the topic, the lost LSNs (a range reaching T), how to recover.
    private func startRefusing(_ logName: String, tCommitLSN: UInt64, slot: UInt64,
                               file: StaticString = #filePath, line: UInt = #line) throws -> Int32 {
        let logFile = directory + "/" + logName
        let daemon = try SluiceProcess(["run", "--config", configPath], logPath: logFile)
        daemons.append(daemon)
        func log() -> String { (try? String(contentsOfFile: logFile, encoding: .utf8)) ?? "" }
        try eventually(timeout: 60, "the daemon to refuse and exit (\(logName)):\n\(log())", file: file, line: line) { !daemon.isRunning }
        let status = daemon.wait()
        let text = log()
        print("--- \(logName) (exit \(status)) ---\n\(text)--- end of \(logName) ---")
        XCTAssertNotEqual(status, 0, "the daemon exits with a failure status (\(logName)):\n\(text)", file: file, line: line)
        let lower = text.lowercased()
        XCTAssertTrue(lower.contains("slot"), "the log names the replication slot (\(logName)):\n\(text)", file: file, line: line)
        XCTAssertTrue(lower.contains("snapshot"), "the log says how to recover (re-snapshot) (\(logName)):\n\(text)", file: file, line: line)
        let lostLines = text.split(separator: "\n").filter { $0.lowercased().contains("lost") }
        XCTAssertFalse(lostLines.isEmpty, "the log says transactions were lost (\(logName)):\n\(text)", file: file, line: line)
        let named = lostLines.flatMap { lsns(in: String($0)) }
        XCTAssertTrue(named.contains { $0 >= tCommitLSN && $0 <= slot },
                      "the lost range named in the log reaches T (commit \(lsnText(tCommitLSN))) and not beyond the slot "
                      + "(\(lsnText(slot))); LSNs named: \(named.map(lsnText)) (\(logName)):\n\(text)", file: file, line: line)
        return status
    }

    private func slotConfirmedLSN() throws -> UInt64 {
        lsnValue(try XCTUnwrap(source.scalar("SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = 'sluice_app'")))
    }
}

/// LSNs written as `X/Y` (hexadecimal) in a line of text.
private func lsns(in text: String) -> [UInt64] {
    guard let regex = try? NSRegularExpression(pattern: "(?<![0-9A-Fa-f])[0-9A-F]{1,8}/[0-9A-F]{1,8}(?![0-9A-Fa-f])") else { return [] }
    let range = NSRange(text.startIndex..., in: text)
    return regex.matches(in: text, range: range).compactMap { match in
        Range(match.range, in: text).map { lsnValue(String(text[$0])) }
    }
}

/// The segment files of a topic directory, oldest first.
func damagedSegmentNames(_ directory: String) -> [String] {
    let names = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
    return names.filter { $0.count == 24 && $0.hasSuffix(".log") && $0.prefix(20).allSatisfy(\.isNumber) }.sorted()
}

/// The frames of a segment (docs/log-format.md: a 20-byte header, then frames of size u32 — the bytes
/// after it — crc u32, version u8, kind u8, offset u64, body), up to the first that runs past the end.
func walkFrames(_ bytes: [UInt8]) -> [(start: Int, size: Int)] {
    var frames: [(start: Int, size: Int)] = []
    var position = 20
    while position + 4 <= bytes.count {
        let size = Int(readU32(bytes, position))
        guard size >= 14, position + 4 + size <= bytes.count else { break }
        frames.append((position, size))
        position += 4 + size
    }
    return frames
}

func readU32(_ bytes: [UInt8], _ at: Int) -> UInt64 { bytes[at..<at + 4].reduce(0) { $0 << 8 | UInt64($1) } }
func readU64(_ bytes: [UInt8], _ at: Int) -> UInt64 { bytes[at..<at + 8].reduce(0) { $0 << 8 | UInt64($1) } }

/// `sluice tail` with no daemon running, on a topic whose newest segment is damaged in the middle (one
/// byte of a committed record flipped): it prints what lies before the damage and then fails, naming
/// the segment, the byte and the first offset it cannot read, and what to do; `status` notes the damage.
/// A torn tail (a crash's partial last frame) is not damage: tail prints every whole transaction, exit 0.
/// A segment whose header is not a segment's fails tail too (it once read as an empty topic).
final class DamagedSegmentTailTests: DaemonTestCase {
    override var fixtureName: String { "damagedtail" }
    override var startsSourceCluster: Bool { false }
    var sqlitePath: String { directory + "/local.db" }

    func testTailFailsOnMidSegmentDamageButNotOnATornTail() throws {
        let input = directory + "/incoming.jsonl"
        try """
            data_dir: \(dataDirectory)
            sources:
              - name: feed
                type: exec
                command: [\(pluginPython), \(repositoryRoot)/examples/exec-source/jsonl_source.py]
                config: {path: \(input), table: public.events, columns: [{name: id, type: bigint, key: true}, {name: body, type: text}]}
            sinks:
              - {name: local, type: sqlite, path: \(sqlitePath), topics: [feed]}
            """.write(toFile: configPath, atomically: true, encoding: .utf8)
        XCTAssertTrue(FileManager.default.createFile(atPath: input, contents: nil))
        try ExecSourceTests.append(1...60, to: input)
        func inserts(_ result: CommandResult) -> [String] { result.out.split(separator: "\n").map(String.init).filter { $0.contains("\tINSERT\t") } }
        let daemon = try startDaemon()
        try eventually(timeout: 60, "the 60 lines to reach the topic and the SQLite sink" + logTail) {
            guard inserts(try sluice(["tail", "feed", "--config", configPath, "--from-beginning"])).count == 60,
                  FileManager.default.fileExists(atPath: sqlitePath) else { return false }
            let rows = try SQLiteDatabase(path: sqlitePath, readOnly: true).query("SELECT count(*) FROM events")
            return rows.first?[0] == "60"
        }
        XCTAssertEqual(daemon.terminate(), 0, logTail)

        let topic = dataDirectory + "/topics/feed"
        let path = topic + "/" + (try XCTUnwrap(damagedSegmentNames(topic).last))
        let original = [UInt8](try XCTUnwrap(FileManager.default.contents(atPath: path)))
        let frames = walkFrames(original)
        XCTAssertGreaterThan(frames.count, 100, "the segment holds every record")
        let victim = frames[frames.count / 2]
        let victimOffset = readU64(original, victim.start + 10)
        var damaged = original
        damaged[victim.start + victim.size] ^= 0x5A  // inside the part its checksum covers
        try Data(damaged).write(to: URL(fileURLWithPath: path))

        let tail = try sluice(["tail", "feed", "--config", configPath, "--from-beginning"])
        XCTAssertNotEqual(tail.status, 0, "tail must not end quietly short of the topic's records: \(tail.describe)")
        for words in [path, "offset \(victimOffset)", "sluice run"] {
            XCTAssertTrue(tail.err.contains(words), "tail's error names \(words): \(tail.describe)")
        }
        let printed = inserts(tail)
        XCTAssertFalse(printed.isEmpty, "the records before the damage are printed: \(tail.describe)")
        XCTAssertTrue(printed.allSatisfy { UInt64($0.prefix { $0 != "\t" }) ?? .max < victimOffset },
                      "nothing from the damaged offset on is printed: \(tail.describe)")
        let status = try sluice(["status", "--config", configPath])
        XCTAssertEqual(status.status, 0, status.describe)
        XCTAssertTrue(status.out.contains("DAMAGED") && status.out.contains(path), "status notes the damage: \(status.describe)")

        // A torn tail: the last frame (the last transaction's commit marker) cut short.
        try Data(original.dropLast(3)).write(to: URL(fileURLWithPath: path))
        let torn = try sluice(["tail", "feed", "--config", configPath, "--from-beginning"])
        XCTAssertEqual(torn.status, 0, "a torn tail is crash debris, not an error: \(torn.describe)")
        XCTAssertEqual(inserts(torn).count, 59, "every whole transaction, the torn one left out: \(torn.describe)")
        XCTAssertFalse(torn.err.contains("damaged"), torn.describe)

        // A header that is not a segment's: nothing can be read, and tail must not pass for an empty topic.
        try Data(Array("NOTALOG!".utf8) + original.dropFirst(8)).write(to: URL(fileURLWithPath: path))
        let headless = try sluice(["tail", "feed", "--config", configPath, "--from-beginning"])
        XCTAssertNotEqual(headless.status, 0, headless.describe)
        XCTAssertTrue(headless.err.contains(path) && headless.err.contains("bad header"), headless.describe)
        let noted = try sluice(["status", "--config", configPath])
        XCTAssertTrue(noted.out.contains("DAMAGED") && noted.out.contains("bad header"), noted.describe)

        // The daemon refuses the segment, naming it; its sink, which applied the topic, names the damage
        // too instead of calling the topic empty.
        let refusedLog = directory + "/daemon-bad-header.log"
        let refused = try SluiceProcess(["run", "--config", configPath], logPath: refusedLog)
        daemons.append(refused)
        func log() -> String { (try? String(contentsOfFile: refusedLog, encoding: .utf8)) ?? "" }
        try eventually(timeout: 60, "the daemon to stop on the damaged header:\n\(log())") { !refused.isRunning }
        XCTAssertEqual(refused.wait(), 1, log())
        XCTAssertTrue(log().contains(path) && log().contains("bad header"), log())
        let sinkLines = log().split(separator: "\n").filter { $0.contains("sink local has applied topic feed") }
        XCTAssertFalse(log().contains("ends empty"), "a damaged topic is not called empty:\n\(log())")
        XCTAssertEqual(sinkLines.count, 1, "the sink stops on the damaged topic:\n\(log())")
        for words in ["is damaged", path, "bad header", "restore the file from a copy"] {
            XCTAssertTrue(sinkLines.allSatisfy { $0.contains(words) }, "the sink's message names \(words):\n\(log())")
        }
    }
}

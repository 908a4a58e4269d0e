import Foundation
import SluiceWire
import XCTest

/// The data directory sits on a 24 MB tmpfs and the PostgreSQL target is down, so the topic cannot be
/// trimmed while the source keeps writing: the disk fills up. The daemon must not exit: /health and
/// `sluice status` say "disk full" (naming the data directory), capture pauses without confirming to
/// the slot anything the topic does not hold, and once the target is back, the sink drains, retention
/// frees segments and capture resumes by itself — both targets end equal to the source.
final class DiskFullTests: SinkTestCase {
    override var fixtureName: String { "diskfull" }

    private var mountPoint: String?
    private var topicDirectory: String { dataDirectory + "/topics/app" }

    override func tearDown() {
        // The daemon first (it holds files on the tmpfs), then the mount, then the rest.
        for daemon in daemons where daemon.isRunning { daemon.kill() }
        if let mountPoint { _ = try? IntegrationTests.run(["/usr/bin/umount", "-l", mountPoint]) }
        mountPoint = nil
        super.tearDown()
    }

    func testDiskFullPausesCaptureWithoutExitingAndResumesOnceRetentionFreesSpace() throws {
        // A small filesystem for data_dir only; the SQLite target and the daemon's log stay outside it.
        try mountTmpfs(on: dataDirectory, size: "24m")
        mountPoint = dataDirectory

        try source.query("""
            CREATE TABLE items (id int PRIMARY KEY, payload text);
            INSERT INTO items SELECT g, repeat(md5(g::text), 32) FROM generate_series(1, 100) g;
            """)
        let port = try freePort()
        try writeConfig(tables: ["public.items"])
        let extra = """
            retention:
              segment_bytes: 2MB
            metrics:
              listen: "127.0.0.1:\(port)"

            """
        let handle = try XCTUnwrap(FileHandle(forWritingAtPath: configPath))
        handle.seekToEndOfFile()
        handle.write(Data(extra.utf8))
        handle.closeFile()

        let daemon = try startDaemon()
        try waitForSlotActive()
        let db = try source.connect()
        let first = try commitMarked("INSERT INTO items VALUES (0, 'first')", on: db)
        try waitForTargets(lsn: first, timeout: 60)
        try eventually(timeout: 30, "/health to be 200" + logTail) { try opsHTTPGet(port: port, path: "/health").status == 200 }

        // The PostgreSQL target goes away: sink replica cannot drain, so retention cannot trim the topic.
        target.stop()

        var nextID = 1000
        var written = 0
        /// One transaction: 250 new rows of ~1 KB, two earlier rows rewritten, one deleted.
        func writeBatch(rows: Int = 250) throws {
            try db.execute("BEGIN")
            try db.execute("INSERT INTO items SELECT g, repeat(md5(g::text), 32) FROM generate_series($1::int, $2::int) g",
                           [String(nextID), String(nextID + rows - 1)])
            if nextID > 1000 {
                try db.execute("UPDATE items SET payload = repeat(md5((id * 7)::text), 32) WHERE id IN ($1::int, $2::int)",
                               [String(nextID - 1), String(nextID - 2)])
                try db.execute("DELETE FROM items WHERE id = $1::int", [String(nextID - 3)])
            }
            try db.execute("COMMIT")
            nextID += rows
            written += rows * 1024
        }
        func assertRunning(_ when: String, file: StaticString = #filePath, line: UInt = #line) throws {
            guard daemon.isRunning else {
                XCTFail("the daemon exited (status \(daemon.wait())) \(when)" + logTail, file: file, line: line)
                throw TestFailure("the daemon exited \(when)")
            }
        }
        func isDiskFull(_ health: (status: Int, body: String)) -> Bool {
            health.status == 503 && health.body.lowercased().contains("disk full")
        }

        // Write until the daemon reports the disk full (the topic outgrows the 24 MB filesystem).
        var health = (status: 0, body: "")
        let fillDeadline = Date().addingTimeInterval(120)
        while true {
            try assertRunning("while the topic filled the disk")
            health = (try? opsHTTPGet(port: port, path: "/health")) ?? (0, "")
            if isDiskFull(health) { break }
            guard Date() < fillDeadline else {
                XCTFail("/health never reported a full disk after \(written >> 20) MB written (last: \(health)); "
                        + "data_dir: \(filesystemUsage(dataDirectory))" + logTail)
                return
            }
            if written < 60 << 20 { try writeBatch() } else { usleep(100_000) }
        }
        print("disk full after \(written >> 20) MB written; data_dir: \(filesystemUsage(dataDirectory))")
        XCTAssertTrue(health.body.contains(dataDirectory),
                      "the 503 body names the full data directory (\(dataDirectory)): \(health.body)")

        // While it is full: the daemon stays up, /health keeps saying so, and the slot is confirmed no
        // further than the topic's last commit marker. The source keeps writing meanwhile, well past the
        // filesystem's size in all (its WAL keeps what capture has not taken yet).
        var round = 0
        fullLoop: while round < 12 || written < 40 << 20 {
            round += 1
            if written < 40 << 20 { try writeBatch() } else { usleep(250_000) }
            try assertRunning("while the disk was full")
            health = try opsHTTPGet(port: port, path: "/health")
            let confirmed = try slotConfirmedLSN()
            let topicEnd = try XCTUnwrap(lastCommitEndLSN(topicDirectory), "the topic holds a commit marker")
            let current = lsnValue(try XCTUnwrap(source.scalar("SELECT pg_current_wal_lsn()::text")))
            let problems = [
                isDiskFull(health) ? nil : "/health no longer reports the full disk: \(health)",
                confirmed <= topicEnd ? nil : "the slot is confirmed (\(lsnText(confirmed))) beyond the topic's last commit marker "
                    + "(end LSN \(lsnText(topicEnd))): transactions not in the topic were acknowledged",
                confirmed < current ? nil : "capture is not paused: the slot (\(lsnText(confirmed))) reached the source's WAL end",
            ].compactMap { $0 }
            if !problems.isEmpty {
                XCTFail("while the disk is full (check \(round), \(written >> 20) MB written): " + problems.joined(separator: "; ")
                        + "; data_dir: \(filesystemUsage(dataDirectory))" + logTail)
                break fullLoop
            }
        }
        print("the disk stayed full over \(round) checks; \(written >> 20) MB written by then")
        var statusText = ""
        try eventually(timeout: 30, "`sluice status` to mention the full disk (last: \(statusText))" + logTail) {
            let result = try sluice(["status", "--config", configPath])
            statusText = result.describe
            return result.status == 0 && result.out.lowercased().contains("disk full")
        }
        try assertRunning("after sluice status")

        // The target returns: replica drains, retention deletes segments, capture resumes on its own.
        try target.start()
        while written < 60 << 20 {
            try writeBatch()
            try assertRunning("after the target came back")
            usleep(50_000)
        }
        let final = try commitMarked("UPDATE items SET payload = 'final' WHERE id = 1", on: db)
        let drainDeadline = Date().addingTimeInterval(240)
        while true {
            try assertRunning("while the backlog drained")
            if let pg = try? postgresTargetLSN(), pg >= final, let lite = try? sqliteTargetLSN(), lite >= final { break }
            guard Date() < drainDeadline else {
                XCTFail("both targets to reach LSN \(lsnText(final)) (postgres: \((try? postgresTargetLSN())?.map(lsnText) ?? "none"), "
                        + "sqlite: \((try? sqliteTargetLSN())?.map(lsnText) ?? "none"), slot: \((try? slotConfirmedLSN()).map(lsnText) ?? "?")); "
                        + "data_dir: \(filesystemUsage(dataDirectory))" + logTail)
                return
            }
            usleep(200_000)
        }
        try assertRunning("after both targets caught up")
        try assertTargetsEqualSource("public.items")
        XCTAssertFalse(FileManager.default.fileExists(atPath: topicDirectory + "/00000000000000000000.log"),
                       "retention deleted the first segment once both sinks had passed it: \(segmentNames(topicDirectory))")
        try eventually(timeout: 60, "/health to be 200 again (last: \(health))" + logTail) {
            health = try opsHTTPGet(port: port, path: "/health")
            return health.status == 200
        }
        XCTAssertTrue(daemon.isRunning, "the daemon never exited" + logTail)
        print("disk-full test: \(written >> 20) MB written, \(nextID - 1000) rows inserted; data_dir: \(filesystemUsage(dataDirectory))")
        XCTAssertEqual(daemon.terminate(), 0, "clean exit on SIGTERM" + logTail)
    }

    /// The disk filled by something else (a file beside the topic): with less free than capture needs to
    /// resume (~1 MB free on an 8 MB filesystem, which needs 2 MB), the source stays paused and `status`
    /// says how much must be free and how much is; once there is room it resumes and loses nothing.
    func testLessThanTheResumeThresholdFreeKeepsCapturePausedAndSaysWhatItNeeds() throws {
        try mountTmpfs(on: dataDirectory, size: "8m")
        mountPoint = dataDirectory
        try source.query("CREATE TABLE items (id int PRIMARY KEY, payload text)")
        try writeConfig(tables: ["public.items"], sourceExtra: ["heartbeat_interval: 500ms"])
        let daemon = try startDaemon()
        try waitForSlotActive()
        try waitForTargets(lsn: try commitMarked("INSERT INTO items VALUES (0, 'first')"))

        // Something else fills the filesystem.
        let filler = dataDirectory + "/filler"
        let fd = open(filler, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        XCTAssertGreaterThanOrEqual(fd, 0)
        let block = [UInt8](repeating: 7, count: 64 << 10)
        while block.withUnsafeBytes({ write(fd, $0.baseAddress!, $0.count) }) > 0 {}
        // Half a megabyte back: room for the status file, not for capture.
        XCTAssertEqual(ftruncate(fd, lseek(fd, 0, SEEK_END) - (512 << 10)), 0)
        close(fd)
        try source.query("INSERT INTO items SELECT g, repeat(md5(g::text), 64) FROM generate_series(1, 2000) g")
        var statusText = ""
        try eventually(timeout: 60, "`sluice status` to say what capture needs to resume (last: \(statusText))" + logTail) {
            statusText = try sluice(["status", "--config", configPath]).out
            return statusText.contains("disk full") && statusText.contains("capture resumes once 2.0 MB are free there")
        }
        XCTAssertTrue(statusText.range(of: #"\(\d+\.\d MB now"#, options: .regularExpression) != nil, statusText)
        XCTAssertTrue(daemon.isRunning, logTail)

        // Room again: capture resumes by itself, and every row arrives once.
        try FileManager.default.removeItem(atPath: filler)
        try waitForTargets(lsn: try commitMarked("INSERT INTO items VALUES (5000, 'last')"), timeout: 60)
        try assertTargetsEqualSource("public.items")
        XCTAssertEqual(daemon.terminate(), 0, logTail)
    }

    private func slotConfirmedLSN() throws -> UInt64 {
        lsnValue(try XCTUnwrap(source.scalar("SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = 'sluice_app'")))
    }
}

/// The segment files of a topic directory, oldest first.
private func segmentNames(_ directory: String) -> [String] {
    let names = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
    return names.filter { $0.count == 24 && $0.hasSuffix(".log") && $0.prefix(20).allSatisfy(\.isNumber) }.sorted()
}

/// The end LSN of the last commit marker written to the topic (docs/log-format.md: frames of
/// size u32, crc u32, version u8, kind u8, offset u64, body; a commit body holds xid u32, commit LSN
/// u64, end LSN u64, …). Walks the newest segment that holds one; a frame running past the end of
/// the file (a write cut short) ends the walk.
private func lastCommitEndLSN(_ directory: String) throws -> UInt64? {
    for name in segmentNames(directory).reversed() {
        guard let data = FileManager.default.contents(atPath: directory + "/" + name) else { continue }
        let bytes = [UInt8](data)
        func u32(_ at: Int) -> UInt64 { bytes[at..<at + 4].reduce(0) { $0 << 8 | UInt64($1) } }
        func u64(_ at: Int) -> UInt64 { bytes[at..<at + 8].reduce(0) { $0 << 8 | UInt64($1) } }
        var position = 20
        var end: UInt64?
        while position + 4 <= bytes.count {
            let size = Int(u32(position))
            guard size >= 14, position + 4 + size <= bytes.count else { break }
            if bytes[position + 9] == 4, size >= 14 + 20 { end = u64(position + 18 + 12) }
            position += 4 + size
        }
        if let end { return end }
    }
    return nil
}

/// `df`'s view of a directory's filesystem, for failure messages.
private func filesystemUsage(_ path: String) -> String {
    var stats = statvfs()
    guard statvfs(path, &stats) == 0 else { return "(statvfs failed)" }
    let total = UInt64(stats.f_blocks) * UInt64(stats.f_frsize)
    let free = UInt64(stats.f_bavail) * UInt64(stats.f_frsize)
    return "\((total - free) >> 10) KB used of \(total >> 10) KB"
}

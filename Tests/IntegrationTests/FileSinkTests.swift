import Foundation
import XCTest

/// The file sink (`type: file`): JSON lines per topic, `<topic>.<8-digit seq>.jsonl`, each line what
/// `sluice tail --json` prints; exactly once across SIGKILLs, rotation at `max_file_bytes`, and a torn
/// tail cut back on open.
final class FileSinkTests: PluginSinkTestCase {
    override var fixtureName: String { "filesink" }

    var outDirectory: String { directory + "/out" }

    func writeFileSinkConfig(maxFileBytes: String? = nil) throws {
        var lines = [
            "  - name: files",
            "    type: file",
            "    path: \(outDirectory)",
            "    topics: [app]",
        ]
        if let maxFileBytes { lines.append("    max_file_bytes: \(maxFileBytes)") }
        try writeConfig(lines)
    }

    /// Parses the topic's files (in sequence order) as one stream; checks framing, offsets and the tail.
    func readFiles(file: StaticString = #filePath, line: UInt = #line) throws -> (text: String, dump: TopicDump) {
        let text = pluginTopicText(outDirectory, topic: "app")
        pluginAssertEndsOnCommit(text, "the file sink's output", file: file, line: line)
        return (text, try TopicDump(json: text, file: file, line: line))
    }

    // MARK: (a) SIGKILL loop

    func testKillingTheDaemonRepeatedlyWritesEveryTransactionOnce() throws {
        try writeFileSinkConfig()
        let workload = PluginWorkload(url: source.url)
        var daemon = try startDaemon()
        try waitForSlotActive()
        let writer = workload.start(1...400, pauseMicros: 8_000)
        defer { writer.join() }

        var kills = 0
        var killsAfterOutput = 0
        var lastSize = 0
        while !(workload.isDone && kills >= 5) {
            usleep(UInt32.random(in: 150_000...700_000))
            daemon.kill()
            kills += 1
            let size = pluginTopicText(outDirectory, topic: "app").utf8.count
            if size != lastSize { killsAfterOutput += 1 }
            lastSize = size
            daemon = try startDaemon()
        }
        writer.join()
        XCTAssertNil(workload.error, "the workload ran")
        print("file sink crash loop: \(kills) kills, \(killsAfterOutput) after the incarnation wrote; "
              + "\(workload.committed.count) transactions")
        XCTAssertGreaterThanOrEqual(kills, 5)
        XCTAssertGreaterThanOrEqual(killsAfterOutput, 2, "incarnations got to write between kills" + logTail)

        let expected = workload.committed
        XCTAssertEqual(expected.count, 400)
        try eventually(timeout: 90, "the files to hold every transaction" + logTail) {
            pluginHoldsAll(pluginTopicText(outDirectory, topic: "app"), xids: expected.suffix(1).map(\.xid))
        }
        let status = try waitForCaughtUp(["files"])
        XCTAssertEqual(status.state(sink: "files"), "running", status.text)
        XCTAssertEqual(daemon.terminate(), 0, logTail)

        let files = pluginTopicFiles(outDirectory, topic: "app")
        XCTAssertEqual(files.map(\.sequence), [1], "one file under the default max_file_bytes")
        let (_, dump) = try readFiles()
        pluginAssertExactlyOnce(dump.transactions, expected, logTail)
        // Every line is the object `sluice tail --json` prints for the same record.
        let tail = try sluice(["tail", "app", "--config", configPath, "--from-beginning", "--json"])
        XCTAssertEqual(tail.status, 0, tail.err)
        XCTAssertEqual(pluginTopicText(outDirectory, topic: "app"), tail.out,
                       "the files hold exactly the topic's records as `sluice tail --json` prints them")
    }

    // MARK: (b) rotation

    func testRotationSplitsTheTopicAtTransactionBoundaries() throws {
        try writeFileSinkConfig(maxFileBytes: "20000")
        let workload = PluginWorkload(url: source.url)
        let daemon = try startDaemon()
        try waitForSlotActive()
        // In small steps, so batches stay small and files rotate many times.
        let writer = workload.start(1...300, pauseMicros: 3_000)
        writer.join()
        XCTAssertNil(workload.error)
        let expected = workload.committed
        try eventually(timeout: 60, "the files to hold every transaction" + logTail) {
            pluginHoldsAll(pluginTopicText(outDirectory, topic: "app"), xids: expected.suffix(1).map(\.xid))
        }
        _ = try waitForCaughtUp(["files"])
        XCTAssertEqual(daemon.terminate(), 0, logTail)

        let files = pluginTopicFiles(outDirectory, topic: "app")
        XCTAssertGreaterThanOrEqual(files.count, 3, "a 20000-byte limit rotates: \(files.map(\.path))")
        XCTAssertEqual(files.map(\.sequence), Array(1...files.count), "sequences are consecutive from 1")
        for (index, entry) in files.enumerated() {
            let text = try String(contentsOfFile: entry.path, encoding: .utf8)
            let size = text.utf8.count
            if index < files.count - 1 {
                XCTAssertGreaterThan(size, 20000, "\(entry.path) was closed only past max_file_bytes")
                pluginAssertEndsOnCommit(text, entry.path)
                let first = text.split(separator: "\n").first.map(String.init) ?? ""
                XCTAssertTrue(first.contains("\"kind\":\"begin\""), "\(entry.path) starts with a begin line: \(first)")
            } else if size > 0 {
                pluginAssertEndsOnCommit(text, entry.path)
            }
            // Each file on its own is whole transactions.
            _ = try TopicDump(json: text)
        }
        let (text, dump) = try readFiles()
        pluginAssertExactlyOnce(dump.transactions, expected, logTail)
        let tail = try sluice(["tail", "app", "--config", configPath, "--from-beginning", "--json"])
        XCTAssertEqual(tail.status, 0, tail.err)
        XCTAssertEqual(text, tail.out, "all files together are the whole topic")
    }

    /// SIGKILLs while files rotate every ~16 KB: a kill right after a rotation (an empty or half-written
    /// newest file) loses and repeats nothing either.
    func testKillingTheDaemonWhileFilesRotateWritesEveryTransactionOnce() throws {
        try writeFileSinkConfig(maxFileBytes: "16KB")
        let workload = PluginWorkload(url: source.url)
        var daemon = try startDaemon()
        try waitForSlotActive()
        let writer = workload.start(1...400, pauseMicros: 8_000)
        defer { writer.join() }
        var kills = 0
        while !(workload.isDone && kills >= 5) {
            usleep(UInt32.random(in: 150_000...600_000))
            daemon.kill()
            kills += 1
            daemon = try startDaemon()
        }
        writer.join()
        XCTAssertNil(workload.error)
        let expected = workload.committed
        try eventually(timeout: 90, "the files to hold every transaction" + logTail) {
            pluginHoldsAll(pluginTopicText(outDirectory, topic: "app"), xids: expected.suffix(1).map(\.xid))
        }
        _ = try waitForCaughtUp(["files"])
        XCTAssertEqual(daemon.terminate(), 0, logTail)

        let files = pluginTopicFiles(outDirectory, topic: "app")
        print("file sink rotation crash loop: \(kills) kills, \(files.count) files")
        XCTAssertGreaterThanOrEqual(files.count, 5, "files rotated")
        XCTAssertEqual(files.map(\.sequence), Array(1...files.count), "sequences are consecutive from 1")
        for entry in files {
            let text = try String(contentsOfFile: entry.path, encoding: .utf8)
            if !text.isEmpty { pluginAssertEndsOnCommit(text, entry.path) }
            _ = try TopicDump(json: text)
        }
        let (text, dump) = try readFiles()
        pluginAssertExactlyOnce(dump.transactions, expected, logTail)
        let tail = try sluice(["tail", "app", "--config", configPath, "--from-beginning", "--json"])
        XCTAssertEqual(text, tail.out, "all files together are the whole topic")
    }

    // MARK: (c) torn tail

    func testATornTailIsCutBackOnRestart() throws {
        try writeFileSinkConfig()
        let workload = PluginWorkload(url: source.url)
        var daemon = try startDaemon()
        try waitForSlotActive()
        workload.run(1...100)
        XCTAssertNil(workload.error)
        try eventually(timeout: 60, "the files to hold the first 100 transactions" + logTail) {
            pluginHoldsAll(pluginTopicText(outDirectory, topic: "app"), xids: workload.committed.suffix(1).map(\.xid))
        }
        XCTAssertEqual(daemon.terminate(), 0, logTail)

        // While sluice is stopped: append the last transaction's begin and change lines again (whole
        // lines, no commit), then half a line of garbage.
        let files = pluginTopicFiles(outDirectory, topic: "app")
        let newest = try XCTUnwrap(files.last?.path)
        let before = try String(contentsOfFile: newest, encoding: .utf8)
        let lines = before.split(separator: "\n").map(String.init)
        let lastBegin = try XCTUnwrap(lines.lastIndex { $0.contains("\"kind\":\"begin\"") })
        let uncommitted = lines[lastBegin..<(lines.count - 1)].joined(separator: "\n") + "\n"
        let torn = uncommitted + #"{"offset":999999,"kind":"change","op":"insert","table":"public.or"#
        let handle = try XCTUnwrap(FileHandle(forWritingAtPath: newest))
        try handle.seekToEnd()
        try handle.write(contentsOf: Data(torn.utf8))
        try handle.close()

        daemon = try startDaemon()
        try waitForSlotActive()
        let secondPhase = PluginWorkload(url: source.url, firstSeq: 1)
        secondPhase.run(101...200)
        XCTAssertNil(secondPhase.error)
        let expected = workload.committed + secondPhase.committed
        try eventually(timeout: 60, "the files to hold all 200 transactions" + logTail) {
            pluginHoldsAll(pluginTopicText(outDirectory, topic: "app"), xids: expected.suffix(1).map(\.xid))
        }
        _ = try waitForCaughtUp(["files"])
        XCTAssertEqual(daemon.terminate(), 0, logTail)

        XCTAssertTrue(daemon.log.contains("dropped an unacknowledged tail"), "the cut is logged" + logTail)
        let after = try String(contentsOfFile: newest, encoding: .utf8)
        XCTAssertTrue(after.hasPrefix(before), "what was acknowledged is kept byte for byte")
        XCTAssertFalse(after.contains("999999"), "the torn line is gone")
        let (_, dump) = try readFiles()
        pluginAssertExactlyOnce(dump.transactions, expected, logTail)
    }
}

import Foundation
import SluiceNATS
import XCTest

/// A sink lagging behind (its target down) while the daemon runs; then a byte of an older segment it
/// still has to read is flipped. The sink applies nothing from the damage on and shows as failed,
/// naming the segment, while the source and the other sink go on. Once the operator restores the
/// segment from a copy (docs: "restore the file from a copy"), the same daemon — no restart — applies
/// the rest: the sink is running again, caught up, and its target equals the source (nothing skipped,
/// nothing twice).
final class RepairedTopicTests: SinkTestCase {
    override var fixtureName: String { "repaired" }

    private var topicDirectory: String { dataDirectory + "/topics/app" }
    var nats: NATSNode?

    override func tearDown() {
        super.tearDown()
        nats?.kill()
    }

    func testASinkFailedOnADamagedSegmentResumesOnceTheSegmentIsRestored() throws {
        try source.query("""
            CREATE TABLE accounts (id int PRIMARY KEY, note text);
            INSERT INTO accounts SELECT g, 'seed' FROM generate_series(1, 10) g;
            """)
        try writeConfig(tables: ["public.accounts"], topExtra: ["retention: {segment_bytes: 64KB}"])
        let daemon = try startDaemon()
        try waitForSlotActive()
        let first = try commitMarked("UPDATE accounts SET note = 'first' WHERE id = 1")
        try waitForTargets(lsn: first, timeout: 60)

        // The PostgreSQL target goes away; ~750 kB of transactions reach the topic and the SQLite target.
        target.stop()
        var last: UInt64 = 0
        for i in 0..<6 {
            let low = 1_000 + i * 500
            last = try commitMarked("INSERT INTO accounts SELECT g, repeat('r', 250) FROM generate_series(\(low), \(low + 499)) g")
        }
        try eventually(timeout: 60, "the SQLite target to apply every transaction" + logTail) { try sqliteTargetLSN() ?? 0 >= last }
        let segments = damagedSegmentNames(topicDirectory)
        XCTAssertGreaterThanOrEqual(segments.count, 4, "64KB segments: \(segments)")
        // An older segment: neither the one the writer appends to nor the one holding the durable end.
        let victimName = segments[1]
        let victimBase = try XCTUnwrap(UInt64(victimName.prefix(20)))
        let stored = try XCTUnwrap(try sluiceStatus(configPath).committedOffset("replica", "app"), "replica's position")
        XCTAssertLessThan(UInt64(stored), victimBase, "sink replica still has to read \(victimName)")

        // One byte of a record in the middle of that segment, inside what its checksum covers.
        let path = topicDirectory + "/" + victimName
        let original = [UInt8](try XCTUnwrap(FileManager.default.contents(atPath: path)))
        let frames = walkFrames(original)
        XCTAssertGreaterThan(frames.count, 10, "the segment holds records")
        let victim = frames[frames.count / 2]
        var damaged = original
        damaged[victim.start + victim.size] ^= 0x5A
        try Data(damaged).write(to: URL(fileURLWithPath: path))
        try target.start()

        try eventually(timeout: 90, "sink replica to fail on the damaged segment" + logTail) {
            let status = try sluiceStatus(configPath)
            return status.state(sink: "replica") == "failed" && (status.error(sink: "replica") ?? "").contains(path)
        }
        let sourceCount = try XCTUnwrap(Int(try XCTUnwrap(source.scalar("SELECT count(*) FROM accounts"))))
        XCTAssertLessThan(Int(try XCTUnwrap(target.scalar("SELECT count(*) FROM accounts"))) ?? 0, sourceCount,
                          "nothing from the damage on reached the PostgreSQL target")
        XCTAssertEqual(try sluiceStatus(configPath).state(sink: "local"), "running", "the other sink goes on")
        XCTAssertTrue(daemon.isRunning, logTail)

        // The operator restores the segment from a copy; the running daemon picks it up.
        try Data(original).write(to: URL(fileURLWithPath: path))
        let more = try commitMarked("INSERT INTO accounts VALUES (99999, 'after the repair')")
        try eventually(timeout: 90, "sink replica to apply the topic again without a restart" + logTail) {
            try postgresTargetLSN() ?? 0 >= more && sluiceStatus(configPath).state(sink: "replica") == "running"
        }
        try assertTargetsEqualSource("public.accounts")
        XCTAssertTrue(logTail.contains("sink replica recovered"), "the recovery is logged" + logTail)
        XCTAssertEqual(daemon.terminate(), 0, logTail)
    }

    /// A split deployment on JetStream: the source's process (here stopped) recorded that its stream lost
    /// transactions (the note on the stream's damage subject, as its source writes it); the sink in its
    /// own process applies up to there and fails. Once the note is cleared (the source found the stream
    /// restored), that sink process — not restarted — runs again and applies what follows.
    func testASinkOnlyProcessResumesOnceItsStreamIsNoLongerMarkedDamaged() throws {
        try skipUnlessNATSServerIsInstalled()
        let node = try NATSNode(name: "n1", directory: directory)
        nats = node
        try node.start()
        try source.query("CREATE TABLE accounts (id int PRIMARY KEY, note text); INSERT INTO accounts VALUES (1, 'one')")
        let topics = "topics: {backend: jetstream, servers: [\(node.url)], replicas: 1}"
        try writeSourceConfig(tables: ["public.accounts"], topExtra: [topics])
        let sinkConfig = directory + "/sink.yml"
        try """
            data_dir: \(directory!)/data-sink
            \(topics)
            sinks:
              - {name: local, type: sqlite, path: \(sqlitePath), topics: [app]}
            """.write(toFile: sinkConfig, atomically: true, encoding: .utf8)
        let capture = try startDaemon()
        try waitForSlotActive()
        let sinkLog = directory + "/sink.log"
        let sinks = try SluiceProcess(["run", "--config", sinkConfig], logPath: sinkLog)
        daemons.append(sinks)
        func log() -> String { (try? String(contentsOfFile: sinkLog, encoding: .utf8)) ?? "" }
        try eventually(timeout: 60, "the snapshot to reach the sink process:\n\(log())") { (try? sqliteCount("public.accounts")) == 1 }
        XCTAssertEqual(capture.terminate(), 0, logTail)

        var options = NATSOptions(servers: [node.url])
        options.name = "repaired-test"
        let jetStream = try NATSConnection(options: options).jetStream()
        _ = try jetStream.publish("SLUICE.app.d", Array("transactions in LSN range 0/1–0/2 were lost (test)".utf8))
        // The sink process itself fails (status would show a damaged topic's sinks failed anyway).
        try eventually(timeout: 60, "the sink process to fail on the damaged stream:\n\(log())") {
            log().split(separator: "\n").contains { $0.contains("sink local failed and stopped") && $0.contains("were lost (test)") }
        }
        XCTAssertEqual(try sluiceStatus(sinkConfig).state(sink: "local"), "failed")
        XCTAssertTrue(sinks.isRunning, log())

        // Repaired: the note is cleared, and the source's process starts again.
        _ = try jetStream.publish("SLUICE.app.d", [])
        _ = try startDaemon()
        try waitForSlotActive()
        try source.query("INSERT INTO accounts VALUES (2, 'two')")
        try eventually(timeout: 60, "the same sink process to apply the next transaction:\n\(log())") {
            (try? sqliteCount("public.accounts")) == 2 && (try? sluiceStatus(sinkConfig).state(sink: "local")) == "running"
        }
        XCTAssertTrue(log().contains("sink local recovered"), log())
        XCTAssertEqual(sinks.terminate(), 0, log())
    }
}

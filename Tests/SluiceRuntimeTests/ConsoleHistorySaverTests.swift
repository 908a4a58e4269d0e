import Foundation
import Logging
@testable import SluiceRuntime
import XCTest

/// Saving the console's history into a data directory that cannot take it (here: not there yet, as a
/// full disk refuses the file) logs once when it starts failing and once when it works again.
final class ConsoleHistorySaverTests: XCTestCase {
    func testRepeatedFailuresAreLoggedOnceAndTheRecoveryOnce() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-saver-\(UUID().uuidString)").path
        addTeardownBlock { try? FileManager.default.removeItem(atPath: directory) }
        let lines = CapturedLines()
        let saver = ConsoleHistorySaver(dataDirectory: directory, logger: lines.logger)
        let history = ConsoleHistoryFile(writtenAt: 1, topics: [:], sinks: [:], changes: [])

        for _ in 1...5 { saver.save(history) }
        XCTAssertEqual(lines.entries.map(\.level), [.warning], "\(lines.entries)")
        XCTAssertTrue(lines.entries[0].message.contains("cannot save the console's history"), "\(lines.entries)")

        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        for _ in 1...3 { saver.save(history) }
        XCTAssertEqual(lines.entries.map(\.level), [.warning, .info], "\(lines.entries)")
        XCTAssertTrue(lines.entries[1].message.contains("saved again"), "\(lines.entries)")
        XCTAssertTrue(FileManager.default.fileExists(atPath: ConsoleHistoryFile.path(dataDirectory: directory)))

        // Failing anew is a new state change: logged once more.
        try FileManager.default.removeItem(atPath: directory)
        for _ in 1...3 { saver.save(history) }
        XCTAssertEqual(lines.entries.map(\.level), [.warning, .info, .warning], "\(lines.entries)")
    }
}

/// What a logger logs, for assertions.
private final class CapturedLines: @unchecked Sendable {
    struct Entry { var level: Logger.Level; var message: String }
    private let lock = NSLock()
    private var stored: [Entry] = []

    var entries: [Entry] { lock.lock(); defer { lock.unlock() }; return stored }
    func append(_ entry: Entry) { lock.lock(); stored.append(entry); lock.unlock() }

    var logger: Logger {
        var logger = Logger(label: "sluice-runtime-tests") { _ in Handler(lines: self) }
        logger.logLevel = .trace
        return logger
    }

    private struct Handler: LogHandler {
        let lines: CapturedLines
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .trace
        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }
        func log(level: Logger.Level, message: Logger.Message, metadata: Logger.Metadata?, source: String,
                 file: String, function: String, line: UInt) {
            lines.append(Entry(level: level, message: "\(message)"))
        }
    }
}

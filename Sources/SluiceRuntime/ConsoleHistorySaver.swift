import Foundation
import Logging

/// Saves the console's history every few seconds. A failure (a full disk) is logged when saving starts
/// failing and again when it works once more, not at every attempt (it would fill the log every 5 s).
final class ConsoleHistorySaver: @unchecked Sendable {
    private let dataDirectory: String
    private let logger: Logger
    private let lock = NSLock()
    private var failing = false

    init(dataDirectory: String, logger: Logger) {
        self.dataDirectory = dataDirectory
        self.logger = logger
    }

    func save(_ history: ConsoleHistoryFile) {
        lock.lock()
        defer { lock.unlock() }
        do {
            try history.write(dataDirectory: dataDirectory)
            if failing {
                failing = false
                logger.info("the console's history is saved again", metadata: ["file": "\(ConsoleHistoryFile.path(dataDirectory: dataDirectory))"])
            }
        } catch {
            guard !failing else { return }
            failing = true
            logger.warning("cannot save the console's history; retrying every \(Console.saveEverySeconds) s, logged again when it works",
                           metadata: ["reason": "\(error)"])
        }
    }
}

import Foundation
import SluiceKit

/// `<data_dir>/status.json`: the running daemon's view of its connectors, rewritten every second so
/// `sluice status` (another process) can tell running from retrying and show the last error.
public struct StatusFile: Codable, Sendable {
    public struct Connector: Codable, Sendable {
        public var kind: String
        public var name: String
        /// starting, running, retrying, failed or stopped.
        public var state: String
        public var error: String?
        public var since: Date
        /// The last retry or failure reason, kept after the connector recovers, and when it was reported.
        public var lastError: String? = nil
        public var lastErrorAt: Date? = nil
    }

    public struct Position: Codable, Sendable {
        public var sink: String
        public var topic: String
        public var offset: UInt64
        public var lsn: String
        public var commitTime: Int64
    }

    public var pid: Int32
    public var updatedAt: Date
    public var connectors: [Connector]
    /// Each sink's last applied position as the daemon knows it (also while its target is down).
    public var positions: [Position]? = []
    /// Sinks whose stored positions the daemon has read: for them `positions` is the whole truth.
    public var knownSinks: [String]? = []
    /// The last 50 state changes of the connectors, oldest first.
    public var changes: [StateChange]? = []

    public static func path(dataDirectory: String) -> String { DataDirectory(dataDirectory).statusFile }

    public static func read(dataDirectory: String) -> StatusFile? {
        guard let data = FileManager.default.contents(atPath: path(dataDirectory: dataDirectory)) else { return nil }
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .custom { decoder in
            let text = try decoder.singleValueContainer().decode(String.self)
            // Milliseconds, as the console shows them; files written before had whole seconds.
            guard let date = StatusJSON.parseTimestamp(text) else {
                throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: "not a date: \(text)"))
            }
            return date
        }
        return try? decoder.decode(StatusFile.self, from: data)
    }

    private static let writing = NSLock()

    /// False when the file could not be written (a full disk, most likely).
    @discardableResult
    func write(dataDirectory: String) -> Bool {
        Self.writing.lock()
        defer { Self.writing.unlock() }
        let encoder = JSONEncoder()
        encoder.dateEncodingStrategy = .custom { date, encoder in
            var container = encoder.singleValueContainer()
            try container.encode(StatusJSON.timestamp(date))
        }
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        guard let data = try? encoder.encode(self) else { return false }
        let path = Self.path(dataDirectory: dataDirectory)
        let temp = path + ".tmp"
        guard FileManager.default.createFile(atPath: temp, contents: data) else {
            unlink(temp)
            return false
        }
        return rename(temp, path) == 0
    }

    /// Rewritten every second by the daemon: older than this, what it says may no longer hold.
    public static let staleAfter: TimeInterval = 10

    public func connector(_ kind: String, _ name: String) -> Connector? {
        connectors.first { $0.kind == kind && $0.name == name }
    }
}

extension ConnectorHealth {
    func snapshot(progress: [SinkProgress] = []) -> StatusFile {
        StatusFile(pid: getpid(), updatedAt: Date(), connectors: all.map { entry in
            let last = lastError(entry.kind, entry.name)
            return StatusFile.Connector(kind: entry.kind, name: entry.name, state: entry.state.label, error: entry.state.reason,
                                        since: entry.since, lastError: last?.reason, lastErrorAt: last?.at)
        }, positions: progress.flatMap { sink in
            sink.allPositions.map {
                StatusFile.Position(sink: sink.sink, topic: $0.topic, offset: $0.offset, lsn: $0.lsn.description,
                                    commitTime: $0.commitTime)
            }
        }, knownSinks: progress.filter(\.knowsPositions).map(\.sink), changes: changes)
    }
}

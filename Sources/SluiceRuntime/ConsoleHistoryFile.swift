import Foundation
import Logging

/// `<data_dir>/console-history.json`: the console's bounded histories (each topic's and sink's last
/// 15 minutes, the last 50 state changes), rewritten every few seconds so that a restarted daemon —
/// also after a SIGKILL — shows the charts from before. Written to a temporary file, fsync'd and
/// renamed (0600); a damaged or truncated file is set aside with a warning and the console starts empty.
///
/// Format (JSON): `{"version": 1, "written_at": <unix s>, "topics": {name: [[at, events, events/s], …]},
/// "sinks": {name: [[at, lag events, lag seconds, events/s], …]}, "changes": [{at, kind, name, from, to, reason}, …]}`,
/// samples oldest first, `at` in unix seconds.
struct ConsoleHistoryFile: Codable {
    static let currentVersion = 1
    /// Larger than anything the daemon writes (a few hundred topics and sinks): refused unread.
    static let maxBytes = 16 << 20

    var version = currentVersion
    var writtenAt: Double
    var topics: [String: [Console.TopicSample]]
    var sinks: [String: [Console.SinkSample]]
    var changes: [StateChange]

    enum CodingKeys: String, CodingKey {
        case version, writtenAt = "written_at", topics, sinks, changes
    }

    static func path(dataDirectory: String) -> String { dataDirectory + "/console-history.json" }

    /// The file's contents, or nil (saying why in the log) when there is none or it cannot be trusted.
    static func read(dataDirectory: String, logger: Logger) -> ConsoleHistoryFile? {
        let path = path(dataDirectory: dataDirectory)
        guard FileManager.default.fileExists(atPath: path) else { return nil }
        let problem: String
        do {
            let size = (try FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? 0
            guard size <= maxBytes else { throw HistoryDamage("\(size) bytes, more than the \(maxBytes >> 20) MiB this daemon writes") }
            let decoder = JSONDecoder()
            decoder.dateDecodingStrategy = .secondsSince1970
            let file = try decoder.decode(ConsoleHistoryFile.self, from: try Data(contentsOf: URL(fileURLWithPath: path)))
            guard file.version == currentVersion else { throw HistoryDamage("version \(file.version), not \(currentVersion)") }
            return file
        } catch let damage as HistoryDamage {
            problem = damage.reason
        } catch let error as DecodingError {
            problem = Self.describe(error)
        } catch {
            problem = "\(error)"
        }
        let aside = path + ".damaged"
        _ = try? FileManager.default.removeItem(atPath: aside)
        let moved = rename(path, aside) == 0
        logger.warning("the console's history file is damaged; the console's charts start empty", metadata: [
            "file": "\(path)", "problem": "\(problem)", "kept_as": "\(moved ? aside : "-")",
        ])
        return nil
    }

    private struct HistoryDamage: Error { var reason: String; init(_ reason: String) { self.reason = reason } }

    private static func describe(_ error: DecodingError) -> String {
        switch error {
        case let .dataCorrupted(context): return "not JSON (truncated?): \(context.debugDescription)"
        case let .keyNotFound(key, _): return "no \(key.stringValue)"
        case let .typeMismatch(_, context), let .valueNotFound(_, context):
            return "unexpected value at \(context.codingPath.map(\.stringValue).joined(separator: ".")): \(context.debugDescription)"
        @unknown default: return "\(error)"
        }
    }

    /// Replaces the file atomically: a crash at any point leaves the old file or the new one.
    func write(dataDirectory: String) throws {
        let encoder = JSONEncoder()
        encoder.dateEncodingStrategy = .secondsSince1970
        let data = try encoder.encode(self)
        let path = Self.path(dataDirectory: dataDirectory)
        let temp = path + ".tmp"
        let fd = open(temp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw CocoaError(.fileWriteUnknown, userInfo: [NSFilePathErrorKey: temp]) }
        let handle = FileHandle(fileDescriptor: fd, closeOnDealloc: true)
        try handle.write(contentsOf: data)
        try handle.synchronize()
        try handle.close()
        guard rename(temp, path) == 0 else {
            throw CocoaError(.fileWriteUnknown, userInfo: [NSFilePathErrorKey: path])
        }
    }
}

/// As precise as `/api/status` shows them (0.1 s, 3 decimals): a sample takes about 25 bytes.
private func rounded(_ value: Double, _ scale: Double) -> Double { value.isFinite ? (value * scale).rounded() / scale : 0 }

extension Console.TopicSample: Codable {
    init(from decoder: any Decoder) throws {
        var values = try decoder.unkeyedContainer()
        self.init(at: try values.decode(Double.self), events: try values.decode(UInt64.self), rate: try values.decode(Double.self))
        guard values.isAtEnd else { throw DecodingError.dataCorruptedError(in: values, debugDescription: "a topic sample has 3 numbers") }
    }

    func encode(to encoder: any Encoder) throws {
        var values = encoder.unkeyedContainer()
        try values.encode(rounded(at, 10))
        try values.encode(events)
        try values.encode(rounded(rate, 1000))
    }
}

extension Console.SinkSample: Codable {
    init(from decoder: any Decoder) throws {
        var values = try decoder.unkeyedContainer()
        self.init(at: try values.decode(Double.self), lagEvents: try values.decode(UInt64.self),
                  lagSeconds: try values.decode(Double.self), rate: try values.decode(Double.self))
        guard values.isAtEnd else { throw DecodingError.dataCorruptedError(in: values, debugDescription: "a sink sample has 4 numbers") }
    }

    func encode(to encoder: any Encoder) throws {
        var values = encoder.unkeyedContainer()
        try values.encode(rounded(at, 10))
        try values.encode(lagEvents)
        try values.encode(rounded(lagSeconds, 1000))
        try values.encode(rounded(rate, 1000))
    }
}

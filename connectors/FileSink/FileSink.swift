import Foundation
import Logging
import SluiceKit

/// Writes topics as JSON lines (`type: file`, `path: DIR`): one file series per topic,
/// `<topic>.<sequence>.jsonl`, each line the object `sluice tail --json` prints, begin and commit
/// markers included. A new file starts past `max_file_bytes` (at a transaction boundary).
/// With `format: debezium` every line is a Debezium event: each change's envelope, framed by Debezium's
/// BEGIN and END transaction events (the END event also carries the position, in `sluice`).
///
/// Exactly once: a batch is flushed and fsync'd before it is acknowledged; on open, the newest file is
/// cut back to its last complete commit line, whose offset is the stored position.
public final class FileSink: Sink {
    public static let typeName = "file"

    let name: String
    let directory: String
    let maxFileBytes: UInt64
    let format: ChangeFormat
    private var files: [String: TopicFile] = [:]
    private var renderers: TopicRenderers
    private var logger = Logger(label: "sluice")

    public init(config: ConnectorConfig) throws {
        name = config.name
        directory = config.resolvePath(try config.string("path"))
        maxFileBytes = try config.bytes("max_file_bytes", default: 64 << 20, minimum: 1 << 10)
        format = try ChangeFormat.read(config)
        renderers = TopicRenderers(format: format)
        try config.rejectUnknownKeys()
    }

    public func open(context: SinkContext) throws -> [String: SinkPosition] {
        logger = context.logger
        files.removeAll()
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            var positions: [String: SinkPosition] = [:]
            for topic in TopicFile.topics(in: directory) {
                let file = try TopicFile(directory: directory, topic: topic, logger: logger)
                files[topic] = file
                if let position = file.position { positions[topic] = position }
            }
            return positions
        } catch let error as ConnectorError {
            throw error
        } catch {
            throw ConnectorError.misconfigured("sink \(name): cannot use \(directory): \(SystemReason.of(error))")
        }
    }

    private func file(_ topic: String) throws -> TopicFile {
        if let file = files[topic] { return file }
        let file = try TopicFile(directory: directory, topic: topic, logger: logger)
        files[topic] = file
        return file
    }

    public func beginBatch() throws {}

    public func beginTransaction(_ begin: BeginRecord, topic: String, offset: UInt64) throws {
        let line = renderers.render(topic) { format == .debezium ? $0.debeziumBegin(begin) : $0.begin(begin, offset: offset) }
        try guarded { try file(topic).append(line) }
    }

    public func apply(_ change: Change) throws {
        let lines = renderers.events(change)
        try guarded {
            let file = try file(change.topic)
            for line in lines { try file.append(line) }
        }
    }

    public func commitTransaction(_ commit: CommitRecord, position: SinkPosition) throws {
        try guarded {
            let file = try file(position.topic)
            try file.append(renderers.render(position.topic) {
                format == .debezium ? $0.debeziumEnd(commit, offset: position.offset) : $0.commit(commit, offset: position.offset)
            })
            file.position = position
        }
    }

    public func commitBatch(positions: [SinkPosition]) throws {
        try guarded {
            for file in files.values { try file.sync(rotateBeyond: maxFileBytes) }
        }
    }

    public func rollbackBatch() {
        for file in files.values { try? file.discardUnsynced() }
    }

    public func close() {
        rollbackBatch()
        files.removeAll()
    }

    public func readPositions() throws -> [String: SinkPosition]? {
        var positions: [String: SinkPosition] = [:]
        for topic in TopicFile.topics(in: directory) {
            if let position = try TopicFile.lastCommit(directory: directory, topic: topic) { positions[topic] = position }
        }
        return positions.isEmpty ? nil : positions
    }

    public func check(logger: Logger) -> [CheckFinding] {
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory) {
            guard isDirectory.boolValue, FileManager.default.isWritableFile(atPath: directory) else {
                return [CheckFinding(.error, "sink \(name)", "\(directory) is not a writable directory")]
            }
            return [CheckFinding(.ok, "sink \(name)", "writes JSON lines to \(directory)")]
        }
        return [CheckFinding(.ok, "sink \(name)", "\(directory) will be created")]
    }

    /// Disk full or an I/O error may pass; retry.
    private func guarded<T>(_ body: () throws -> T) throws -> T {
        do {
            return try body()
        } catch let error as ConnectorError {
            throw error
        } catch {
            throw ConnectorError.transient("sink \(name): \(error)")
        }
    }
}

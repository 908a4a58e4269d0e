import Foundation
import SluiceKit

/// Counts the changes applied to each table, by operation (`type: counter`, `path: counts.json`).
///
/// Exactly once: the counts and the positions are one JSON file, replaced atomically (write a
/// temporary file, fsync, rename) when a batch commits; `open` reads the positions back from it.
public final class CounterSink: Sink {
    public static let typeName = "counter"

    struct Position: Codable { var offset: UInt64; var lsn: LSN; var commitTime: Int64 }
    struct State: Codable {
        var counts: [String: [String: Int]] = [:]      // "public.orders" → "insert" → 3
        var positions: [String: Position] = [:]        // topic → its last applied commit
    }

    let path: String
    private var stored = State()                        // what the file holds
    private var batch = State()                         // stored + the open batch

    public init(config: ConnectorConfig) throws {
        path = config.resolvePath(try config.string("path"))
        try config.rejectUnknownKeys()                  // a misspelt key is an error
    }

    public func open(context: SinkContext) throws -> [String: SinkPosition] {
        stored = try load() ?? State()
        return Self.positions(stored)
    }

    /// For `sluice status`: the stored positions, without opening the sink.
    public func readPositions() throws -> [String: SinkPosition]? { try load().map(Self.positions) }

    private func load() throws -> State? {
        guard let data = FileManager.default.contents(atPath: path) else { return nil }
        return try JSONDecoder().decode(State.self, from: data)
    }

    private static func positions(_ state: State) -> [String: SinkPosition] {
        state.positions.reduce(into: [:]) { result, entry in
            result[entry.key] = SinkPosition(topic: entry.key, offset: entry.value.offset, lsn: entry.value.lsn,
                                             commitTime: entry.value.commitTime)
        }
    }

    public func beginBatch() throws { batch = stored }

    public func apply(_ change: Change) throws {
        batch.counts[change.relation.qualifiedName, default: [:]][change.operation.name, default: 0] += 1
    }

    public func commitBatch(positions: [SinkPosition]) throws {
        for position in positions {
            batch.positions[position.topic] = Position(offset: position.offset, lsn: position.lsn, commitTime: position.commitTime)
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        let temporary = path + ".tmp"
        guard FileManager.default.createFile(atPath: temporary, contents: try encoder.encode(batch)),
              let file = FileHandle(forUpdatingAtPath: temporary) else {
            throw ConnectorError.transient("cannot write \(temporary)")   // retried with backoff
        }
        try file.synchronize()
        try file.close()
        guard rename(temporary, path) == 0 else { throw ConnectorError.transient("cannot replace \(path)") }
        stored = batch
    }

    public func rollbackBatch() { batch = stored }
    public func close() {}
}

import Foundation
import SluiceKit

/// What the source remembers about its database between runs, in `<data_dir>/sources/<name>/state.json`.
struct SourceState: Codable, Equatable {
    /// IDENTIFY_SYSTEM's system identifier: a topic belongs to one cluster.
    var systemID: String?
    /// Sluice created the slot, so it may drop and recreate it to restart an interrupted snapshot.
    var slotCreated: Bool = false
    /// Sluice created the publication, so it may add configured tables to it.
    var publicationCreated: Bool = false
    /// Set by a Sluice that records ``confirmedBeyond`` before confirming past the topic: only then
    /// does a slot ahead of the topic prove that the topic lost transactions.
    var tracksConfirms: Bool? = nil
    /// The furthest LSN confirmed past the topic's last commit marker (idle stretches with no captured
    /// change, heartbeats), and the offset of that marker; recorded before the slot is told.
    var confirmedBeyond: ConfirmedBeyond? = nil

    struct ConfirmedBeyond: Codable, Equatable {
        var offset: UInt64?
        var lsn: UInt64
    }

    static func load(from directory: String) throws -> SourceState {
        let path = directory + "/state.json"
        guard FileManager.default.fileExists(atPath: path) else { return SourceState() }
        let data = try Data(contentsOf: URL(fileURLWithPath: path))
        return try JSONDecoder().decode(SourceState.self, from: data)
    }

    /// Written atomically (temp file, fsync, rename).
    func save(to directory: String) throws {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        let data = try encoder.encode(self)
        try AtomicFile.write(data, to: directory + "/state.json")
    }
}

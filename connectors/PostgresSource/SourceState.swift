import Foundation
import SluiceKit

/// What the source remembers about its database between runs, in `<data_dir>/sources/<name>/state.json`.
struct SourceState: Codable, Equatable {
    /// IDENTIFY_SYSTEM's system identifier: a topic belongs to one cluster.
    var systemID: String?
    /// Sluice created the slot, so it may drop and recreate it to restart an interrupted snapshot.
    var slotCreated: Bool = false
    /// The consistent point of the slot Sluice created, and whether its initial snapshot became durable
    /// in the topic: once either the snapshot was durable or the slot confirmed past that point, an
    /// empty topic was lost (deleted), not interrupted.
    var slotConsistentPoint: UInt64? = nil
    var initialSnapshotDurable: Bool? = nil
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

    /// A file that is there but does not decode was damaged (its writes are atomic): never taken for a
    /// fresh start, which would forget which cluster the topic belongs to.
    static func load(from directory: String) throws -> SourceState {
        try BackfillFiles.readExisting(SourceState.self, directory: directory, name: "state.json", fix: damagedFix) ?? SourceState()
    }

    static let damagedFix = """
        it records which cluster the topic belongs to and what Sluice created (the slot, the publication). Restore it \
        from a copy, or delete it to go on with the same slot and topic (Sluice then takes the slot and the publication \
        for someone else's: it will not drop the slot to restart an interrupted snapshot, nor add tables to the publication)
        """

    /// Written atomically (temp file, fsync, rename).
    func save(to directory: String) throws {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        let data = try encoder.encode(self)
        try AtomicFile.write(data, to: directory + "/state.json")
    }
}

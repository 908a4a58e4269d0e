import Foundation
import SluiceWire

/// Catch-up capture (`catch_up_threshold`, docs/catch-up.md): a slot far behind read through
/// `pg_logical_slot_peek_binary_changes` against pg_recvlogical on an identical slot, and against
/// Sluice streaming the same slot contents (`catch_up_threshold: off`), in the regimes where it pays
/// and where it may not.
extension Bench {
    /// The source lines of a catch-up side: quick mode's WAL is below the 64MB default, so it lowers it.
    private var catchUpOn: [String] { events < 1_000_000 ? ["catch_up_threshold: 1MB"] : [] }
    private static let streamingOnly = ["catch_up_threshold: off"]

    /// `events` rows in 100-row transactions written while the daemon is stopped, then drained. Each
    /// side runs twice (reference, Sluice, Sluice, reference; means), as the capture case does.
    func catchUp() throws {
        let url = try Workload.database("catch_up", on: source)
        // Slot names are the cluster's: each case names its own.
        let slots = ["catch_up_reference_a", "catch_up_sluice_a", "catch_up_sluice_b", "catch_up_reference_b", "catch_up_streaming"]
        for slot in slots { try PGConnection(url: url).execute("SELECT pg_create_logical_replication_slot('\(slot)', 'pgoutput')") }
        try Workload.load(url: url, total: events, perTransaction: 100)
        let end = try Workload.flushedEnd(url: url)
        let referenceA = try recvlogical(url: url, slot: "catch_up_reference_a", end: end)
        let oursA = try captureRun("catch_up_a", url: url, slot: "catch_up_sluice_a", end: end, sourceExtra: catchUpOn)
        let oursB = try captureRun("catch_up_b", url: url, slot: "catch_up_sluice_b", end: end, sourceExtra: catchUpOn)
        let referenceB = try recvlogical(url: url, slot: "catch_up_reference_b", end: end)
        let streaming = try captureRun("catch_up_streaming", url: url, slot: "catch_up_streaming", end: end, sourceExtra: Self.streamingOnly)
        results.append(Result(name: "catch-up: \(events) rows written while stopped", events: events,
                               seconds: (oursA.0 + oursB.0) / 2, reference: (referenceA.0 + referenceB.0) / 2,
                               referenceName: "pg_recvlogical", peakRSSMB: max(mb(oursA.1), mb(oursB.1)),
                               cpuSeconds: (oursA.1.cpuSeconds + oursB.1.cpuSeconds) / 2,
                               note: String(format: "mean of 2 runs each (Sluice %.2f/%.2f s, pg_recvlogical %.2f/%.2f s); Sluice streaming the same slot: %.2f s",
                                            oursA.0, oursB.0, referenceA.0, referenceB.0, streaming.0)))
    }

    /// The regimes where catch-up may not pay: one transaction of `events` rows (the function holds the
    /// whole transaction before sending its first row), and a restart_lsn pinned by a transaction left
    /// open since before the load (every batch decodes again from there).
    func catchUpCosts() throws {
        // Slot names are the cluster's, not the database's.
        let huge = try Workload.database("catch_up_huge", on: source)
        for slot in ["huge_reference", "huge_sluice", "huge_streaming"] {
            try PGConnection(url: huge).execute("SELECT pg_create_logical_replication_slot('\(slot)', 'pgoutput')")
        }
        try Workload.load(url: huge, total: events, perTransaction: events)
        var end = try Workload.flushedEnd(url: huge)
        var reference = try recvlogical(url: huge, slot: "huge_reference", end: end)
        var ours = try captureRun("catch_up_huge", url: huge, slot: "huge_sluice", end: end, sourceExtra: catchUpOn)
        var streaming = try captureRun("catch_up_huge_streaming", url: huge, slot: "huge_streaming", end: end, sourceExtra: Self.streamingOnly)
        results.append(Result(name: "catch-up, one \(events)-row transaction", events: events, seconds: ours.0,
                               reference: reference.0, referenceName: "pg_recvlogical", peakRSSMB: mb(ours.1),
                               cpuSeconds: ours.1.cpuSeconds,
                               note: String(format: "Sluice streaming the same slot: %.2f s, %.0f MB", streaming.0, mb(streaming.1))))

        let pinned = try Workload.database("catch_up_pinned", on: source)
        for slot in ["pinned_reference", "pinned_sluice", "pinned_streaming"] {
            try PGConnection(url: pinned).execute("SELECT pg_create_logical_replication_slot('\(slot)', 'pgoutput')")
        }
        let holder = try PGConnection(url: pinned)
        try holder.execute("BEGIN; SELECT txid_current()")
        try Workload.load(url: pinned, total: events, perTransaction: 100)
        end = try Workload.flushedEnd(url: pinned)
        reference = try recvlogical(url: pinned, slot: "pinned_reference", end: end)
        ours = try captureRun("catch_up_pinned", url: pinned, slot: "pinned_sluice", end: end, sourceExtra: catchUpOn)
        streaming = try captureRun("catch_up_pinned_streaming", url: pinned, slot: "pinned_streaming", end: end, sourceExtra: Self.streamingOnly)
        try holder.execute("ROLLBACK")
        results.append(Result(name: "catch-up, restart_lsn pinned by an open transaction", events: events, seconds: ours.0,
                               reference: reference.0, referenceName: "pg_recvlogical", peakRSSMB: mb(ours.1),
                               cpuSeconds: ours.1.cpuSeconds,
                               note: String(format: "Sluice streaming the same slot: %.2f s", streaming.0)))
    }
}

import Foundation
import SluiceKit
import SluiceWire

/// Waits until a sink has applied every source transaction that committed before a source position
/// (an LSN read right after a REPEATABLE READ snapshot was taken), so what the target shows includes
/// everything the snapshot shows.
///
/// The sink stores the commit LSN of the last transaction it applied, and applies in commit order:
/// once that reaches the position, everything before it is applied. When the source is quiet no
/// transaction comes after the position; then the slot's confirmed flush LSN passing it means the
/// topic holds everything before it, and the sink is far enough once it reaches the topic's end as
/// read at that moment.
final class SinkCatchUp {
    let sink: String
    let topic: String
    let target: TargetStore
    let source: PGConnection
    let slot: String
    let topicEnd: () -> UInt64?
    let timeout: TimeInterval
    /// The highest position the sink is known to have passed: sink positions only grow, so a later
    /// snapshot at or before it needs no wait (on a quiet source every snapshot has the same position).
    private var passed: LSN?

    init(sink: String, topic: String, target: TargetStore, source: PGConnection, slot: String,
         topicEnd: @escaping () -> UInt64?, timeout: TimeInterval) {
        self.sink = sink
        self.topic = topic
        self.target = target
        self.source = source
        self.slot = slot
        self.topicEnd = topicEnd
        self.timeout = timeout
    }

    func wait(past lsn: LSN) throws {
        if let passed, passed >= lsn { return }
        try waitForSink(past: lsn)
        passed = max(passed ?? lsn, lsn)
    }

    private func waitForSink(past lsn: LSN) throws {
        let deadline = Date().addingTimeInterval(timeout)
        var neededOffset: UInt64?
        var reachedTopicEnd = false
        while true {
            let position = try target.position(sink: sink, topic: topic)
            if let position, position.lsn >= lsn { return }
            if neededOffset == nil && !reachedTopicEnd {
                let confirmed = try source.execute("SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1", [slot])
                    .string(0, 0).flatMap { LSN($0) }
                if let confirmed, confirmed >= lsn {
                    if let end = topicEnd() { neededOffset = end } else { reachedTopicEnd = true }
                }
            }
            if reachedTopicEnd { return }
            if let neededOffset, let position, position.offset >= neededOffset { return }
            guard Date() < deadline else {
                throw VerifyFailure("""
                    sink \(sink) has not applied topic \(topic) up to source LSN \(lsn) within \(Int(timeout)) s \
                    (it is at \(position.map { "offset \($0.offset), LSN \($0.lsn)" } ?? "no position")); \
                    check that `sluice run` runs and `sluice status` shows the sink catching up
                    """)
            }
            usleep(20_000)
        }
    }
}

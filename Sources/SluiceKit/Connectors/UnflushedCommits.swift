/// Positions a sink committed to a target that acknowledges a commit before it is durable
/// (PostgreSQL with `synchronous_commit = off`), keyed by the target's WAL position of each commit.
///
/// A target crash loses such a commit together with the positions stored in it, and the runtime then
/// applies those transactions again from the topic: exactly once still holds, provided the topic kept
/// them. So only ``durable`` — positions whose commit the target reported flushed — may count for
/// retention. Bounded: past `limit` commits the newest entry absorbs the next one (its positions then
/// wait for the later, larger WAL position: later, never early).
public struct UnflushedCommits: Sendable {
    public static let limit = 1024

    private var pending: [(walEnd: LSN, positions: [SinkPosition])] = []
    /// Per topic, the last position whose commit the target has flushed.
    public private(set) var durable: [String: SinkPosition] = [:]

    public init() {}

    public var isEmpty: Bool { pending.isEmpty }

    /// `positions` were committed by a commit whose WAL ends at or before `walEnd`.
    public mutating func committed(_ positions: [SinkPosition], walEnd: LSN) {
        guard !positions.isEmpty else { return }
        // Never before an earlier commit's end (which a target restored behind our back could report).
        let walEnd = max(walEnd, pending.last?.walEnd ?? walEnd)
        if pending.count >= Self.limit {
            pending[pending.count - 1].walEnd = walEnd
            pending[pending.count - 1].positions += positions
        } else {
            pending.append((walEnd, positions))
        }
    }

    /// The target reports its WAL flushed through `flushed`: commits ending there or before are durable.
    public mutating func flushed(through flushed: LSN) {
        var done = 0
        for entry in pending {
            guard entry.walEnd <= flushed else { break }
            for position in entry.positions { durable[position.topic] = position }
            done += 1
        }
        pending.removeFirst(done)
    }

    /// Forgets commits not known flushed (after the connection was lost: whether they survived is
    /// learned from the positions the target holds when it is opened again). Durable positions stay.
    public mutating func reset() {
        pending.removeAll()
    }
}

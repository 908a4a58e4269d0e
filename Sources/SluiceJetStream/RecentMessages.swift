/// The messages this process's writer had acknowledged last, in sequence order, for this process's
/// readers: a sink beside its source takes what was just stored from memory instead of asking the
/// stream's nodes for it again (a pull request and a delivery per message, whose CPU the servers
/// then lack for replicating). Only acknowledged messages are kept, with the sequence the server
/// stored them at, so what a reader gets here is what the stream holds. Bounded in count and bytes:
/// a reader further behind reads through its consumer, as a reader in another process does.
struct RecentMessages {
    struct Entry: Equatable {
        var sequence: UInt64
        var kind: MessageBatch.Kind
        var body: [UInt8]
    }

    enum Lookup: Equatable {
        /// The first batch at or after the sequence asked for (chunks before it are here too).
        case found(Entry)
        /// Nothing acknowledged from that sequence on holds a batch yet.
        case notYet
        /// The sequence is older than what is kept (or another process's): ask the stream.
        case missing
    }

    let maxCount: Int
    let maxBytes: Int
    /// The sequence of the first message kept, or of the next one expected when none is.
    private(set) var start: UInt64 = 0
    private var entries: [Entry] = []
    private var head = 0
    private(set) var bytes = 0

    init(maxCount: Int, maxBytes: Int) {
        self.maxCount = maxCount
        self.maxBytes = maxBytes
    }

    var count: Int { entries.count - head }
    private var end: UInt64 { start + UInt64(count) }

    /// Forgets everything; the next message kept is `next` (nil: whichever comes).
    mutating func reset(next: UInt64? = nil) {
        entries.removeAll(keepingCapacity: true)
        head = 0
        bytes = 0
        start = next ?? 0
    }

    /// Keeps an acknowledged message. One that does not follow the last kept (a sequence another
    /// message took, the damage note) starts the window anew at it.
    mutating func append(_ entry: Entry) {
        if entry.sequence != end { reset(next: entry.sequence) }
        entries.append(entry)
        bytes += entry.body.count
        while count > 1 && (count > maxCount || bytes > maxBytes) {
            bytes -= entries[head].body.count
            entries[head].body = []
            head += 1
            start += 1
        }
        if head > 64 && head * 2 > entries.count {
            entries.removeFirst(head)
            head = 0
        }
    }

    func message(at sequence: UInt64) -> Entry? {
        guard sequence >= start, sequence < end else { return nil }
        return entries[head + Int(sequence - start)]
    }

    /// The first batch at or after `sequence`, for a reader whose next message is `sequence`.
    func batch(from sequence: UInt64) -> Lookup {
        guard start > 0, sequence >= start else { return .missing }
        var index = sequence
        while index < end {
            let entry = entries[head + Int(index - start)]
            if entry.kind == .batch { return .found(entry) }
            index += 1
        }
        return .notYet
    }
}

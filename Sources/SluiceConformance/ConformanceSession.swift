import Foundation
import SluiceKit

/// One run of ``SinkConformance``: the steps its documentation lists, and the failures found.
final class ConformanceSession {
    let check: SinkConformance
    let topics: WorkloadTopics
    private(set) var failures: [SinkConformance.Failure] = []
    /// The step running, for failure messages.
    private var step = "opening an empty target"

    init(check: SinkConformance, topics: WorkloadTopics) {
        self.check = check
        self.topics = topics
    }

    private var a: String { Workload.topicA }
    private var b: String { Workload.topicB }

    func fail(_ kind: SinkConformance.Failure.Check, _ message: String) {
        failures.append(SinkConformance.Failure(check: kind, step: step, message: message))
    }

    private func driver(_ sink: any Sink) -> SinkDriver { SinkDriver(sink: sink, name: check.name, logger: check.logger) }

    /// A feed of `topic` from `positions` up to the end of its first `count` transactions.
    private func feed(_ topic: String, from positions: [String: SinkPosition], through count: Int) throws -> TopicFeed {
        let last = topics.indices(of: topic)[count - 1]
        return try TopicFeed(topic: topics.topic(topic), from: positions[topic], limit: topics.commits[last].offset + 1)
    }

    func run() throws {
        // 1. An empty target stores no position.
        var sink = try check.makeSink()
        var positions = try driver(sink).open()
        checkPositions(positions, applied: [a: 0, b: 0], as: .positions)

        // 2. A crash inside the very first batch leaves nothing, and the same instance opens again.
        step = "crash in the first batch (1 whole transaction and 2 changes of the next, then rollbackBatch and close), then open"
        try driver(sink).crashInBatch(try feed(a, from: positions, through: 2), at: CrashPoint(commits: 1, changes: 2))
        positions = try driver(sink).open()
        checkPositions(positions, applied: [a: 0, b: 0], as: .replay)
        try checkRows(applied: [a: 0, b: 0], as: .replay)

        // 3. One batch of three transactions, one of one; positions survive a new instance.
        step = "one batch of transactions 1-3 of \(a) and one of transaction 1 of \(b), close, then a new instance"
        try driver(sink).applyBatch(try feed(a, from: positions, through: 3), maxBatchEvents: .max)
        try driver(sink).applyBatch(try feed(b, from: positions, through: 1), maxBatchEvents: .max)
        sink.close()
        sink = try check.makeSink()
        try checkReadPositions(sink, applied: [a: 3, b: 1])
        positions = try driver(sink).open()
        checkPositions(positions, applied: [a: 3, b: 1], as: .positions)
        try checkRows(applied: [a: 3, b: 1], as: .batching)

        // 4. A crash after a whole transaction and half of the next; a new instance resumes.
        step = "crash in a later batch (transaction 4 whole, 280 of the 305 changes of transaction 5, then rollbackBatch and close), then a new instance"
        try driver(sink).crashInBatch(try feed(a, from: positions, through: 5), at: CrashPoint(commits: 1, changes: 280))
        sink = try check.makeSink()
        positions = try driver(sink).open()
        checkPositions(positions, applied: [a: 3, b: 1], as: .replay)
        try checkRows(applied: [a: 3, b: 1], as: .replay)
        step = "re-applying transactions 4 and 5 of \(a) after the crash, one per batch"
        try driver(sink).applyAll([try feed(a, from: positions, through: 5)], maxBatchEvents: 1)
        try checkRows(applied: [a: 5, b: 1], as: .replay)

        // 5. The rest, topics in turn; then everything is there after close and open.
        step = "applying the remaining transactions (topics in turn, small batches), close, then open"
        let rest = [try feed(a, from: [a: topics.commitPosition(a, 5)], through: topics.indices(of: a).count),
                    try feed(b, from: positions, through: topics.indices(of: b).count)]
        try driver(sink).applyAll(rest, maxBatchEvents: 1)
        sink.close()
        positions = try driver(sink).open()
        let everything = [a: topics.indices(of: a).count, b: topics.indices(of: b).count]
        checkPositions(positions, applied: everything, as: .positions)
        try checkRows(applied: everything, as: .content)
        step = "probe on an idle sink, then close"
        try driver(sink).call("probe") { try sink.probe() }
        sink.close()
    }

    // MARK: Checks

    private func checkPositions(_ positions: [String: SinkPosition], applied: [String: Int], as kind: SinkConformance.Failure.Check,
                                call: String = "open") {
        let expected = topics.positions(applied: applied)
        for topic in [a, b] {
            let got = positions[topic]
            guard let want = expected[topic] else {
                if let got { fail(kind, "\(call) returned offset \(got.offset) for topic \(topic), which has no committed batch") }
                continue
            }
            guard let got else {
                fail(kind, "\(call) returned no position for topic \(topic); the last committed batch ended at offset \(want.offset) (xid \(want.commit.xid))")
                continue
            }
            if got.offset != want.offset {
                fail(kind, "\(call) returned offset \(got.offset) for topic \(topic); the last committed batch ended at offset \(want.offset) (xid \(want.commit.xid))")
            } else if got.lsn != want.commit.commitLSN {
                fail(kind, "\(call) returned LSN \(got.lsn) for topic \(topic) at offset \(got.offset); the transaction committed at \(want.commit.commitLSN)")
            } else if got.commitTime != 0 && got.commitTime != want.commit.commitTime {
                fail(kind, "\(call) returned commit time \(formatMicros(got.commitTime)) for topic \(topic) at offset \(got.offset); the transaction committed at \(formatMicros(want.commit.commitTime)) (0, meaning not stored, would be accepted)")
            }
        }
    }

    /// `readPositions` (what `sluice status` shows) agrees with what the target stores.
    private func checkReadPositions(_ sink: any Sink, applied: [String: Int]) throws {
        let stored = try driver(sink).call("readPositions") { try sink.readPositions() }
        guard let stored else {
            fail(.positions, "readPositions returned nil (no positions) after batches were committed")
            return
        }
        checkPositions(stored, applied: applied, as: .positions, call: "readPositions")
    }

    private func checkRows(applied: [String: Int], as kind: SinkConformance.Failure.Check) throws {
        for table in Workload.tables {
            let expected = topics.expectedRows(of: table, applied: applied)
            let actual = try check.readRows(table)
            if let difference = RowComparison.difference(table: table, expected: expected, actual: actual) {
                let count = applied[Workload.topic(of: table)] ?? 0
                fail(kind, "\(table.qualifiedName) after \(count) transaction(s) of \(Workload.topic(of: table)): \(difference)")
            }
        }
    }
}

extension WorkloadTopics {
    /// The position of the `count`th transaction of `topic`.
    func commitPosition(_ topic: String, _ count: Int) -> SinkPosition {
        let commit = commits[indices(of: topic)[count - 1]]
        return SinkPosition(topic: topic, offset: commit.offset, lsn: commit.commit.commitLSN, commitTime: commit.commit.commitTime)
    }
}

/// Compares rows as multisets of their text forms.
enum RowComparison {
    static let examples = 5

    /// A description of what differs, or nil when the rows are the same multiset.
    static func difference(table: RelationSchema, expected: [RowStore.Row], actual: [RowStore.Row]) -> String? {
        let columns = table.columns.map(\.name)
        var remaining: [String: (count: Int, row: RowStore.Row)] = [:]
        for row in expected { remaining[line(row, columns, shorten: false), default: (0, row)].count += 1 }
        var unexpected: [String] = []
        for row in actual {
            let text = line(row, columns, shorten: false)
            if let entry = remaining[text], entry.count > 0 {
                remaining[text]!.count -= 1
            } else {
                unexpected.append(line(row, columns, shorten: true))
            }
        }
        let missing = remaining.values.flatMap { Array(repeating: line($0.row, columns, shorten: true), count: $0.count) }.sorted()
        guard !missing.isEmpty || !unexpected.isEmpty else { return nil }
        var parts = ["expected \(expected.count) rows, found \(actual.count)"]
        if !missing.isEmpty {
            parts.append("missing \(missing.count): " + missing.prefix(examples).joined(separator: "; ")
                         + (missing.count > examples ? "; …" : ""))
        }
        if !unexpected.isEmpty {
            parts.append("unexpected \(unexpected.count): " + unexpected.sorted().prefix(examples).joined(separator: "; ")
                         + (unexpected.count > examples ? "; …" : ""))
        }
        return parts.joined(separator: "; ")
    }

    /// `(id=1, name='alice', note=NULL)`; when `shorten`, long values are cut and show their length.
    static func line(_ row: RowStore.Row, _ columns: [String], shorten: Bool) -> String {
        "(" + columns.map { column -> String in
            switch row[column] {
            case .none: return "\(column)=<no such column>"
            case .some(.none): return "\(column)=NULL"
            case let .some(.some(text)):
                guard shorten else { return "\(column)='\(text)'" }
                var shown = text.count > 40 ? String(text.prefix(24)) + "…(\(text.count) chars)" : text
                shown = shown.replacingOccurrences(of: "\n", with: "\\n").replacingOccurrences(of: "\t", with: "\\t")
                return "\(column)='\(shown)'"
            }
        }.joined(separator: ", ") + ")"
    }
}

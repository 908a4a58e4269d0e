import Foundation
import SluiceKit
import SluiceWire

/// Compares one table at one sink with the source, while the pipeline runs.
///
/// Keyed tables go chunk by chunk of primary key: the source summarizes each chunk at a REPEATABLE
/// READ snapshot whose position (WAL insert LSN) is recorded; once the sink has applied everything
/// before that position the target summarizes the same range. A chunk that differs is read again,
/// row by row, at a new snapshot and after the sink caught up again; each row that still differs is
/// read again until two reads in a row agree on both sides (a row the stream keeps changing settles
/// once it is quiet), at most ``maxRounds`` times. Keyless tables are compared as multisets of whole
/// rows, bucketed by row digest.
final class Verifier {
    static let maxDifferences = 100_000
    static let maxRounds = 8

    let source: PGConnection
    let sourceTable: PostgresTableReader
    let target: TargetTable
    let shape: TableShape
    let catchUp: SinkCatchUp
    let chunkSize: Int
    let report: (Int, UInt64) -> Void

    init(source: PGConnection, view: SinkView, filter: String?, target: TargetTable, textOrder: Bool, catchUp: SinkCatchUp,
         chunkSize: Int, sourceRelation: String? = nil, report: @escaping (Int, UInt64) -> Void) {
        self.source = source
        shape = view.source
        sourceTable = PostgresTableReader(connection: source, shape: view.source, qualifiedName: sourceRelation ?? view.source.table.sql,
                                          textOrder: textOrder, filter: filter, values: view.expressions)
        self.target = target
        self.catchUp = catchUp
        self.chunkSize = chunkSize
        self.report = report
    }

    /// Runs `body` in a REPEATABLE READ snapshot; returns its result and the snapshot's position.
    func atSnapshot<T>(_ body: () throws -> T) throws -> (T, LSN) {
        try source.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        do {
            // The first statement takes the snapshot; the insert position read after it is past every
            // commit the snapshot sees.
            guard let lsn = try source.execute("SELECT pg_current_wal_insert_lsn()::text").string(0, 0).flatMap({ LSN($0) }) else {
                throw VerifyFailure("the source returned no WAL position")
            }
            let value = try body()
            try source.execute("COMMIT")
            return (value, lsn)
        } catch {
            _ = try? source.execute("ROLLBACK")
            throw error
        }
    }

    struct Pair<Value: Equatable>: Equatable {
        var source: Value?
        var target: Value?
    }

    /// Re-reads differing entries until each is equal (dropped) or read the same twice in a row.
    func settle<Key: Hashable, Value: Equatable>(_ initial: [Key: Pair<Value>], read: ([Key]) throws -> [Key: Pair<Value>])
        throws -> [Key: Pair<Value>] {
        var pending = initial
        var confirmed: [Key: Pair<Value>] = [:]
        for _ in 0..<Self.maxRounds where !pending.isEmpty {
            let now = try read(Array(pending.keys))
            var still: [Key: Pair<Value>] = [:]
            for (key, before) in pending {
                let after = now[key] ?? Pair(source: nil, target: nil)
                if after.source == after.target { continue }
                if after == before { confirmed[key] = after } else { still[key] = after }
            }
            pending = still
        }
        // Still moving after every round: reported rather than hidden.
        return confirmed.merging(pending) { first, _ in first }
    }

    // MARK: Keyed tables

    private func key(_ row: CanonicalRow) -> [String] { shape.key.map { row[$0] ?? "" } }

    private func pairs(source: [CanonicalRow], target: [CanonicalRow]) -> [[String]: Pair<CanonicalRow>] {
        var pairs: [[String]: Pair<CanonicalRow>] = [:]
        for row in source { pairs[key(row), default: Pair()].source = row }
        for row in target { pairs[key(row), default: Pair()].target = row }
        return pairs.filter { $0.value.source != $0.value.target }
    }

    /// Chunk by chunk: a batch of chunks summarized at one source snapshot (at most a second of
    /// reading), one wait for the sink, then the target summarizes that batch on a thread of its own
    /// while the source reads the next one.
    func verifyKeyed(into result: inout TableVerification) throws {
        var lower: [String]? = nil
        var finished = false
        var pending: (chunks: [(KeyRange, ChunkSummary)], target: Overlapped<[ChunkSummary]>)?
        defer { _ = try? pending?.target.join() }
        while true {
            var next: ([(KeyRange, ChunkSummary)], LSN)?
            if !finished {
                let started = Date()
                next = try atSnapshot { () -> [(KeyRange, ChunkSummary)] in
                    var batch: [(KeyRange, ChunkSummary)] = []
                    while batch.count < 64 && Date().timeIntervalSince(started) < 1 {
                        let upper = try sourceTable.upperBound(after: lower, count: chunkSize)
                        let range = KeyRange(lower: lower, upper: upper)
                        batch.append((range, try sourceTable.summary(range)))
                        lower = upper
                        if upper == nil { finished = true; break }
                    }
                    return batch
                }
            }
            if let (chunks, target) = pending {
                pending = nil
                for ((range, summary), targetSummary) in zip(chunks, try target.join()) {
                    result.chunks += 1
                    result.sourceRows += summary.rows
                    if targetSummary != summary { record(try rowsDiffering(in: range), into: &result) }
                    report(result.chunks, result.sourceRows)
                }
            }
            guard let (chunks, lsn) = next else { return }
            try catchUp.wait(past: lsn)
            pending = (chunks, Overlapped { [target] in try chunks.map { try target.summary($0.0) } })
        }
    }

    private func rowsDiffering(in range: KeyRange) throws -> [[String]: Pair<CanonicalRow>] {
        let (sourceRows, lsn) = try atSnapshot { try sourceTable.rows(in: range) }
        try catchUp.wait(past: lsn)
        let initial = pairs(source: sourceRows, target: try target.rows(in: range))
        return try settle(initial) { keys in
            let (sourceRows, lsn) = try atSnapshot { try sourceTable.rows(withKeys: keys) }
            try catchUp.wait(past: lsn)
            var pairs: [[String]: Pair<CanonicalRow>] = [:]
            for row in sourceRows { pairs[key(row), default: Pair()].source = row }
            for row in try target.rows(withKeys: keys) { pairs[key(row), default: Pair()].target = row }
            return pairs
        }
    }

    private func record(_ found: [[String]: Pair<CanonicalRow>], into result: inout TableVerification) {
        for (key, pair) in found.sorted(by: { $0.key.lexicographicallyPrecedes($1.key) }) {
            result.differenceCount += 1
            guard result.differences.count < Self.maxDifferences else { continue }
            let kind: RowDifference.Kind = pair.target == nil ? .missing : pair.source == nil ? .extra : .different
            result.differences.append(RowDifference(kind: kind, key: key, source: pair.source, target: pair.target, copies: 1))
        }
    }

    // MARK: Keyless tables

    private func multiset(_ rows: [CanonicalRow]) -> [RowDigest: (Int, CanonicalRow)] {
        var counts: [RowDigest: (Int, CanonicalRow)] = [:]
        for row in rows { counts[RowDigest(row), default: (0, row)].0 += 1 }
        return counts
    }

    func verifyKeyless(into result: inout TableVerification) throws {
        let (sourceCount, _) = try atSnapshot { try sourceTable.rowCount() }
        let buckets = max(1, Int((sourceCount + UInt64(chunkSize) - 1) / UInt64(chunkSize)))
        let (sourceBuckets, lsn) = try atSnapshot { try sourceTable.bucketSummaries(count: buckets) }
        try catchUp.wait(past: lsn)
        let targetBuckets = try target.bucketSummaries(count: buckets)
        result.chunks = buckets
        result.sourceRows = sourceBuckets.reduce(0) { $0 + $1.rows }
        report(result.chunks, result.sourceRows)
        let differing = Set((0..<buckets).filter { sourceBuckets[$0] != targetBuckets[$0] })
        guard !differing.isEmpty else { return }
        // Rows of one bucket at a time: memory bounded by a bucket, about a chunk.
        for bucket in differing.sorted() {
            var rows: [RowDigest: CanonicalRow] = [:]
            func read(_ wanted: Set<Int>) throws -> [RowDigest: Pair<Int>] {
                let (sourceRows, lsn) = try atSnapshot { try sourceTable.rows(inBuckets: wanted, of: buckets) }
                try catchUp.wait(past: lsn)
                let source = multiset(sourceRows), target = multiset(try self.target.rows(inBuckets: wanted, of: buckets))
                var pairs: [RowDigest: Pair<Int>] = [:]
                for (digest, entry) in source { pairs[digest, default: Pair(source: 0, target: 0)].source = entry.0; rows[digest] = entry.1 }
                for (digest, entry) in target { pairs[digest, default: Pair(source: 0, target: 0)].target = entry.0; rows[digest] = entry.1 }
                return pairs
            }
            let initial = try read([bucket]).filter { $0.value.source != $0.value.target }
            let found = try settle(initial) { digests in
                try read(Set(digests.map { $0.bucket(of: buckets) }))
            }
            for (digest, pair) in found {
                let have = pair.target ?? 0, want = pair.source ?? 0
                result.differenceCount += 1
                guard result.differences.count < Self.maxDifferences, let row = rows[digest] else { continue }
                result.differences.append(RowDifference(kind: have < want ? .missing : .extra, key: nil,
                                                        source: want > 0 ? row : nil, target: have > 0 ? row : nil,
                                                        copies: abs(want - have)))
            }
        }
    }
}

/// Work on a thread of its own, joined later (the target's summaries of one batch while the source
/// reads the next). Whoever starts it touches what it uses only after ``join()``.
final class Overlapped<Value>: @unchecked Sendable {
    private let done = DispatchSemaphore(value: 0)
    private let body: () throws -> Value
    private var outcome: Result<Value, any Error>?
    /// Only the starting thread joins: after the first wait the outcome is set for good.
    private var joined = false

    init(_ body: @escaping () throws -> Value) {
        self.body = body
        Thread { [self] in
            outcome = Result { try self.body() }
            done.signal()
        }.start()
    }

    func join() throws -> Value {
        if !joined {
            done.wait()
            joined = true
        }
        return try outcome!.get()
    }
}

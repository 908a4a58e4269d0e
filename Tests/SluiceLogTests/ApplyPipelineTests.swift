import Foundation
@testable import SluiceKit
@testable import SluiceLog
import XCTest

/// The pipelined apply (``ApplyPipeline``) against the single-thread loop of ``BatchApplier``, over a
/// real embedded topic: the same calls in the same order and batches, errors at the same point.
final class ApplyPipelineTests: LogTestCase {
    /// Writes down every call it gets, its thread, and throws at the `failAt`-th apply.
    final class RecordingSink: Sink {
        static var typeName: String { "recording" }
        var calls: [String] = []
        var threads: Set<ObjectIdentifier> = []
        var failAt: Int?
        var applies = 0

        init() {}
        init(config: ConnectorConfig) throws {}

        private func note(_ call: String) {
            calls.append(call)
            threads.insert(ObjectIdentifier(Thread.current))
        }

        func open(context: SinkContext) throws -> [String: SinkPosition] { [:] }
        func beginBatch() throws { note("beginBatch") }
        func beginTransaction(_ begin: BeginRecord, topic: String, offset: UInt64) throws { note("begin \(begin.xid) @\(offset)") }
        func prepare(_ relation: RelationSchema, topic: String) throws {
            note("prepare \(relation.qualifiedName) \(relation.columns.map(\.name))")
        }
        func apply(_ change: Change) throws {
            applies += 1
            if applies == failAt { throw ConnectorError.transient("target gone at apply \(applies)") }
            let rows = [change.old, change.new].map { $0.map { $0.values.map { $0.string ?? "NULL" } } }
            note("\(change.operation.name) \(change.relation.qualifiedName) @\(change.offset) \(rows)")
        }
        func commitTransaction(_ commit: CommitRecord, position: SinkPosition) throws { note("commit \(commit.xid) @\(position.offset)") }
        func commitBatch(positions: [SinkPosition]) throws { note("commitBatch \(positions.map(\.offset))") }
        func rollbackBatch() { note("rollbackBatch") }
        func close() {}
        func readPositions() throws -> [String: SinkPosition]? { nil }
    }

    static let accounts = RelationSchema(id: 16_390, schema: "public", table: "accounts", replicaIdentity: .default, columns: [
        .init(name: "id", typeOID: 23, typeModifier: -1, typeName: "integer", isPrimaryKey: true, isReplicaIdentity: true),
        .init(name: "email", typeOID: 25, typeModifier: -1, typeName: "text", isPrimaryKey: false, isReplicaIdentity: false),
    ])

    func transforms(_ yaml: [(String, ConfigValue)]) throws -> SinkTransforms {
        try SinkTransforms(config: ConnectorConfig(file: "sluice.yml", path: "sinks[0] (t)", name: "t", type: "sqlite", entries: yaml,
                                                   line: 1, dataDirectory: "/tmp", baseDirectory: "/tmp"))
    }

    func s(_ text: String) -> ConfigValue { .scalar(text, line: 1) }
    func map(_ pairs: [(String, ConfigValue)]) -> ConfigValue { .map(pairs.map { (key: $0.0, value: $0.1) }, line: 1) }

    /// Five transforms and soft deletes (a primary-key change becomes a delete and an insert).
    func fiveTransforms() throws -> SinkTransforms {
        try transforms([
            ("tables", .list([s("public.*"), s("!public.audit_*")], line: 1)),
            ("rename", map([("public.users", s("analytics.users"))])),
            ("where", map([("public.users", s("id >= 300000"))])),
            ("columns", map([("public.accounts", map([("mask", map([("email", s("hash"))]))]))])),
            ("mask_key", s("k")),
            ("metadata", .list([s("lsn"), s("op"), s("xid")], line: 1)),
            ("deletes", s("soft")),
        ])
    }

    /// Transactions of inserts into users, and of accounts' inserts, key changes and deletes.
    func writeTopic(_ log: EmbeddedLog, transactions count: UInt32 = 40) throws -> any Topic {
        let writer = try log.embeddedWriter(Fixture.topic)
        let transactions = TransactionWriter(writer: writer)
        var model: [Expected] = []
        for xid in UInt32(1)...count {
            if xid % 3 == 0 {
                try transactions.begin(BeginRecord(xid: xid, commitLSN: Fixture.commitLSN(xid), commitTime: Fixture.commitTime(xid)))
                try transactions.ensureRelation(Self.accounts)
                let id = Int(xid)
                try Fixture.tuple(["\(id)", "a\(id)@x"]).withUnsafeBytes {
                    try transactions.change(.insert, relation: Self.accounts.id, lsn: Fixture.changeLSN(xid, 0), new: $0)
                }
                try Fixture.tuple(["\(id)", nil]).withUnsafeBytes { old in
                    try Fixture.tuple(["\(id + 1000)", "b\(id)@x"]).withUnsafeBytes { new in
                        try transactions.change(.update, relation: Self.accounts.id, lsn: Fixture.changeLSN(xid, 1),
                                                oldKind: .key, old: old, new: new)
                    }
                }
                try Fixture.tuple(["\(id + 1000)", nil]).withUnsafeBytes {
                    try transactions.change(.delete, relation: Self.accounts.id, lsn: Fixture.changeLSN(xid, 2), oldKind: .key, old: $0)
                }
                try transactions.commit(commitLSN: Fixture.commitLSN(xid), endLSN: Fixture.endLSN(xid), commitTime: Fixture.commitTime(xid))
            } else {
                try transactions.writeTransaction(xid: xid, rows: Int(xid % 7) * 40 + 1, expected: &model)
            }
        }
        try writer.flush()
        return writer.topic
    }

    /// Applies the whole topic in batches; the calls, each batch's tally, and the reader's position after each.
    func applyAll(_ topic: any Topic, _ sink: any Sink, maxBatchEvents: Int, pipeline: ApplyPipeline?) throws
        -> (batches: [String], positions: [UInt64]) {
        let reader = try topic.makeReader(from: 0)
        let limit = topic.durableCommit!.offset + 1
        var batches: [String] = []
        var positions: [UInt64] = []
        while reader.position < limit {
            let batch = try BatchApplier(sink: sink, topic: topic, maxBatchEvents: maxBatchEvents)
                .applyBatch(from: reader, limit: limit, pipeline: pipeline)
            batches.append("\(batch.position?.offset ?? 0) \(batch.events) \(batch.transactions) \(batch.totalEvents) \(batch.commitTimes)")
            positions.append(reader.position)
        }
        return (batches, positions)
    }

    func testSameCallsAndBatchesAsTheSingleThreadLoop() throws {
        let topic = try writeTopic(try makeLog())
        let pipeline = ApplyPipeline(name: "test-prepare")
        defer { pipeline.stop() }
        for transformed in [false, true] {
            for maxBatchEvents in [1, 150, 100_000] {
                let single = RecordingSink(), piped = RecordingSink()
                let wrap: (RecordingSink) throws -> any Sink = {
                    transformed ? TransformingSink(wrapping: $0, transforms: try self.fiveTransforms()) : $0
                }
                let expected = try applyAll(topic, try wrap(single), maxBatchEvents: maxBatchEvents, pipeline: nil)
                let got = try applyAll(topic, try wrap(piped), maxBatchEvents: maxBatchEvents, pipeline: pipeline)
                XCTAssertEqual(got.batches, expected.batches, "transformed \(transformed), max \(maxBatchEvents)")
                XCTAssertEqual(got.positions, expected.positions)
                XCTAssertEqual(piped.calls, single.calls, "transformed \(transformed), max \(maxBatchEvents)")
                XCTAssertEqual(piped.threads, [ObjectIdentifier(Thread.current)], "every sink call on the sink's thread")
                XCTAssertGreaterThan(piped.calls.count, 2_000, "more calls than the queue holds")
                if transformed {
                    XCTAssertTrue(piped.calls.contains { $0.hasPrefix("insert analytics.users") })
                    XCTAssertTrue(piped.calls.contains { $0.hasPrefix("insert public.accounts") && $0.contains("\"1003\"") },
                                  "a key change's insert")
                }
            }
        }
    }

    /// A plan the schema makes impossible (found on the prepare thread) stops the batch where the
    /// single-thread loop stops it: the same calls before it, the same error, then nothing.
    func testAPrepareSideErrorSurfacesAtTheSamePoint() throws {
        let topic = try writeTopic(try makeLog())
        let colliding = try transforms([("columns", map([("public.accounts", map([("exclude", .list([s("nosuch")], line: 1))]))]))])
        let pipeline = ApplyPipeline(name: "test-prepare")
        defer { pipeline.stop() }
        var outcomes: [(calls: [String], error: String)] = []
        for piped in [false, true] {
            let recorder = RecordingSink()
            let sink = TransformingSink(wrapping: recorder, transforms: colliding)
            XCTAssertThrowsError(try applyAll(topic, sink, maxBatchEvents: 100_000, pipeline: piped ? pipeline : nil)) { error in
                outcomes.append((recorder.calls, "\(error)"))
            }
        }
        XCTAssertEqual(outcomes.count, 2)
        XCTAssertEqual(outcomes[1].calls, outcomes[0].calls)
        XCTAssertEqual(outcomes[1].error, outcomes[0].error)
        XCTAssertTrue(outcomes[1].error.contains("nosuch"), outcomes[1].error)
        XCTAssertEqual(outcomes[1].calls.last?.hasPrefix("begin 3 "), true, "stopped at the first schema of accounts")
    }

    /// A sink that throws mid-batch: the prepare thread stops, the next batch (after the runtime's
    /// rollback and a new reader) applies from the start again.
    func testASinkErrorStopsThePrepareThread() throws {
        let topic = try writeTopic(try makeLog())
        let pipeline = ApplyPipeline(name: "test-prepare")
        defer { pipeline.stop() }
        let recorder = RecordingSink()
        recorder.failAt = 700
        let sink = TransformingSink(wrapping: recorder, transforms: try fiveTransforms())
        XCTAssertThrowsError(try applyAll(topic, sink, maxBatchEvents: 100_000, pipeline: pipeline)) { error in
            XCTAssertTrue("\(error)".contains("target gone at apply 700"), "\(error)")
        }
        XCTAssertEqual(recorder.calls.filter { $0.hasPrefix("beginBatch") }.count, 1)
        XCTAssertFalse(recorder.calls.contains { $0.hasPrefix("commitBatch") })
        sink.rollbackBatch()
        recorder.failAt = nil
        let after = recorder.calls.count
        let single = RecordingSink()
        _ = try applyAll(topic, TransformingSink(wrapping: single, transforms: try fiveTransforms()), maxBatchEvents: 100_000, pipeline: nil)
        _ = try applyAll(topic, sink, maxBatchEvents: 100_000, pipeline: pipeline)
        XCTAssertEqual(Array(recorder.calls[after...]), single.calls)
    }

    /// The queue holds at most ``ApplyPipeline/maxChunks`` chunks: a producer ahead waits for room,
    /// and a cancel wakes it.
    func testTheQueueIsBounded() throws {
        let queue = CallQueue()
        let limit = ApplyPipeline.maxChunks
        let accepted = NSLock()
        nonisolated(unsafe) var puts: [Bool] = []
        let producer = Thread {
            for _ in 0..<(limit + 3) {
                let taken = queue.put([.failure(ConnectorError.transient("x"))])
                accepted.lock(); puts.append(taken); accepted.unlock()
            }
            queue.finish()
        }
        producer.start()
        var most = 0
        for _ in 0..<2 {
            _ = queue.take()
            most = max(most, queue.pending + 1)
        }
        queue.cancel()
        queue.waitDone()
        XCTAssertLessThanOrEqual(most, limit)
        accepted.lock(); defer { accepted.unlock() }
        XCTAssertEqual(puts.count, limit + 3)
        XCTAssertFalse(puts.last!, "a put waiting for room returns false once the batch is given up")
        XCTAssertLessThanOrEqual(puts.filter { $0 }.count, limit + 2, "no more than the bound plus what was taken")
    }
}

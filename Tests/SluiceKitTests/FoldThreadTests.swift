import Foundation
@testable import SluiceKit
import XCTest

/// The fold thread's queue is bounded by the reader buffers its changes keep alive, not only by
/// their number: rows of a megabyte each are handed over in small chunks.
final class FoldThreadTests: XCTestCase {
    let documents = RelationSchema(id: 16_500, schema: "public", table: "documents", replicaIdentity: .full, columns: [
        column("id", key: true), column("body", oid: 25, type: "text"),
        column("created_at", oid: 1184, type: "timestamp with time zone"),
    ])

    func testChangesHoldingLargeBuffersAreHandedOverEarly() throws {
        let definition = AggregateDefinition(
            table: TableName(schema: "public", table: "per_minute"), from: TableName(schema: "public", table: "documents"),
            predicate: nil, groupBy: [], window: AggregateWindow(size: 60_000_000, every: 60_000_000, time: .column("created_at")),
            measures: [("n", AggregateDefinition.Measure("count(*)")!)], retain: nil, key: "sinks[0] (s).aggregates[0]")
        let box = FoldBox(AggregateFold(try BoundAggregate(definition, schema: documents)))
        let thread = FoldThread(writeAhead: nil)
        defer { thread.stop() }
        let body = String(repeating: "x", count: 1 << 20)
        var handedAt: [Int] = []
        for id in 1...40 {
            // Each change decoded from a record of its own: its tuple is a view of a 1 MB buffer.
            let change = try makeChange(.insert, documents, new: cells(String(id), body, "2026-12-01 10:00:30+00"))
            if try thread.fold(change, commitTime: 0, boxes: [box], mask: 1) != nil { handedAt.append(id) }
        }
        _ = try thread.drain()
        XCTAssertEqual(box.fold.takeDeltas().first?.rows, 40, "every change is folded")
        XCTAssertLessThanOrEqual(handedAt.first ?? .max, FoldThread.chunkBufferBytes / (1 << 20) + 1,
                                 "a chunk goes when its buffers pass \(FoldThread.chunkBufferBytes) bytes, not at \(FoldThread.chunkSize) changes")
        XCTAssertGreaterThanOrEqual(handedAt.count, 2)
    }
}

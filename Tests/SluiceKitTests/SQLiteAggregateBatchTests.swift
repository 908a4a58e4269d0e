import Foundation
@testable import SQLiteSink
import SluiceKit
import SluiceWire
import XCTest

/// One fold over many source transactions, written by the SQLite store in one target transaction:
/// a key inserted and deleted in the batch leaves nothing, a row moving windows leaves its old window
/// (which disappears) for a new one, and deleting the current maximum brings back the next value —
/// both for windows already stored (read and rewritten) and for windows new to the table (inserted).
final class SQLiteAggregateBatchTests: XCTestCase {
    let orders = RelationSchema(id: 16_401, schema: "public", table: "orders", replicaIdentity: .full, columns: [
        column("id", key: true), column("region", oid: 25, type: "text"), column("amount", oid: 1700, type: "numeric(10,2)"),
        column("created_at", oid: 1184, type: "timestamp with time zone"),
    ])

    func row(_ id: Int, _ region: String, _ amount: String?, _ time: String) -> [TestCell] {
        cells(String(id), region, amount, "2026-12-01 10:\(time)+00")
    }

    func testBatchWithInsertDeleteOfOneKeyAMoveAndTheMaximumRetracted() throws {
        let definition = AggregateDefinition(
            table: TableName(schema: "public", table: "per_minute"), from: TableName(schema: "public", table: "orders"),
            predicate: nil, groupBy: ["region"], window: AggregateWindow(size: 60_000_000, every: 60_000_000, time: .column("created_at")),
            measures: [("n", AggregateDefinition.Measure("count(*)")!), ("total", AggregateDefinition.Measure("sum(amount)")!),
                       ("top", AggregateDefinition.Measure("max(amount)")!), ("low", AggregateDefinition.Measure("min(amount)")!)],
            retain: nil, key: "sinks[0] (s).aggregates[0]")
        let aggregate = try BoundAggregate(definition, schema: orders)
        let directory = NSTemporaryDirectory() + "sqlite-aggregate-batch-\(getpid())"
        try? FileManager.default.removeItem(atPath: directory)
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let database = try SQLiteDatabase(path: directory + "/target.db")
        let store = SQLiteAggregates(database: database, sink: "s")
        try store.create(aggregate)
        func commit(_ changes: [Change]) throws {
            var fold = AggregateFold(aggregate)
            for change in changes { try fold.apply(change, commitTime: 0) }
            try database.execute("BEGIN IMMEDIATE")
            try store.write(fold.takeDeltas(), of: aggregate)
            try database.execute("COMMIT")
        }
        func lines() throws -> [String] {
            try database.query("SELECT window_start, region, n, total, top, low FROM per_minute ORDER BY window_start, region")
                .map { $0.map { $0 ?? "NULL" }.joined(separator: " | ") }
        }
        let insert = { (cells: [TestCell]) in try makeChange(.insert, self.orders, new: cells) }
        let delete = { (cells: [TestCell]) in try makeChange(.delete, self.orders, oldKind: .full, old: cells) }
        let update = { (old: [TestCell], new: [TestCell]) in try makeChange(.update, self.orders, oldKind: .full, old: old, new: new) }

        try commit([try insert(row(1, "eu", "10.00", "00:30")), try insert(row(2, "eu", "50.00", "00:40")),
                    try insert(row(3, "us", "5.00", "01:10")), try insert(row(6, "us", "7.50", "01:20"))])
        XCTAssertEqual(try lines(), [
            "2026-12-01 10:00:00+00 | eu | 2 | 60.00 | 50.00 | 10.00",
            "2026-12-01 10:01:00+00 | us | 2 | 12.50 | 7.50 | 5.00",
        ])

        // Several source transactions folded into one batch.
        try commit([
            try insert(row(4, "eu", "70.00", "00:50")), try delete(row(4, "eu", "70.00", "00:50")),  // in and out: nothing
            try update(row(3, "us", "5.00", "01:10"), row(3, "us", "5.00", "00:05")),  // moves to 10:00
            try delete(row(6, "us", "7.50", "01:20")),  // 10:01 us is left empty: it goes
            try delete(row(2, "eu", "50.00", "00:40")),  // the current maximum of 10:00 eu
            try insert(row(5, "eu", "20.00", "02:00")), try insert(row(7, "eu", "30.00", "02:10")),
            try delete(row(5, "eu", "20.00", "02:00")),  // a new window's maximum, retracted before it is stored
        ])
        XCTAssertEqual(try lines(), [
            "2026-12-01 10:00:00+00 | eu | 1 | 10.00 | 10.00 | 10.00",
            "2026-12-01 10:00:00+00 | us | 1 | 5.00 | 5.00 | 5.00",
            "2026-12-01 10:02:00+00 | eu | 1 | 30.00 | 30.00 | 30.00",
        ])
        XCTAssertEqual(try database.query("SELECT window_start, value, n FROM _sluice_per_minute_top ORDER BY 1, 2")
            .map { $0.map { $0 ?? "NULL" }.joined(separator: " | ") }, [
            "2026-12-01 10:00:00+00 | 10.00 | 1", "2026-12-01 10:00:00+00 | 5.00 | 1", "2026-12-01 10:02:00+00 | 30.00 | 1",
        ], "the value counts hold exactly the rows left")

        // The maximum retracted again in a stored window, with a smaller value added in the same batch.
        try commit([try insert(row(8, "eu", "3.00", "00:10")), try update(row(1, "eu", "10.00", "00:30"), row(1, "eu", "1.00", "00:30"))])
        XCTAssertEqual(try lines().first, "2026-12-01 10:00:00+00 | eu | 2 | 4.00 | 3.00 | 1.00")
    }
}

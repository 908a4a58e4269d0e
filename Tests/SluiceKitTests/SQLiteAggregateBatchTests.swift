import Foundation
import Logging
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
        func listed() throws -> [String] {
            try database.query("SELECT window_start, _sluice_group, value, n FROM _sluice_per_minute_top ORDER BY 1, 2, 3")
                .map { $0.map { $0 ?? "NULL" }.joined(separator: " | ") }
        }
        XCTAssertEqual(try listed(), ["2026-12-01 10:00:00+00 | 2:eu | 10.00 | 1"],
                       "a window and group that held two values lists its counts; one holding a single value is not listed")

        // The maximum retracted again in a stored window, with a smaller value added in the same batch;
        // a window holding one value gets a second (listed now) and a row without an amount.
        try commit([try insert(row(8, "eu", "3.00", "00:10")), try update(row(1, "eu", "10.00", "00:30"), row(1, "eu", "1.00", "00:30")),
                    try insert(row(9, "eu", "40.00", "02:20")), try insert(row(10, "eu", nil, "02:30"))])
        XCTAssertEqual(try lines(), [
            "2026-12-01 10:00:00+00 | eu | 2 | 4.00 | 3.00 | 1.00",
            "2026-12-01 10:00:00+00 | us | 1 | 5.00 | 5.00 | 5.00",
            "2026-12-01 10:02:00+00 | eu | 3 | 70.00 | 40.00 | 30.00",
        ])
        XCTAssertEqual(try listed(), [
            "2026-12-01 10:00:00+00 | 2:eu | 1.00 | 1", "2026-12-01 10:00:00+00 | 2:eu | 3.00 | 1",
            "2026-12-01 10:02:00+00 | 2:eu | 30.00 | 1", "2026-12-01 10:02:00+00 | 2:eu | 40.00 | 1",
        ])

        // The current maximum of a listed window and of one holding a single value retracted: the next
        // value, and NULL when only a row without an amount is left.
        try commit([try delete(row(9, "eu", "40.00", "02:20")), try update(row(3, "us", "5.00", "00:05"), row(3, "us", nil, "00:05"))])
        XCTAssertEqual(try lines(), [
            "2026-12-01 10:00:00+00 | eu | 2 | 4.00 | 3.00 | 1.00",
            "2026-12-01 10:00:00+00 | us | 1 | NULL | NULL | NULL",
            "2026-12-01 10:02:00+00 | eu | 2 | 30.00 | 30.00 | 30.00",
        ])

        // Many windows and groups new to the table in one batch (multi-row INSERTs and their remainder),
        // beside an insert and delete of one key and a row moving into them.
        var many: [Change] = []
        for id in 100..<170 { many.append(try insert(row(id, "r\(id % 35)", "\(id).00", id < 135 ? "05:00" : "06:00"))) }
        many.append(try insert(row(200, "r1", "999.00", "05:30")))
        many.append(try delete(row(200, "r1", "999.00", "05:30")))
        many.append(try update(row(8, "eu", "3.00", "00:10"), row(8, "r2", "3.00", "06:10")))
        try commit(many)
        let late = try lines().filter { $0.hasPrefix("2026-12-01 10:05") || $0.hasPrefix("2026-12-01 10:06") }
        XCTAssertEqual(late.count, 70, "35 groups in each of two new windows")
        XCTAssertEqual(late.first { $0.contains("10:05:00+00 | r1 |") }, "2026-12-01 10:05:00+00 | r1 | 1 | 106.00 | 106.00 | 106.00",
                       "the row inserted and deleted in the batch left nothing")
        XCTAssertEqual(late.first { $0.contains("10:06:00+00 | r2 |") }, "2026-12-01 10:06:00+00 | r2 | 2 | 145.00 | 142.00 | 3.00",
                       "the moved row joined its new window and group")
        XCTAssertEqual(try lines().first, "2026-12-01 10:00:00+00 | eu | 1 | 1.00 | 1.00 | 1.00", "and left its old one")
        XCTAssertEqual(try listed().filter { $0.contains("10:06") }, ["2026-12-01 10:06:00+00 | 2:r2 | 142.00 | 1", "2026-12-01 10:06:00+00 | 2:r2 | 3.00 | 1"])
    }

    /// A fold written ahead every few windows and groups (as a large batch is) leaves the same table
    /// as one written at the end of the batch: across the cuts a key is inserted and deleted, a row
    /// moves windows and the current maximum is retracted.
    func testWritingAheadWithinABatchLeavesTheSameAggregate() throws {
        let definition = AggregateDefinition(
            table: TableName(schema: "public", table: "per_minute"), from: TableName(schema: "public", table: "orders"),
            predicate: nil, groupBy: ["region"], window: AggregateWindow(size: 60_000_000, every: 60_000_000, time: .column("created_at")),
            measures: [("n", AggregateDefinition.Measure("count(*)")!), ("total", AggregateDefinition.Measure("sum(amount)")!),
                       ("top", AggregateDefinition.Measure("max(amount)")!)],
            retain: nil, key: "sinks[0] (s).aggregates[0]")
        let directory = NSTemporaryDirectory() + "sqlite-aggregate-ahead-\(getpid())"
        try? FileManager.default.removeItem(atPath: directory)
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let insert = { (cells: [TestCell]) in try makeChange(.insert, self.orders, new: cells) }
        let delete = { (cells: [TestCell]) in try makeChange(.delete, self.orders, oldKind: .full, old: cells) }
        let update = { (old: [TestCell], new: [TestCell]) in try makeChange(.update, self.orders, oldKind: .full, old: old, new: new) }
        let batches: [[Change]] = [
            [try insert(row(1, "eu", "10.00", "00:30")), try insert(row(2, "eu", "50.00", "00:40")), try insert(row(3, "us", "5.00", "01:10")),
             try insert(row(4, "ap", "7.00", "02:10")), try insert(row(5, "eu", "1.00", "03:10")), try delete(row(4, "ap", "7.00", "02:10"))],
            [try insert(row(6, "eu", "70.00", "00:50")), try insert(row(7, "us", "2.00", "04:00")), try insert(row(8, "ap", "3.00", "05:00")),
             try delete(row(6, "eu", "70.00", "00:50")), try update(row(3, "us", "5.00", "01:10"), row(3, "eu", "5.00", "00:05")),
             try delete(row(2, "eu", "50.00", "00:40")), try insert(row(9, "us", "9.00", "01:20")), try update(row(1, "eu", "10.00", "00:30"), row(1, "eu", nil, "00:30"))],
        ]
        func run(writeAhead: Int?) throws -> [String] {
            let database = try SQLiteDatabase(path: directory + "/ahead-\(writeAhead ?? 0).db")
            let store = SQLiteAggregates(database: database, sink: "s")
            let maintainer = AggregateMaintainer(definitions: [definition], sink: "s", logger: Logger(label: "test"))
            maintainer.writeAhead = writeAhead
            try maintainer.reset(store: store)
            try maintainer.prepare(orders, store: store)
            for batch in batches {
                try database.execute("BEGIN IMMEDIATE")
                for change in batch { try maintainer.apply(change, store: store) }
                try maintainer.flush(store: store)
                try database.execute("COMMIT")
            }
            return try database.query("SELECT window_start, region, n, total, top, _sluice_rows, _sluice_total_n, _sluice_top_n FROM per_minute ORDER BY 1, 2")
                .map { $0.map { $0 ?? "NULL" }.joined(separator: " | ") }
        }
        let whole = try run(writeAhead: nil)
        XCTAssertEqual(whole.first, "2026-12-01 10:00:00+00 | eu | 2 | 5.00 | 5.00 | 2 | 1 | 1", "a NULL amount and the moved row")
        XCTAssertEqual(try run(writeAhead: 1), whole)
        XCTAssertEqual(try run(writeAhead: 2), whole)
    }
}

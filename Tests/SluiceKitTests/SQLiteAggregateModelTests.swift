import Foundation
@testable import SQLiteSink
import SluiceKit
import SluiceWire
import XCTest

/// The SQLite aggregate store against a model: random inserts, updates (amount to and from NULL,
/// moves across windows and groups) and deletes of the current maximum, folded in batches of random
/// size into hopping windows, some batches rolled back and replayed with a fresh fold (as after a
/// crash). After every commit each window's count, min and max equal those recomputed from the rows.
/// Few rows per window and group, so a window's values all turning NULL happens often.
final class SQLiteAggregateModelTests: XCTestCase {
    let orders = RelationSchema(id: 16_400, schema: "public", table: "orders", replicaIdentity: .full, columns: [
        column("id", key: true), column("region", oid: 25, type: "text"), column("amount", oid: 1700, type: "numeric(10,2)"),
        column("created_at", oid: 1184, type: "timestamp with time zone"),
    ])

    struct Order: Equatable {
        var region: String?
        var amount: String?
        var minute: Int
        var cells: [String?] { [region, amount, "2026-12-01 10:\(minute < 10 ? "0" : "")\(minute):30+00"] }
    }

    /// A small deterministic generator, so a failure replays.
    struct Generator: RandomNumberGenerator {
        var state: UInt64
        mutating func next() -> UInt64 {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return state >> 11 | state << 53
        }
    }

    func testRandomBatchesWithRollbacksKeepCountMinAndMaxExact() throws {
        let definition = AggregateDefinition(
            table: TableName(schema: "public", table: "orders_hopping"), from: TableName(schema: "public", table: "orders"),
            predicate: nil, groupBy: ["region"], window: AggregateWindow(size: 300_000_000, every: 60_000_000, time: .column("created_at")),
            measures: [("orders", AggregateDefinition.Measure("count(*)")!), ("smallest", AggregateDefinition.Measure("min(amount)")!),
                       ("biggest", AggregateDefinition.Measure("max(amount)")!)],
            retain: nil, key: "sinks[0] (s).aggregates[0]")
        let aggregate = try BoundAggregate(definition, schema: orders)
        let directory = NSTemporaryDirectory() + "sqlite-aggregate-model-\(getpid())"
        try? FileManager.default.removeItem(atPath: directory)
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let database = try SQLiteDatabase(path: directory + "/target.db")
        try database.execute("PRAGMA journal_mode=WAL; PRAGMA synchronous=OFF;")  // durability is not under test here
        let store = SQLiteAggregates(database: database, sink: "s")
        try store.create(aggregate)

        var random = Generator(state: 20_261_201)
        var rows: [Int: Order] = [:]
        var nextID = 1
        var rolledBack = 0
        func amount() -> String? {
            Int.random(in: 0..<3, using: &random) == 0 ? nil : "\(Int.random(in: 1...99, using: &random)).\(Int.random(in: 10...99, using: &random))"
        }
        for batch in 1...400 {
            var model = rows
            var changes: [Change] = []
            for _ in 0..<Int.random(in: 1...6, using: &random) {
                let id = model.keys.sorted().randomElement(using: &random)
                switch Int.random(in: 0..<6, using: &random) {
                case 0, 1:
                    let order = Order(region: ["eu", "us"].randomElement(using: &random)!, amount: amount(),
                                      minute: Int.random(in: 0..<12, using: &random))
                    model[nextID] = order
                    changes.append(try makeChange(.insert, orders, new: row(nextID, order)))
                    nextID += 1
                case 2 where id != nil:  // amount to or from NULL, or another value
                    var order = model[id!]!
                    let old = order
                    order.amount = amount()
                    model[id!] = order
                    changes.append(try update(id!, old, order))
                case 3 where id != nil:  // moves windows or group
                    var order = model[id!]!
                    let old = order
                    if Bool.random(using: &random) { order.minute = Int.random(in: 0..<12, using: &random) } else {
                        order.region = order.region == "eu" ? "us" : "eu"
                    }
                    model[id!] = order
                    changes.append(try update(id!, old, order))
                case 4, 5:  // the current maximum goes
                    let priced = model.filter { $0.value.amount != nil }.sorted { $0.key < $1.key }
                    guard let top = priced.max(by: { ExtremeValue.compare($0.value.amount!, $1.value.amount!, .exact) < 0 }) else { continue }
                    model[top.key] = nil
                    changes.append(try makeChange(.delete, orders, oldKind: .full, old: row(top.key, top.value)))
                default: continue
                }
            }
            // Some batches fail after writing and roll back; the replay folds them afresh.
            let attempts = Int.random(in: 0..<5, using: &random) == 0 ? 2 : 1
            for attempt in 1...attempts {
                var fold = AggregateFold(aggregate)
                for change in changes { try fold.apply(change, commitTime: 0) }
                try database.execute("BEGIN IMMEDIATE")
                try store.write(fold.takeDeltas(), of: aggregate)
                if attempt < attempts {
                    try database.execute("ROLLBACK")
                    rolledBack += 1
                } else {
                    try database.execute("COMMIT")
                }
            }
            rows = model
            let expected = expectedLines(rows, aggregate.definition.window)
            let actual = try database.query("""
                SELECT window_start, _sluice_group, orders, smallest, biggest FROM orders_hopping 
                """).map { $0.map { $0 ?? "NULL" }.joined(separator: " | ") }.sorted()
            XCTAssertEqual(actual, expected, "after batch \(batch)")
            if actual != expected { return }
        }
        XCTAssertGreaterThan(rolledBack, 20, "batches were rolled back and replayed")
    }

    func update(_ id: Int, _ old: Order, _ new: Order) throws -> Change {
        try makeChange(.update, orders, oldKind: .full, old: row(id, old), new: row(id, new))
    }

    func row(_ id: Int, _ order: Order) -> [TestCell] { ([String(id)] + order.cells).map { $0.map(TestCell.text) ?? .null } }

    /// `window_start | group | count(*) | min | max` per window and group, as the GROUP BY gives them.
    func expectedLines(_ rows: [Int: Order], _ window: AggregateWindow) -> [String] {
        var windows: [String: [Order]] = [:]
        for order in rows.values {
            let time = EventTime.micros(ArraySlice(Array(order.cells[2]!.utf8)))!
            for start in window.starts(containing: time) {
                windows["\(EventTime.text(start)) | \(AggregateFold.groupKey([order.region]))", default: []].append(order)
            }
        }
        return windows.map { key, orders in
            let amounts = orders.compactMap(\.amount)
            let smallest = ExtremeValue.pick(amounts, largest: false, valueClass: .exact) ?? "NULL"
            let biggest = ExtremeValue.pick(amounts, largest: true, valueClass: .exact) ?? "NULL"
            return "\(key) | \(orders.count) | \(smallest) | \(biggest)"
        }.sorted()
    }
}

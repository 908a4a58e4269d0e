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

    /// A bigint sum past 64 bits is kept exact (it became a REAL under INTEGER affinity), and is an
    /// INTEGER again once it fits.
    func testAnIntegerSumOutgrowingSixtyFourBitsStaysExact() throws {
        let events = RelationSchema(id: 16_402, schema: "public", table: "events", replicaIdentity: .full, columns: [
            column("id", key: true), column("v", oid: 20, type: "bigint"), column("created_at", oid: 1184, type: "timestamp with time zone"),
        ])
        let definition = AggregateDefinition(
            table: TableName(schema: "public", table: "totals"), from: TableName(schema: "public", table: "events"),
            predicate: nil, groupBy: [], window: AggregateWindow(size: 60_000_000, every: 60_000_000, time: .column("created_at")),
            measures: [("s", AggregateDefinition.Measure("sum(v)")!)], retain: nil, key: "sinks[0] (s).aggregates[0]")
        let aggregate = try BoundAggregate(definition, schema: events)
        let directory = NSTemporaryDirectory() + "sqlite-aggregate-wide-\(getpid())"
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
        func sum() throws -> [String] {
            try database.query("SELECT s, typeof(s) FROM totals").map { $0.map { $0 ?? "NULL" }.joined(separator: " ") }
        }
        let row = { (id: Int, v: String) in cells(String(id), v, "2026-12-01 10:00:30+00") }
        try commit([try makeChange(.insert, events, new: row(1, "9000000000000000001"))])
        XCTAssertEqual(try sum(), ["9000000000000000001 integer"])
        try commit([try makeChange(.insert, events, new: row(2, "9000000000000000001"))])
        XCTAssertEqual(try sum(), ["18000000000000000002 text"])
        try commit([try makeChange(.insert, events, new: row(3, "-9223372036854775808"))])
        XCTAssertEqual(try sum(), ["8776627963145224194 integer"])
    }

    /// A measure removed from the file leaves its NOT NULL state column: the sink says which columns
    /// and how to rebuild the table, instead of failing each insert on the constraint.
    func testAnAggregateTableWithColumnsOfRemovedMeasuresIsRefusedNamingThem() throws {
        func bound(_ measures: [(String, String)]) throws -> BoundAggregate {
            try BoundAggregate(AggregateDefinition(
                table: TableName(schema: "public", table: "per_minute"), from: TableName(schema: "public", table: "orders"),
                predicate: nil, groupBy: ["region"], window: AggregateWindow(size: 60_000_000, every: 60_000_000, time: .column("created_at")),
                measures: measures.map { ($0.0, AggregateDefinition.Measure($0.1)!) }, retain: nil, key: "sinks[0] (s).aggregates[0]"),
                schema: orders)
        }
        let directory = NSTemporaryDirectory() + "sqlite-aggregate-stale-\(getpid())"
        try? FileManager.default.removeItem(atPath: directory)
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let database = try SQLiteDatabase(path: directory + "/target.db")
        try SQLiteAggregates(database: database, sink: "s").create(try bound([("n", "count(*)"), ("total", "sum(amount)")]))
        let narrower = try bound([("n", "count(*)")])
        let store = SQLiteAggregates(database: database, sink: "s")
        var fold = AggregateFold(narrower)
        try fold.apply(try makeChange(.insert, orders, new: row(1, "eu", "1.00", "00:30")), commitTime: 0)
        XCTAssertThrowsError(try store.write(fold.takeDeltas(), of: narrower)) { error in
            XCTAssertTrue("\(error)".contains("has columns _sluice_total_n that none of its measures writes"), "\(error)")
            XCTAssertTrue("\(error)".contains("sluice backfill --table public.orders"), "\(error)")
        }
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
        func run(writeAhead: Int?, ownThread: Bool = false, legacy: Bool = false) throws -> [String] {
            let database = try SQLiteDatabase(path: directory + "/ahead-\(writeAhead ?? 0)-\(ownThread)-\(legacy).db")
            if legacy {
                // The layout of tables made before the state columns were narrowed: every one of them.
                try database.execute("""
                    CREATE TABLE per_minute (window_start TEXT NOT NULL, window_end TEXT NOT NULL, region TEXT, n INTEGER NOT NULL,
                        total TEXT, top TEXT, _sluice_group TEXT NOT NULL, _sluice_rows INTEGER NOT NULL,
                        _sluice_total_n INTEGER NOT NULL, _sluice_total_s TEXT, _sluice_top_n INTEGER NOT NULL, _sluice_top_s TEXT,
                        PRIMARY KEY (window_start, _sluice_group)) WITHOUT ROWID
                    """)
            }
            let store = SQLiteAggregates(database: database, sink: "s")
            let maintainer = AggregateMaintainer(definitions: [definition], sink: "s", logger: Logger(label: "test"))
            maintainer.writeAhead = writeAhead
            maintainer.foldsOnOwnThread = ownThread
            try maintainer.reset(store: store)
            try maintainer.prepare(orders, store: store)
            for batch in batches {
                try database.execute("BEGIN IMMEDIATE")
                for change in batch { try maintainer.apply(change, store: store) }
                try maintainer.flush(store: store)
                try database.execute("COMMIT")
            }
            let columns = try database.query("SELECT name FROM pragma_table_info('per_minute')").compactMap { $0[0] }
            if legacy {
                XCTAssertEqual(try database.query("""
                    SELECT count(*) FROM per_minute WHERE _sluice_rows <> n OR _sluice_total_s IS NOT total OR _sluice_top_s IS NOT top
                        OR _sluice_top_n <> _sluice_total_n
                    """).first?.first, "0", "an old table's state columns are kept up to date")
            } else {
                XCTAssertEqual(columns.filter { $0.hasPrefix("_sluice") }, ["_sluice_group", "_sluice_total_n"],
                               "a new table keeps only the state no visible column holds")
            }
            return try database.query("SELECT window_start, region, n, total, top, _sluice_total_n FROM per_minute ORDER BY 1, 2")
                .map { $0.map { $0 ?? "NULL" }.joined(separator: " | ") }
        }
        let whole = try run(writeAhead: nil)
        XCTAssertEqual(whole.first, "2026-12-01 10:00:00+00 | eu | 2 | 5.00 | 5.00 | 1", "a NULL amount and the moved row")
        XCTAssertEqual(try run(writeAhead: 1), whole)
        XCTAssertEqual(try run(writeAhead: 2), whole)
        XCTAssertEqual(try run(writeAhead: nil, ownThread: true), whole)
        XCTAssertEqual(try run(writeAhead: 1, ownThread: true), whole)
        XCTAssertEqual(try run(writeAhead: 2, ownThread: true), whole)
        XCTAssertEqual(try run(writeAhead: nil, legacy: true), whole)
        XCTAssertEqual(try run(writeAhead: 2, ownThread: true, legacy: true), whole)

        // A table of that name holding neither the count nor a measure that holds it is refused by name.
        let foreign = try SQLiteDatabase(path: directory + "/foreign.db")
        try foreign.execute("""
            CREATE TABLE per_minute (window_start TEXT NOT NULL, window_end TEXT NOT NULL, region TEXT, n INTEGER NOT NULL,
                total TEXT, top TEXT, _sluice_group TEXT NOT NULL, PRIMARY KEY (window_start, _sluice_group)) WITHOUT ROWID
            """)
        let store = SQLiteAggregates(database: foreign, sink: "s")
        let maintainer = AggregateMaintainer(definitions: [definition], sink: "s", logger: Logger(label: "test"))
        maintainer.foldsOnOwnThread = false
        try maintainer.reset(store: store)
        try maintainer.prepare(orders, store: store)
        try foreign.execute("BEGIN IMMEDIATE")
        try maintainer.apply(try insert(row(1, "eu", "10.00", "00:30")), store: store)
        XCTAssertThrowsError(try maintainer.flush(store: store)) { error in
            XCTAssertTrue("\(error)".contains("has no column _sluice_total_n"), "\(error)")
        }
    }

    /// Folding on the fold thread (chunks handed over, deltas written back as folds fill) leaves the
    /// same tables as folding on the sink's thread: thousands of random changes over many chunks, a
    /// tumbling and a hopping aggregate, a TRUNCATE in the middle of a batch, a new schema of the
    /// source table between batches, and a batch rolled back and replayed by a fresh maintainer.
    func testFoldsOnTheirOwnThreadLeaveTheSameTablesAsOnTheSinksThread() throws {
        let tumbling = AggregateDefinition(
            table: TableName(schema: "public", table: "per_minute"), from: TableName(schema: "public", table: "orders"),
            predicate: try Predicate("amount IS NULL OR amount < 90"), groupBy: ["region"],
            window: AggregateWindow(size: 60_000_000, every: 60_000_000, time: .column("created_at")),
            measures: [("n", AggregateDefinition.Measure("count(*)")!), ("total", AggregateDefinition.Measure("sum(amount)")!),
                       ("top", AggregateDefinition.Measure("max(amount)")!), ("low", AggregateDefinition.Measure("min(amount)")!)],
            retain: nil, key: "sinks[0] (s).aggregates[0]")
        let hopping = AggregateDefinition(
            table: TableName(schema: "public", table: "last_five"), from: TableName(schema: "public", table: "orders"),
            predicate: nil, groupBy: [], window: AggregateWindow(size: 300_000_000, every: 60_000_000, time: .column("created_at")),
            measures: [("n", AggregateDefinition.Measure("count(*)")!), ("mean", AggregateDefinition.Measure("avg(amount)")!)],
            retain: nil, key: "sinks[0] (s).aggregates[1]")
        let wider = RelationSchema(id: 16_401, schema: "public", table: "orders", replicaIdentity: .full,
                                   columns: orders.columns + [column("note", oid: 25, type: "text")])
        // The workload: (schema, changes) per batch; the same for both runs.
        var random = SQLiteAggregateModelTests.Generator(state: 20_261_202)
        var live: [Int: (region: String, amount: String?, time: String)] = [:]
        var nextID = 1
        var batches: [(schema: RelationSchema, changes: [Change], rolledBack: Bool)] = []
        for number in 0..<12 {
            let schema = number < 6 ? orders : wider
            func cells(_ id: Int, _ row: (region: String, amount: String?, time: String)) -> [TestCell] {
                self.row(id, row.region, row.amount, row.time) + (schema.columns.count > 4 ? [.text("n")] : [])
            }
            var changes: [Change] = []
            for step in 0..<(number == 3 ? 1_500 : 700) {
                if number == 7 && step == 350 {
                    changes.append(try makeChange(.truncate, schema))
                    live.removeAll()
                    continue
                }
                let pick = Int.random(in: 0..<10, using: &random)
                let fresh = (region: ["eu", "us", "ap"][Int.random(in: 0..<3, using: &random)],
                             amount: Int.random(in: 0..<5, using: &random) == 0 ? nil : "\(Int.random(in: 1...99, using: &random)).50",
                             time: String(format: "%02d:%02d", Int.random(in: 0..<40, using: &random), Int.random(in: 0..<60, using: &random)))
                if pick < 5 || live.isEmpty {
                    live[nextID] = fresh
                    changes.append(try makeChange(.insert, schema, new: cells(nextID, fresh)))
                    nextID += 1
                } else if pick < 8 {
                    let id = live.keys.sorted()[Int.random(in: 0..<live.count, using: &random)]
                    changes.append(try makeChange(.update, schema, oldKind: .full, old: cells(id, live[id]!), new: cells(id, fresh)))
                    live[id] = fresh
                } else {
                    let id = live.keys.sorted()[Int.random(in: 0..<live.count, using: &random)]
                    changes.append(try makeChange(.delete, schema, oldKind: .full, old: cells(id, live[id]!)))
                    live[id] = nil
                }
            }
            batches.append((schema, changes, number == 5))
        }
        let directory = NSTemporaryDirectory() + "sqlite-aggregate-thread-\(getpid())"
        try? FileManager.default.removeItem(atPath: directory)
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        func run(ownThread: Bool, writeAhead: Int?) throws -> [String] {
            let database = try SQLiteDatabase(path: directory + "/\(ownThread)-\(writeAhead ?? 0).db")
            try database.execute("PRAGMA journal_mode=WAL; PRAGMA synchronous=OFF;")
            let store = SQLiteAggregates(database: database, sink: "s")
            func open() throws -> AggregateMaintainer {
                let maintainer = AggregateMaintainer(definitions: [tumbling, hopping], sink: "s", logger: Logger(label: "test"))
                maintainer.writeAhead = writeAhead
                maintainer.foldsOnOwnThread = ownThread
                try maintainer.reset(store: store)
                return maintainer
            }
            var maintainer = try open()
            for batch in batches {
                try maintainer.prepare(batch.schema, store: store)
                try database.execute("BEGIN IMMEDIATE")
                for change in batch.changes { try maintainer.apply(change, store: store) }
                try maintainer.flush(store: store)
                if batch.rolledBack {
                    // As after a crash: nothing of the batch stays, and a new maintainer applies it again.
                    try database.execute("ROLLBACK")
                    maintainer = try open()
                    try maintainer.prepare(batch.schema, store: store)
                    try database.execute("BEGIN IMMEDIATE")
                    for change in batch.changes { try maintainer.apply(change, store: store) }
                    try maintainer.flush(store: store)
                }
                try database.execute("COMMIT")
            }
            return try database.query("SELECT * FROM per_minute ORDER BY window_start, _sluice_group").map { "m " + $0.map { $0 ?? "NULL" }.joined(separator: "|") }
                + database.query("SELECT * FROM last_five ORDER BY window_start").map { "h " + $0.map { $0 ?? "NULL" }.joined(separator: "|") }
            // Not the value-count tables: a window and group left with one distinct value may or may not
            // keep its row there, depending on where the batch was cut (both read back the same extreme).
        }
        let inline = try run(ownThread: false, writeAhead: nil)
        XCTAssertGreaterThan(inline.filter { $0.hasPrefix("m ") }.count, 100, "the workload leaves many windows and groups")
        func same(_ lines: [String], _ label: String) {
            let missing = inline.filter { !lines.contains($0) }, extra = lines.filter { !inline.contains($0) }
            XCTAssert(lines == inline, "\(label): \(lines.count) lines, \(inline.count) inline; missing \(missing.prefix(5)), extra \(extra.prefix(5))")
        }
        same(try run(ownThread: true, writeAhead: nil), "own thread")
        same(try run(ownThread: true, writeAhead: 64), "own thread, written ahead")
        same(try run(ownThread: false, writeAhead: 64), "written ahead")
    }

    /// A change the fold thread cannot fold (a delete without its old row) fails the batch before
    /// anything is committed, with the message the sink's thread gives, naming the aggregate's key.
    func testAFoldThreadFailureReachesTheSinkBeforeItsPosition() throws {
        let definition = AggregateDefinition(
            table: TableName(schema: "public", table: "per_minute"), from: TableName(schema: "public", table: "orders"),
            predicate: nil, groupBy: ["region"], window: AggregateWindow(size: 60_000_000, every: 60_000_000, time: .column("created_at")),
            measures: [("n", AggregateDefinition.Measure("count(*)")!)], retain: nil, key: "sinks[0] (s).aggregates[0]")
        let database = try SQLiteDatabase(path: ":memory:")
        let store = SQLiteAggregates(database: database, sink: "s")
        var messages: [String] = []
        for ownThread in [false, true] {
            let maintainer = AggregateMaintainer(definitions: [definition], sink: "s", logger: Logger(label: "test"))
            maintainer.foldsOnOwnThread = ownThread
            try maintainer.reset(store: store)
            try maintainer.prepare(orders, store: store)
            do {
                try database.execute("BEGIN IMMEDIATE")
                for id in 1...600 { try maintainer.apply(try makeChange(.insert, orders, new: row(id, "eu", "1.00", "00:30")), store: store) }
                try maintainer.apply(try makeChange(.delete, orders, oldKind: .key, old: [.text("3"), .null, .null, .null]), store: store)
                for id in 601...900 { try maintainer.apply(try makeChange(.insert, orders, new: row(id, "eu", "1.00", "00:30")), store: store) }
                try maintainer.flush(store: store)
                XCTFail("the batch must fail (own thread: \(ownThread))")
            } catch let error as ConnectorError {
                messages.append("\(error)")
            }
            try database.execute("ROLLBACK")
            // The same maintainer, reset as when the sink reopens, folds again.
            try maintainer.reset(store: store)
            try maintainer.prepare(orders, store: store)
            try database.execute("BEGIN IMMEDIATE")
            try maintainer.apply(try makeChange(.insert, orders, new: row(1, "eu", "1.00", "00:30")), store: store)
            try maintainer.flush(store: store)
            try database.execute("COMMIT")
            XCTAssertEqual(try database.query("SELECT n FROM per_minute"), [["1"]])
            try database.execute("DELETE FROM per_minute")
        }
        XCTAssertEqual(messages.count, 2)
        XCTAssertEqual(messages.first, messages.last)
        XCTAssertTrue(messages[0].contains("sinks[0] (s).aggregates[0]") && messages[0].contains("REPLICA IDENTITY FULL"), messages[0])
    }
}

import SluiceKit
import XCTest

/// Folding changes per window and group: inserts add, deletes retract, updates move a row,
/// NULLs follow SQL, the predicate filters, min/max keep value counts, retention drops late rows.
final class AggregateFoldTests: XCTestCase {
    /// `public.orders (id int, region text, amount numeric(10,2), status text, created_at timestamptz)`.
    let orders = RelationSchema(id: 16_400, schema: "public", table: "orders", replicaIdentity: .full, columns: [
        column("id", key: true), column("region", oid: 25, type: "text"), column("amount", oid: 1700, type: "numeric(10,2)"),
        column("status", oid: 25, type: "text"), column("created_at", oid: 1184, type: "timestamp with time zone"),
    ])

    func definition(window: AggregateWindow? = nil, where text: String? = nil, retain: Int64? = nil,
                    measures: [(String, String)] = [("orders", "count(*)"), ("counted", "count(amount)"), ("revenue", "sum(amount)"),
                                                    ("biggest", "max(amount)"), ("mean", "avg(amount)")]) throws -> AggregateDefinition {
        AggregateDefinition(table: TableName(schema: "public", table: "per_minute"), from: TableName(schema: "public", table: "orders"),
                            predicate: try text.map { try Predicate($0) }, groupBy: ["region"],
                            window: window ?? AggregateWindow(size: 60_000_000, every: 60_000_000, time: .column("created_at")),
                            measures: measures.map { ($0.0, AggregateDefinition.Measure($0.1)!) }, retain: retain, key: "sinks[0] (s).aggregates[0]")
    }

    func row(_ id: Int, _ region: String?, _ amount: String?, _ status: String = "paid", _ time: String = "2026-12-01 10:00:30+00") -> [TestCell] {
        cells(String(id), region, amount, status, time)
    }

    func fold(_ changes: [Change], _ definition: AggregateDefinition) throws -> [AggregateDelta] {
        var fold = AggregateFold(try BoundAggregate(definition, schema: orders))
        for change in changes { try fold.apply(change, commitTime: 0) }
        return fold.takeDeltas()
    }

    func insert(_ cells: [TestCell]) throws -> Change { try makeChange(.insert, orders, new: cells) }
    func delete(_ cells: [TestCell]) throws -> Change { try makeChange(.delete, orders, oldKind: .full, old: cells) }
    func update(_ old: [TestCell], _ new: [TestCell]) throws -> Change { try makeChange(.update, orders, oldKind: .full, old: old, new: new) }

    func testInsertsFoldIntoOneDeltaPerWindowAndGroup() throws {
        let deltas = try fold([try insert(row(1, "eu", "10.50")), try insert(row(2, "eu", "2.25")), try insert(row(3, "us", "1.00")),
                               try insert(row(4, "eu", nil, "paid", "2026-12-01 10:01:00+00"))], try definition())
        XCTAssertEqual(deltas.count, 3, "eu and us in 10:00, eu in 10:01")
        let eu = deltas[0]
        XCTAssertEqual(eu.group, ["eu"])
        XCTAssertEqual(EventTime.text(eu.windowStart), "2026-12-01 10:00:00+00")
        XCTAssertEqual(EventTime.text(eu.windowEnd), "2026-12-01 10:01:00+00")
        XCTAssertEqual(eu.rows, 2)
        XCTAssertEqual(eu.measures[1].count, 2)
        XCTAssertEqual(eu.measures[2].exactSum.description, "12.75", "numeric sums stay exact")
        XCTAssertEqual(eu.measures[3].values, ["10.50": 1, "2.25": 1])
        let late = deltas[2]
        XCTAssertEqual(late.rows, 1, "count(*) counts a row whose measure is NULL")
        XCTAssertEqual(late.measures[1].count, 0, "count(amount) skips NULL")
        XCTAssertTrue(late.measures[2].exactSum.isZero)
        XCTAssertEqual(late.measures[3].values, [:], "max skips NULL")
    }

    func testDeleteRetractsAndAnInsertDeletePairCancels() throws {
        let deltas = try fold([try insert(row(1, "eu", "10.50")), try delete(row(1, "eu", "10.50")), try delete(row(2, "us", "3.00"))],
                              try definition())
        XCTAssertEqual(deltas.count, 1, "the inserted-then-deleted row leaves nothing")
        XCTAssertEqual(deltas[0].group, ["us"])
        XCTAssertEqual(deltas[0].rows, -1)
        XCTAssertEqual(deltas[0].measures[2].exactSum.description, "-3.00")
        XCTAssertEqual(deltas[0].measures[3].values, ["3.00": -1], "the value's count is retracted for max to be recomputed")
    }

    func testUpdateMovesARowAcrossWindowsGroupsAndThePredicate() throws {
        let moved = try fold([try update(row(1, "eu", "5.00"), row(1, "us", "5.00", "paid", "2026-12-01 10:07:00+00"))], try definition())
        XCTAssertEqual(moved.map(\.group), [["eu"], ["us"]])
        XCTAssertEqual(moved.map(\.rows), [-1, 1])
        XCTAssertEqual(moved.map { EventTime.text($0.windowStart) }, ["2026-12-01 10:00:00+00", "2026-12-01 10:07:00+00"])

        let filtered = try definition(where: "status <> 'cancelled'")
        let out = try fold([try update(row(1, "eu", "5.00"), row(1, "eu", "5.00", "cancelled"))], filtered)
        XCTAssertEqual(out.map(\.rows), [-1], "a row leaving the predicate is retracted")
        let back = try fold([try update(row(1, "eu", "5.00", "cancelled"), row(1, "eu", "7.00"))], filtered)
        XCTAssertEqual(back.map(\.rows), [1], "a row entering the predicate is added")
        XCTAssertEqual(back[0].measures[2].exactSum.description, "7.00")

        let changedValue = try fold([try update(row(1, "eu", "5.00"), row(1, "eu", "6.50"))], try definition())
        XCTAssertEqual(changedValue.count, 1)
        XCTAssertEqual(changedValue[0].rows, 0, "same window and group: the row count is unchanged")
        XCTAssertEqual(changedValue[0].measures[2].exactSum.description, "1.50")
        XCTAssertEqual(changedValue[0].measures[3].values, ["5.00": -1, "6.50": 1])
    }

    func testSumsStayExactPastEighteenDigitsAndAcrossScales() throws {
        let amounts = ["999999999999999999", "999999999999999999", "1.5", "-0.255", "12345678901234567890.1", "+2", "1e3", "-0.000"]
        let deltas = try fold(amounts.enumerated().map { try insert(row($0.offset, "eu", $0.element)) }, try definition())
        XCTAssertEqual(deltas[0].measures[2].exactSum.description, "14345678901234568891.345", "wide and exponent values are carried exactly")
        XCTAssertEqual(deltas[0].measures[2].exactSumText, "14345678901234568891.345")
        let small = try fold([try insert(row(1, "eu", "-0.05")), try insert(row(2, "eu", "0.010"))], try definition())
        XCTAssertEqual(small[0].measures[2].exactSumText, "-0.040", "the widest scale is kept, as numeric addition does")
        XCTAssertEqual(small[0].measures[2].exactSum.description, "-0.040")
        let cancelled = try fold([try insert(row(1, "eu", "2.50")), try delete(row(1, "eu", "2.50")), try insert(row(2, "us", "1"))], try definition())
        XCTAssertEqual(cancelled.map(\.group), [["us"]], "a sum back to zero with no rows left is no delta")
    }

    /// Nineteen or more digits of nines (or Int64's minimum) overflowed the 18-digit reading and
    /// stopped the process; they are carried exactly.
    func testValuesOfNineteenDigitsAndMoreAreSummedExactly() throws {
        let amounts = ["9999999999999999999", "99999999999999999999999999", "99999999999999999999.99", "-9223372036854775808", "1"]
        let deltas = try fold(amounts.enumerated().map { try insert(row($0.offset, "eu", $0.element)) }, try definition())
        XCTAssertEqual(deltas[0].measures[2].exactSumText, "100000100776627963145224190.99")
        XCTAssertEqual(deltas[0].measures[1].count, 5)
        let retracted = try fold([try insert(row(1, "eu", "9999999999999999999")), try insert(row(2, "eu", "1.5")),
                                  try delete(row(1, "eu", "9999999999999999999"))], try definition())
        XCTAssertEqual(retracted[0].measures[2].exactSumText, "1.5")
    }

    /// The sum's text written without a String (what the SQLite sink binds) is ``exactSumText``.
    func testSumTextFromTheStackBufferIsTheExactSumText() throws {
        for amounts in [["-0.05", "0.010"], ["0"], ["0.00"], ["7"], ["-12.5", "2"], ["999999999999999999"], ["0.000000000000000001"],
                        ["-999999999999999999", "-0.5"], ["1.25", "-1.25", "3"], ["999999999999999999", "1"]] {
            let delta = try fold(amounts.enumerated().map { try insert(row($0.offset, "eu", $0.element)) }, try definition())[0].measures[2]
            var text: String?
            XCTAssertEqual(delta.withExactSumText { text = String(decoding: $0, as: UTF8.self) }, delta.smallSum != nil)
            if delta.smallSum == nil {
                XCTAssertNil(text, "\(amounts): beyond 18 digits it is the ExactDecimal's text")
            } else {
                XCTAssertEqual(text, delta.exactSumText, "\(amounts)")
            }
        }
    }

    func testUnchangedToastedValuesOfTheNewRowComeFromTheOldRow() throws {
        var new = row(1, "eu", "5.00", "paid", "2026-12-01 10:03:00+00")
        new[1] = .unchanged
        let deltas = try fold([try update(row(1, "eu", "5.00"), new)], try definition())
        XCTAssertEqual(deltas.map(\.group), [["eu"], ["eu"]], "the unchanged group value is the old one, not NULL")
    }

    func testNullGroupIsItsOwnGroupAndNullTimeIsInNoWindow() throws {
        let deltas = try fold([try insert(row(1, nil, "1.00")), try insert(row(2, nil, "2.00")), try insert(row(3, "", "4.00")),
                               try insert(cells("4", "eu", "8.00", "paid", nil))], try definition())
        XCTAssertEqual(deltas.map(\.group), [[nil], [""]], "NULL and the empty string are different groups; a NULL time is in no window")
        XCTAssertNotEqual(deltas[0].groupKey, deltas[1].groupKey)
        XCTAssertEqual(deltas[0].rows, 2)
        XCTAssertEqual(AggregateFold.groupKey(["a,1:b"]) == AggregateFold.groupKey(["a", "b"]), false, "group keys are unambiguous")
    }

    func testHoppingWindowsGetTheRowInEachWindow() throws {
        let hopping = try definition(window: AggregateWindow(size: 300_000_000, every: 60_000_000, time: .column("created_at")))
        let deltas = try fold([try insert(row(1, "eu", "1.00", "paid", "2026-12-01 10:02:00+00"))], hopping)
        XCTAssertEqual(deltas.map { EventTime.text($0.windowStart) },
                       ["09:58", "09:59", "10:00", "10:01", "10:02"].map { "2026-12-01 \($0):00+00" })
    }

    func testCommitTimeWindows() throws {
        let byCommit = try definition(window: AggregateWindow(size: 60_000_000, every: 60_000_000, time: .commitTime))
        var fold = AggregateFold(try BoundAggregate(byCommit, schema: orders))
        try fold.apply(try insert(row(1, "eu", "1.00")), commitTime: 61_000_000)
        XCTAssertEqual(fold.takeDeltas().map(\.windowStart), [60_000_000])
    }

    func testRetentionSkipsRowsForDroppedWindows() throws {
        let hour: Int64 = 3_600_000_000
        var fold = AggregateFold(try BoundAggregate(try definition(retain: hour), schema: orders))
        try fold.apply(try insert(row(1, "eu", "1.00", "paid", "2026-12-01 12:00:00+00")), commitTime: 0)
        let late = try fold.apply(try insert(row(2, "eu", "1.00", "paid", "2026-12-01 10:59:59+00")), commitTime: 0)
        XCTAssertEqual(late.map(EventTime.text), ["2026-12-01 10:59:00+00"], "its window ended before the watermark minus retain")
        try fold.apply(try insert(row(3, "eu", "1.00", "paid", "2026-12-01 11:00:00+00")), commitTime: 0)
        XCTAssertEqual(fold.droppedLate, 1)
        XCTAssertEqual(fold.takeDeltas().count, 2, "a late row inside the retained hour still updates its window")
        XCTAssertEqual(fold.retentionCutoff.map(EventTime.text), "2026-12-01 11:00:00+00")
    }

    func testTruncateDropsWhatIsPending() throws {
        var fold = AggregateFold(try BoundAggregate(try definition(), schema: orders))
        try fold.apply(try insert(row(1, "eu", "1.00")), commitTime: 0)
        try fold.apply(try makeChange(.truncate, orders), commitTime: 0)
        try fold.apply(try insert(row(2, "us", "2.00")), commitTime: 0)
        XCTAssertEqual(fold.takeDeltas().map(\.group), [["us"]])
    }

    func testFoldingAfterTakingDeltasStartsAfresh() throws {
        var fold = AggregateFold(try BoundAggregate(try definition(), schema: orders))
        try fold.apply(try insert(row(1, "eu", "1.00")), commitTime: 0)
        try fold.apply(try insert(row(2, "us", "2.00")), commitTime: 0)
        let first = fold.takeDeltas()
        try fold.apply(try insert(row(3, "us", "4.00")), commitTime: 0)
        try fold.apply(try insert(row(4, "eu", "8.00")), commitTime: 0)
        try fold.apply(try insert(row(5, "us", "16.00")), commitTime: 0)
        let second = fold.takeDeltas()
        XCTAssertEqual(first.map(\.group), [["eu"], ["us"]])
        XCTAssertEqual(first.map { $0.measures[2].exactSum.description }, ["1.00", "2.00"], "the first batch keeps its measures")
        XCTAssertEqual(second.map(\.group), [["us"], ["eu"]], "the same windows and groups again, in the new batch's order")
        XCTAssertEqual(second.map(\.rows), [2, 1])
        XCTAssertEqual(second.map { $0.measures[2].exactSum.description }, ["20.00", "8.00"])
    }

    func testGroupValuesComeBackFromTheKey() {
        for group: [String?] in [[], [nil], [""], ["eu"], ["a,b", nil, "1:2", "ünï", ""], [nil, nil], ["n", "10:"]] {
            XCTAssertEqual(AggregateFold.groupValues(AggregateFold.groupKey(group)), group)
        }
    }

    func testExtremesCompareAsTheirColumn() {
        XCTAssertEqual(ExtremeValue.pick(["9.5", "10.25", "-3"], largest: true, valueClass: .exact), "10.25", "numbers, not text order")
        XCTAssertEqual(ExtremeValue.pick(["9.5", "10.25", "-3"], largest: false, valueClass: .exact), "-3")
        XCTAssertEqual(ExtremeValue.pick(["1.5", "NaN", "2"], largest: true, valueClass: .float), "NaN", "NaN is above every float")
        XCTAssertEqual(ExtremeValue.pick(["b", "B", "a"], largest: false, valueClass: .text), "B")
        XCTAssertNil(ExtremeValue.pick([], largest: true, valueClass: .exact))
    }

    func testBindingErrorsNameTheKey() throws {
        func bindError(_ definition: AggregateDefinition, _ schema: RelationSchema? = nil) -> String {
            do { _ = try BoundAggregate(definition, schema: schema ?? orders); return "bound" } catch { return error.description }
        }
        let base = try definition()
        var keyOnly = orders
        keyOnly.replicaIdentity = .default
        let identity = bindError(base, keyOnly)
        XCTAssertTrue(identity.contains("aggregates[0].from") && identity.contains("ALTER TABLE public.orders REPLICA IDENTITY FULL"), identity)
        let unknown = bindError(try definition(measures: [("x", "sum(amout)")]))
        XCTAssertTrue(unknown.hasPrefix("sinks[0] (s).aggregates[0].measures.x: column 'amout' is not in public.orders"), unknown)
        let text = bindError(try definition(measures: [("x", "sum(status)")]))
        XCTAssertTrue(text.contains("measures.x") && text.contains("not a number"), text)
        let window = bindError(try definition(window: AggregateWindow(size: 1, every: 1, time: .column("region"))))
        XCTAssertTrue(window.contains("window.time") && window.contains("not a timestamp"), window)
        let predicate = bindError(try definition(where: "regoin = 'eu'"))
        XCTAssertTrue(predicate.contains("aggregates[0].where"), predicate)
        XCTAssertEqual(AggregateDefinition.Measure("COUNT( * )"), .countRows)
        XCTAssertEqual(AggregateDefinition.Measure("max(\"Big Value\")"), .max("Big Value"))
        XCTAssertNil(AggregateDefinition.Measure("median(amount)"))
        XCTAssertNil(AggregateDefinition.Measure("sum(*)"))
    }
}

@testable import SluiceKit
import XCTest

/// The per-row paths that read a tuple's bytes instead of values: the predicate's column tests decide
/// exactly as the general evaluator does, and target rows written into reused buffers are the rows
/// each transform defines, for every kind of change.
final class TupleFastPathTests: XCTestCase {
    /// id int8, amount numeric, price float8, status text, paid bool, qty int4, code text.
    let orders = [
        column("id", oid: 20, type: "bigint", key: true), column("amount", oid: 1700, type: "numeric(12,2)"),
        column("price", oid: 701, type: "double precision"), column("status", oid: 25, type: "text"),
        column("paid", oid: 16, type: "boolean"), column("qty", oid: 23, type: "integer"),
        column("code", oid: 25, type: "text"),
    ]

    func t(_ text: String) -> Value { .text(Array(text.utf8)[...]) }
    func row(_ values: String?...) -> [Value] { values.map { $0.map(t) ?? .null } }

    func testColumnTestsDecideAsTheEvaluator() throws {
        let fast = [
            "id > 0 AND qty >= 0", "amount > 100", "amount >= 100.50", "100 < amount", "amount = 100.5", "amount <> 100.500",
            "amount < '101'", "id > 1.5", "status = 'shipped'", "status < 't'", "'m' <= status",
            "status IN ('draft', 'shipped')", "status NOT IN ('draft', 'shipped')", "qty IN (1, 2, 3)", "qty NOT IN (1, 2)",
            "paid", "paid = TRUE", "paid <> 'yes'", "amount IS NOT NULL AND status IS NULL", "code IS NULL",
            "id = 7 AND status <> 'draft' AND amount > 0.001 AND paid", "code > 'a' AND code < 'f'",
        ]
        let either = ["qty <= -3", "amount > -0.5", "qty BETWEEN 1 AND 3"]  // as the parser writes negatives and BETWEEN
        let general = ["status LIKE 'sh%'", "id > 0 OR qty > 0", "qty * 2 = 6", "price > 1", "NOT paid", "amount > 1e-30"]
        let rows: [[Value]] = [
            row("7", "100.50", "2.5", "shipped", "t", "3", "a_b"),
            row("0", "-100.50", "NaN", "draft", "f", "1", nil),
            row(nil, nil, nil, nil, nil, nil, nil),
            row("-9223372036854775808", "NaN", "Infinity", "", "f", "-2147483648", "x"),
            row("12", "123456789012345678901234.5", "1", "zzz", "t", "2", "é"),
            row("1", "0.001", "0", "t", "t", "-3", "d"),
            row("2", "100.5000000000000000001", "0", "shipped", "f", "2", "f"),
            row("9223372036854775807", "-0.5", "-1", "m", "t", "0", "e"),
            [t("7"), .unchanged, t("1"), t("a"), t("t"), t("1"), .null],
            [t("7"), t("1"), t("1"), .binary([1, 2]), t("t"), t("1"), .null],
            [t("7"), t("1")],
        ]
        for text in fast + general + either {
            let bound = try Predicate(text).bind(to: orders)
            if !either.contains(text) {
                XCTAssertEqual(bound.tests != nil, fast.contains(text), "\(text): the fast form is used exactly for ANDs of column tests")
            }
            for values in rows {
                XCTAssertEqual(bound.evaluate(Tuple(values: values)), bound.evaluate(values), "\(text) over \(describe(values))")
            }
        }
    }

    /// id int4 pk, email text (hashed), ssn text (redacted), amount numeric (excluded), note text (copied).
    let people = RelationSchema(id: 16_401, schema: "public", table: "people", replicaIdentity: .full, columns: [
        column("id", key: true), column("email", oid: 25, type: "text"), column("ssn", oid: 25, type: "text"),
        column("amount", oid: 1700, type: "numeric"), column("note", oid: 25, type: "text"),
    ])
    let transaction = TransactionInfo(xid: 9, commitTime: 1_764_590_400_000_000)

    func rules(_ extra: [(String, ConfigValue)]) throws -> SinkTransforms {
        func s(_ text: String) -> ConfigValue { .scalar(text, line: 1) }
        let masks: ConfigValue = .map([(key: "email", value: s("hash")), (key: "ssn", value: s("redact"))], line: 1)
        let columns: ConfigValue = .map([(key: "people", value: .map([(key: "exclude", value: .list([s("amount")], line: 1)),
                                                                       (key: "mask", value: masks)], line: 1))], line: 1)
        let entries: [(String, ConfigValue)] = [("mask_key", s("k")), ("columns", columns), ("where", .map([(key: "people", value: s("amount > 10"))], line: 1))] + extra
        return try SinkTransforms(config: ConnectorConfig(file: "sluice.yml", path: "sinks[0] (t)", name: "t", type: "sqlite",
                                                          entries: entries, line: 1, dataDirectory: "/tmp", baseDirectory: "/tmp"))
    }

    func strings(_ tuple: Tuple?) -> [String]? { tuple.map { describe($0.values) } }

    func testUpdatesAndDeletesWithFullOldRowsAndHistoryFromTupleBytes() throws {
        let hash = { (text: String) in HMACSHA256(key: Array("k".utf8)).hex(Array(text.utf8)) }
        let mirror = try TableTransform(source: people, transforms: try rules([("metadata", .list([.scalar("op", line: 1)], line: 1))]))
        var buffers = RowBuffers()
        let update = try makeChange(.update, people, oldKind: .full, old: cells("1", "a@x", "s", "20", "old"),
                                    new: cells("1", "b@x", "s", "30", "new"))
        let updated = try XCTUnwrap(try mirror.transform(update, in: transaction, buffers: &buffers))
        XCTAssertEqual(strings(updated.old), ["1", hash("a@x"), "<null>", "old", "<null>"], "the old row masked, metadata NULL")
        XCTAssertEqual(strings(updated.new), ["1", hash("b@x"), "<null>", "new", "update"])
        // An unchanged TOASTed value comes from the full old row.
        let toast = try makeChange(.update, people, oldKind: .full, old: cells("1", "a@x", "s", "20", "old"),
                                   new: [.text("1"), .unchanged, .text("s"), .text("30"), .unchanged])
        XCTAssertEqual(strings(try mirror.transform(toast, in: transaction, buffers: &buffers)?.new), ["1", hash("a@x"), "<null>", "old", "update"])
        // Leaving the predicate: a delete of the full old row; a full old row that never passed: nothing.
        let leaving = try makeChange(.update, people, oldKind: .full, old: cells("1", "a@x", "s", "20", "old"), new: cells("1", "a@x", "s", "5", "x"))
        let left = try XCTUnwrap(try mirror.transform(leaving, in: transaction, buffers: &buffers))
        XCTAssertEqual(left.operation, .delete)
        XCTAssertEqual(strings(left.old), ["1", hash("a@x"), "<null>", "old", "<null>"])
        XCTAssertNil(try mirror.transform(try makeChange(.delete, people, oldKind: .full, old: cells("2", "c", "s", "1", nil)), in: transaction, buffers: &buffers))
        let delete = try XCTUnwrap(try mirror.transform(try makeChange(.delete, people, oldKind: .full, old: cells("2", "c", nil, "11", nil)),
                                                        in: transaction, buffers: &buffers))
        XCTAssertEqual(strings(delete.old), ["2", hash("c"), "<null>", "<null>", "<null>"])
        XCTAssertNil(delete.new)
        // A row kept from an earlier change is not overwritten by the next one written into the same buffers.
        XCTAssertEqual(strings(updated.new), ["1", hash("b@x"), "<null>", "new", "update"])
        // Soft deletes: the old row addresses it, the new one marks it.
        let soft = try TableTransform(source: people, transforms: try rules([("deletes", .scalar("soft", line: 1))]))
        let marked = try XCTUnwrap(try soft.transform(try makeChange(.delete, people, oldKind: .full, old: cells("2", "c", nil, "11", "n")),
                                                      in: transaction, buffers: &buffers))
        XCTAssertEqual(marked.operation, .update)
        XCTAssertEqual(strings(marked.old), ["2", hash("c"), "<null>", "n", "<null>", "<null>"])
        XCTAssertEqual(strings(marked.new), ["<unchanged>", "<unchanged>", "<unchanged>", "<unchanged>", "t", "2025-12-01 12:00:00.000000+00"])
        // History: one inserted row per change, the old row for deletes, unchanged values NULL.
        let history = try TableTransform(source: people, transforms: try rules([("mode", .scalar("history", line: 1))]))
        let prefix = ["16/B374D848", "9", "2025-12-01 12:00:00.000000+00"]
        let logged = try XCTUnwrap(try history.transform(toast, in: transaction, buffers: &buffers))
        XCTAssertEqual(logged.operation, .insert)
        XCTAssertEqual(strings(logged.new), ["update"] + prefix + ["1", hash("a@x"), "<null>", "old"])
        let out = try XCTUnwrap(try history.transform(leaving, in: transaction, buffers: &buffers), "the old row passed: the change is recorded")
        XCTAssertEqual(strings(out.new), ["update"] + prefix + ["1", hash("a@x"), "<null>", "x"])
        let keyDelete = try makeChange(.delete, people, oldKind: .key, old: cells("3", nil, nil, nil, nil))
        XCTAssertEqual(strings(try history.transform(keyDelete, in: transaction, buffers: &buffers)?.new),
                       ["delete"] + prefix + ["3", "<null>", "<null>", "<null>"])
        XCTAssertEqual(strings(try history.transform(try makeChange(.truncate, people), in: transaction, buffers: &buffers)?.new),
                       ["truncate"] + prefix + ["<null>", "<null>", "<null>", "<null>"])
    }
}

import SluiceKit
import XCTest

/// The predicate language of `where:`: parsing with positioned errors, typing by the column's
/// PostgreSQL type, and evaluation with SQL's three-valued NULL logic.
final class PredicateTests: XCTestCase {
    /// `public.orders (id int8, amount numeric, price float8, status text, paid bool, qty int4, code text)`.
    let orders = [
        column("id", oid: 20, type: "bigint", key: true), column("amount", oid: 1700, type: "numeric(12,2)"),
        column("price", oid: 701, type: "double precision"), column("status", oid: 25, type: "text"),
        column("paid", oid: 16, type: "boolean"), column("qty", oid: 23, type: "integer"),
        column("code", oid: 25, type: "text"),
    ]

    /// id, amount, price, status, paid, qty, code; nil is NULL.
    func row(_ values: String?...) -> [Value] { values.map { $0.map { .text(Array($0.utf8)[...]) } ?? .null } }

    func result(_ text: String, _ values: [Value], file: StaticString = #filePath, line: UInt = #line) throws -> PredicateResult {
        try Predicate(text).bind(to: orders, table: "public.orders").evaluate(values)
    }

    func assertParseError(_ text: String, _ fragment: String, at position: Int,
                          file: StaticString = #filePath, line: UInt = #line) {
        do {
            _ = try Predicate(text)
            XCTFail("'\(text)' should not parse", file: file, line: line)
        } catch {
            XCTAssertTrue(error.message.contains(fragment), "'\(text)': \(error)", file: file, line: line)
            XCTAssertEqual(error.position, position, "'\(text)': \(error)", file: file, line: line)
        }
    }

    func assertBindError(_ text: String, _ fragment: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let predicate = try Predicate(text)
        do {
            _ = try predicate.bind(to: orders, table: "public.orders")
            XCTFail("'\(text)' should not bind", file: file, line: line)
        } catch {
            XCTAssertTrue(error.description.contains(fragment), "'\(text)': \(error)", file: file, line: line)
        }
    }

    func testComparisonsTypedByColumn() throws {
        let r = row("7", "100.50", "2.5", "shipped", "t", "3", "a_b")
        let cases: [(String, PredicateResult)] = [
            ("amount > 100", .true), ("amount > 100.5", .false), ("amount >= 100.50", .true), ("amount = 100.5", .true),
            ("amount <> 100.500", .false), ("amount < '101'", .true), ("price = 2.5", .true), ("price > amount", .false),
            ("id = 7", .true), ("id != 7", .false), ("qty * 2 = 6", .true), ("qty / 2 = 1", .true), ("-qty = -3", .true),
            ("amount / 3 > 33.4", .true), ("amount / 3 = 33.5", .true), ("amount - 0.5 = 100", .true), ("qty + 0.25 = 3.25", .true),
            ("status = 'shipped'", .true), ("status < 't'", .true), ("status IN ('draft', 'shipped')", .true),
            ("status NOT IN ('draft', 'shipped')", .false), ("qty IN (1, 2, 3)", .true), ("paid", .true),
            ("NOT paid", .false), ("paid = 'yes'", .true), ("paid AND amount > 1 OR status = 'x'", .true),
            ("status LIKE 'sh%'", .true), ("status LIKE '%p_ed'", .true), ("status NOT LIKE 's%'", .false),
            ("status ILIKE 'SHIP%'", .true), ("code LIKE 'a\\_b'", .true), ("code LIKE 'a\\%b'", .false),
            ("qty BETWEEN 1 AND 3", .true), ("qty NOT BETWEEN 1 AND 3", .false), ("(qty = 3)", .true),
            ("amount IS NOT NULL", .true), ("status IS NULL", .false), ("TRUE", .true), ("1 = 1.0", .true),
        ]
        for (text, expected) in cases { XCTAssertEqual(try result(text, r), expected, text) }
    }

    func testNullLogic() throws {
        let r = row("1", nil, nil, nil, nil, "3", nil)
        let cases: [(String, PredicateResult)] = [
            ("amount > 1", .null), ("amount = NULL", .null), ("amount IS NULL", .true), ("NOT (amount > 1)", .null),
            ("amount > 1 AND qty = 3", .null), ("amount > 1 AND qty = 4", .false), ("amount > 1 OR qty = 3", .true),
            ("amount > 1 OR qty = 4", .null), ("qty IN (1, NULL)", .null), ("qty IN (3, NULL)", .true),
            ("qty NOT IN (1, NULL)", .null), ("status LIKE '%'", .null), ("paid", .null), ("qty + amount > 0", .null),
            ("qty / 0 = 1", .null), ("NULL", .null), ("paid IS NOT NULL", .false), ("NULL IS NULL", .true),
        ]
        for (text, expected) in cases { XCTAssertEqual(try result(text, r), expected, text) }
    }

    func testNumericIsExactBeyondDoubles() throws {
        // 0.1 + 0.2 = 0.3 exactly, and values beyond 2^53 or 17 digits compare exactly.
        let r = row("9007199254740993", "12345678901234567890.12", "0", "x", "f", "1", "y")
        XCTAssertEqual(try result("amount = 12345678901234567890.12", r), .true)
        XCTAssertEqual(try result("amount > 12345678901234567890.11", r), .true)
        XCTAssertEqual(try result("amount * 10 = 123456789012345678901.2", r), .true)
        XCTAssertEqual(try result("0.1 + 0.2 = 0.3", r), .true)
        XCTAssertEqual(try result("id > 9007199254740992", r), .true)
        XCTAssertEqual(try result("id * 1000000000000 > 9007199254740992000000000000", r), .true, "int8 overflow widens to numeric")
        XCTAssertEqual(try result("amount = 'NaN'", row("1", "NaN", "0", "x", "f", "1", "y")), .true)
        XCTAssertEqual(try result("amount > 1e30", row("1", "NaN", "0", "x", "f", "1", "y")), .true, "NaN sorts above numbers")
        XCTAssertEqual(try result("price > 1e300", row("1", "0", "Infinity", "x", "f", "1", "y")), .true)
    }

    func testUnchangedValuesMakeTheOutcomeUnavailable() throws {
        var r = row("1", "5", "1", "x", "t", "1", "y")
        r[3] = .unchanged
        XCTAssertEqual(try result("status = 'x'", r), .unavailable)
        XCTAssertEqual(try result("amount > 1", r), .true, "a column the predicate does not read may be unchanged")
    }

    func testColumnNamesAndQuoting() throws {
        XCTAssertEqual(try Predicate("Amount > 1 AND status = 'x' OR amount < qty").columnNames, ["amount", "status", "qty"])
        XCTAssertEqual(try Predicate("\"Mixed Case\" = 'it''s'").columnNames, ["Mixed Case"])
        let columns = [column("Mixed Case", oid: 25, type: "text")]
        XCTAssertEqual(try Predicate("\"Mixed Case\" = 'it''s'").bind(to: columns).evaluate([.text(Array("it's".utf8)[...])]), .true)
        let bound = try Predicate("qty > 1 AND status = 'a'").bind(to: orders)
        XCTAssertEqual(bound.referencedColumns, [3, 5])
    }

    func testParseErrorsSayWhereAndWhat() {
        assertParseError("", "empty", at: 1)
        assertParseError("amount >", "expected a value after '>', found the end", at: 9)
        assertParseError("amount > 1 status", "expected an operator, AND, OR or the end, found status", at: 12)
        assertParseError("status = 'draft", "string literal is never closed", at: 10)
        assertParseError("(amount > 1", "expected ')' to close the '(' at character 1", at: 12)
        assertParseError("amount ~ 1", "unexpected '~'", at: 8)
        assertParseError("a = b = c", "comparisons do not chain", at: 7)
        assertParseError("amount IS 5", "expected NULL after IS", at: 11)
        assertParseError("status IN 'a'", "expected '(' after IN", at: 11)
        assertParseError("status NOT 'a'", "expected IN, LIKE, ILIKE or BETWEEN after NOT", at: 12)
        assertParseError("lower(status) = 'a'", "functions are not supported", at: 1)
        assertParseError("amount > AND", "found the keyword AND", at: 10)
        assertParseError("1e = 2", "exponent without digits", at: 1)
        assertParseError("12abc = 1", "right after the number 12", at: 3)
    }

    func testBindErrorsNameColumnsAndTypes() throws {
        try assertBindError("total > 1", "unknown column total in public.orders (columns: id, amount, price")
        try assertBindError("status > 1", "'>' cannot compare text with integer")
        try assertBindError("amount = 'abc'", "'abc' is not a valid numeric")
        try assertBindError("qty = '1.5'", "'1.5' is not a valid integer")
        try assertBindError("paid = 1", "cannot compare boolean with integer")
        try assertBindError("amount + 1", "needs a condition")
        try assertBindError("status AND paid", "AND needs a condition")
        try assertBindError("qty LIKE '1%'", "LIKE compares text, not integer")
        try assertBindError("status + 1 > 2", "cannot compare text with integer")
        try assertBindError("qty IN (1, 'x')", "'x' is not a valid integer")
        try assertBindError("status IN (1, 2)", "IN cannot compare text with integer")
    }

    /// Dates, times, timestamps and uuids compare as their text form: a literal that is not one of
    /// them in PostgreSQL's spelling would never match, so it is refused when the predicate binds.
    func testTemporalAndUUIDLiteralsMustBeValidValues() throws {
        let events = [
            column("id", oid: 23, type: "integer", key: true), column("at", oid: 1184, type: "timestamp with time zone"),
            column("day", oid: 1082, type: "date"), column("ref", oid: 2950, type: "uuid"), column("clock", oid: 1083, type: "time without time zone"),
            column("stamps", oid: 1185, type: "timestamp with time zone[]"),
        ]
        for good in ["at > '2024-01-01'", "at >= '2024-01-01 10:00:00+00'", "at < '2024-01-01T10:00:00.5Z'", "at = 'infinity'",
                     "day = '2024-02-29'", "day < '0044-03-15 BC'", "ref = '0b9c3c5e-5f1a-4c1e-9a57-3d2f1e6b7a10'", "clock > '10:30'",
                     "'2024-01-01' < at", "at IS NULL", "stamps = '{}'"] {
            XCTAssertNoThrow(try Predicate(good).bind(to: events, table: "public.events"), good)
        }
        for (bad, type) in [("at > 'not a time'", "timestamp with time zone"), ("at > '2024-13-45'", "timestamp with time zone"),
                            ("day = 'yesterday'", "date"), ("ref > '8'", "uuid"), ("'noon' = clock", "time without time zone")] {
            XCTAssertThrowsError(try Predicate(bad).bind(to: events, table: "public.events"), bad) { error in
                XCTAssertTrue("\(error)".contains("is not a valid \(type) as PostgreSQL writes it"), "\(bad): \(error)")
            }
        }
    }

    func testRowExpressionsComputeValues() throws {
        let bound = try RowExpression("amount * qty").bind(to: orders)
        XCTAssertEqual(bound.type, .numeric)
        XCTAssertEqual(bound.evaluate(row("1", "2.50", "0", "x", "t", "3", "y")), .numeric(ExactDecimal("7.50")!))
        XCTAssertEqual(try RowExpression("qty / 2").bind(to: orders).evaluate(row("1", "0", "0", "x", "t", "7", "y")), .integer(3))
        XCTAssertEqual(try RowExpression("price * 2").bind(to: orders).type, .float)
    }
}

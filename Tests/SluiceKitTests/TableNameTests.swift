import SluiceKit
import XCTest

/// `tables:` entries and `--table` arguments follow SQL's identifier rules.
final class TableNameTests: XCTestCase {
    func parse(_ text: String) throws -> TableName { try TableName.parse(text) }

    func testUnquotedPartsFoldToLowerCaseAndDefaultToPublic() throws {
        XCTAssertEqual(try parse("orders"), TableName(schema: "public", table: "orders"))
        XCTAssertEqual(try parse("Sales.Orders"), TableName(schema: "sales", table: "orders"))
        XCTAssertEqual(try parse("public.t_1$x"), TableName(schema: "public", table: "t_1$x"))
        XCTAssertEqual(try parse("é.Ñame"), TableName(schema: "é", table: "Ñame"), "only ASCII letters fold, as in PostgreSQL")
    }

    func testQuotedPartsKeepCaseSpacesDotsAndQuotes() throws {
        XCTAssertEqual(try parse(#""My Schema"."a.b""#), TableName(schema: "My Schema", table: "a.b"))
        XCTAssertEqual(try parse(#""a.b""#), TableName(schema: "public", table: "a.b"))
        XCTAssertEqual(try parse(#"s."say ""hi""""#), TableName(schema: "s", table: #"say "hi""#))
        XCTAssertEqual(try parse(#""select"."📦 boxes""#), TableName(schema: "select", table: "📦 boxes"))
        XCTAssertEqual(try parse(#"x."it's""#), TableName(schema: "x", table: "it's"))
    }

    func testMalformedNamesAreRejectedWithTheReason() {
        func reason(_ text: String) -> TableName.ParseError? {
            do { _ = try TableName.parse(text); return nil } catch { return error }
        }
        XCTAssertEqual(reason(""), .empty)
        XCTAssertEqual(reason(#""unterminated"#), .unterminatedQuote)
        XCTAssertEqual(reason("a.b.c"), .tooManyParts)
        XCTAssertEqual(reason("a..b"), .emptyPart)
        XCTAssertEqual(reason("a."), .emptyPart)
        XCTAssertEqual(reason(#""""#), .emptyPart)
        XCTAssertEqual(reason("1abc"), .unexpected("1", at: 0))
        XCTAssertEqual(reason("a b"), .unexpected(" ", at: 1))
        XCTAssertEqual(reason(#""a"x"#), .unexpected("x", at: 3))
        XCTAssertEqual(reason(String(repeating: "a", count: 64)), .tooLong(String(repeating: "a", count: 64)))
        XCTAssertNil(reason(String(repeating: "a", count: 63)))
        XCTAssertTrue("\(reason("a.b.c")!)".contains("quote a name that contains a dot"))
    }

    func testDescriptionReadsBackAsTheSameName() throws {
        let names = [
            TableName(schema: "public", table: "orders"), TableName(schema: "My Schema", table: "a.b"),
            TableName(schema: "s", table: #"say "hi""#), TableName(schema: "Upper", table: "t"),
            TableName(schema: "public", table: "📦 boxes"), TableName(schema: "public", table: "1st"),
        ]
        for name in names { XCTAssertEqual(try parse(name.description), name, name.description) }
        XCTAssertEqual(TableName(schema: "public", table: "orders").description, "public.orders")
        XCTAssertEqual(TableName(schema: "My Schema", table: "a.b").description, #""My Schema"."a.b""#)
        XCTAssertEqual(TableName(schema: "s", table: #"q"x"#).sql, #""s"."q""x""#)
    }
}

@testable import PostgresSource
import SluiceKit
import XCTest

/// `tables:` entries with row filters and column lists: what is read from the file, and the clause the
/// publication gets.
final class PublishedTableTests: XCTestCase {
    func config(_ tables: ConfigValue) -> ConnectorConfig {
        ConnectorConfig(file: "sluice.yml", path: "sources[0] (app)", name: "app", type: "postgres",
                        entries: [("tables", tables)], line: 3, dataDirectory: "/tmp", baseDirectory: "/tmp")
    }

    func scalar(_ text: String) -> ConfigValue { .scalar(text, line: 5) }

    func testPlainNamesAndMappingsGiveThePublicationClauses() throws {
        let tables = ConfigValue.list([
            scalar("accounts"),
            .map([("name", scalar("public.orders")), ("where", scalar("status <> 'draft'")),
                  ("columns", .list([scalar("id"), scalar("Status"), scalar("\"Amount\"")], line: 6))], line: 6),
        ], line: 4)
        let parsed = try XCTUnwrap(PublishedTable.parseList(tables, config: config(tables)))
        XCTAssertEqual(parsed.map(\.publicationClause), [
            #""public"."accounts""#,
            #""public"."orders" ("id", "status", "Amount") WHERE (status <> 'draft')"#,
        ])
        XCTAssertTrue(parsed[0].isWholeTable)
        XCTAssertEqual(parsed[1].columns, ["id", "status", "Amount"], "unquoted names fold to lower case, quoted ones keep it")
    }

    func testMistakesNameTheKey() {
        let cases: [(ConfigValue, String)] = [
            (.map([("name", scalar("orders")), ("filter", scalar("x"))], line: 5), "sources[0] (app).tables[0].filter: unknown key"),
            (.map([("where", scalar("id > 1"))], line: 5), "sources[0] (app).tables[0].name: is required"),
            (.map([("name", .list([], line: 5))], line: 5), "sources[0] (app).tables[0].name: expected a table name, found a list"),
            (.map([("name", scalar("orders")), ("where", .map([], line: 5))], line: 5), "tables[0].where: expected an SQL condition"),
            (.map([("name", scalar("orders")), ("where", scalar("  "))], line: 5), "tables[0].where: is empty"),
            (.map([("name", scalar("orders")), ("columns", scalar("id"))], line: 5), "tables[0].columns: expected a list of column names"),
            (.map([("name", scalar("orders")), ("columns", .list([], line: 5))], line: 5), "tables[0].columns: is empty"),
            (.map([("name", scalar("orders")), ("columns", .list([scalar("a b")], line: 5))], line: 5), "'a b' is not a column name"),
            (.map([("name", scalar("orders")), ("columns", .list([scalar("id"), scalar("ID")], line: 5))], line: 5),
             "column id is listed twice"),
            (.list([], line: 5), "tables[0]: expected a table name or a mapping"),
        ]
        for (entry, expected) in cases {
            let tables = ConfigValue.list([entry], line: 4)
            XCTAssertThrowsError(try PublishedTable.parseList(tables, config: config(tables))) { error in
                XCTAssertTrue("\(error)".contains(expected), "\(error) does not contain \(expected)")
                XCTAssertTrue("\(error)".hasPrefix("sluice.yml:5"), "\(error) names the file and line")
            }
        }
        let twice = ConfigValue.list([scalar("orders"), .map([("name", scalar("public.orders"))], line: 6)], line: 4)
        XCTAssertThrowsError(try PublishedTable.parseList(twice, config: config(twice))) { error in
            XCTAssertTrue("\(error)".contains("tables[1]: public.orders is listed twice"), "\(error)")
        }
    }

    func testColumnNamesFollowSQLIdentifierRules() {
        XCTAssertEqual(PublishedTable.columnName("Amount_2"), "amount_2")
        XCTAssertEqual(PublishedTable.columnName("\"Mixed \"\"q\"\"\""), "Mixed \"q\"")
        XCTAssertNil(PublishedTable.columnName("2x"))
        XCTAssertNil(PublishedTable.columnName("a-b"))
        XCTAssertNil(PublishedTable.columnName("\"a\"b\""))
        XCTAssertNil(PublishedTable.columnName("\"\""))
    }
}

@testable import PostgresSource
import XCTest

/// The labels an enum array value uses, as the guard reads them from PostgreSQL's array text form.
final class SchemaGuardTests: XCTestCase {
    func testArrayElementsOfEnumArrays() {
        XCTAssertEqual(SchemaGuard.arrayElements("{}"), [])
        XCTAssertEqual(SchemaGuard.arrayElements("{s,m}"), ["s", "m"])
        XCTAssertEqual(SchemaGuard.arrayElements(#"{s,"x l",NULL,"NULL"}"#), ["s", "x l", "NULL"])
        XCTAssertEqual(SchemaGuard.arrayElements(#"{{a,"b\"c"},{"",d}}"#), ["a", "b\"c", "", "d"])
        XCTAssertEqual(SchemaGuard.arrayElements(#"{"a,b}","{x}"}"#), ["a,b}", "{x}"])
    }
}

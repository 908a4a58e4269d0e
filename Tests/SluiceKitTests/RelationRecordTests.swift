import SluiceKit
import XCTest

/// The relation record keeps NOT NULL and enum labels, and still reads records written before them.
final class RelationRecordTests: XCTestCase {
    func testNotNullAndEnumSurviveTheRecord() throws {
        var schema = keyedTable
        schema.columns[1].isNotNull = true
        schema.columns[2].enumType = .init(schema: "My Schema", name: "Mood \"Type\"", labels: ["sad", "ok", "x, y"])
        var body = RecordBody()
        schema.encode(into: &body)
        var cursor = RecordCursor(body.bytes, range: 0..<body.bytes.count)
        XCTAssertEqual(try RelationSchema.decode(&cursor), schema)
        XCTAssertTrue(cursor.isAtEnd)
    }

    /// A column entry as written before flags 0x08 and 0x10 existed reads as nullable, without an enum.
    func testRecordsWithoutTheNewFlagsStillRead() throws {
        var body = RecordBody()
        body.u32(16_385)
        body.string("public")
        body.string("t")
        body.u8(RelationSchema.ReplicaIdentity.default.rawValue)
        body.u16(1)
        body.u8(3)  // replica identity and primary key, as before
        body.string("id")
        body.u32(23)
        body.i32(-1)
        body.string("integer")
        var cursor = RecordCursor(body.bytes, range: 0..<body.bytes.count)
        let schema = try RelationSchema.decode(&cursor)
        XCTAssertEqual(schema.columns.count, 1)
        XCTAssertFalse(schema.columns[0].isNotNull)
        XCTAssertNil(schema.columns[0].enumType)
        XCTAssertTrue(schema.columns[0].isPrimaryKey)
    }
}

import Foundation
import SluiceKit
import XCTest

/// The JSON lines `sluice tail --json`, the file sink and the exec protocol share: exact strings, so
/// a change in field order or value mapping is a deliberate one.
final class RecordJSONTests: XCTestCase {
    let commitTime: Micros = 1_764_064_693_595_085
    let json = RecordJSON()

    func testBegin() {
        let begin = BeginRecord(xid: 742, commitLSN: LSN(0x1A2_B3C0), commitTime: commitTime)
        assertLine(json.begin(begin, offset: 0),
                   #"{"offset":0,"kind":"begin","xid":742,"lsn":"0/1A2B3C0","commit_time":"2025-11-25T09:58:13.595085Z"}"#)
        assertLine(RecordJSON(topic: "app").begin(begin, offset: 0),
                   #"{"offset":0,"topic":"app","kind":"begin","xid":742,"lsn":"0/1A2B3C0","commit_time":"2025-11-25T09:58:13.595085Z"}"#)
    }

    func testCommit() {
        let commit = CommitRecord(xid: 742, commitLSN: LSN(0x1A2_B3C0), endLSN: LSN(0x1A2_B3F0), commitTime: commitTime,
                                  eventCount: 3, totalEvents: 10)
        assertLine(json.commit(commit, offset: 4),
                   #"{"offset":4,"kind":"commit","xid":742,"lsn":"0/1A2B3C0","end_lsn":"0/1A2B3F0","commit_time":"2025-11-25T09:58:13.595085Z","events":3}"#)
    }

    func testRelation() {
        assertLine(json.relation(keyedTable, offset: 1),
                   #"{"offset":1,"kind":"relation","table":"public.accounts","table_schema":"public","table_name":"accounts","columns":[{"name":"id","type":"integer","primary_key":true},{"name":"name","type":"text"},{"name":"note","type":"text"}]}"#)
    }

    /// `"a.b"."c"` and `"a"."b.c"` print the same `table`; `table_schema` and `table_name` tell them apart.
    func testDottedNamesAreToldApartBySchemaAndTableName() throws {
        let dottedSchema = RelationSchema(id: 7, schema: "a.b", table: "c", replicaIdentity: .default, columns: [column("id", key: true)])
        let dottedTable = RelationSchema(id: 8, schema: "a", table: "b.c", replicaIdentity: .default, columns: [column("id", key: true)])
        let first = json.change(try makeChange(.insert, dottedSchema, new: cells("1")))
        let second = json.change(try makeChange(.insert, dottedTable, new: cells("1")))
        XCTAssertTrue(first.contains(#""table":"a.b.c","table_schema":"a.b","table_name":"c""#), first)
        XCTAssertTrue(second.contains(#""table":"a.b.c","table_schema":"a","table_name":"b.c""#), second)
        let quoted = RelationSchema(id: 9, schema: "My \"S\"", table: "t é", replicaIdentity: .default, columns: [column("id", key: true)])
        let object = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(json.relation(quoted, offset: 3).utf8)) as? [String: Any])
        XCTAssertEqual(object["table_schema"] as? String, "My \"S\"")
        XCTAssertEqual(object["table_name"] as? String, "t é")
    }

    func testInsertMapsEachTypeClass() throws {
        let table = RelationSchema(id: 5, schema: "public", table: "types", replicaIdentity: .default, columns: [
            column("i", key: true), column("big", oid: 20, type: "bigint"), column("f", oid: 701, type: "double precision"),
            column("nan", oid: 701, type: "double precision"), column("b", oid: 16, type: "boolean"),
            column("n", oid: 1700, type: "numeric"), column("j", oid: 3802, type: "jsonb"), column("by", oid: 17, type: "bytea"),
            column("t", oid: 25, type: "text"), column("nothing", oid: 25, type: "text"),
        ])
        let change = try makeChange(.insert, table, new: cells(
            "42", "99999999999999999999", "1.5", "NaN", "t", "10.50", #"{"a": 1}"#, #"\x00ff"#, "line\nbreak \"q\" \u{01} ☃", nil))
        assertLine(json.change(change),
                   #"{"offset":42,"kind":"change","op":"insert","table":"public.types","table_schema":"public","table_name":"types","lsn":"16/B374D848","before":null,"#
                   + #""after":{"i":42,"big":"99999999999999999999","f":1.5,"nan":"NaN","b":true,"n":"10.50","j":{"a":1},"#
                   + #""by":"\\x00ff","t":"line\nbreak \"q\" \u0001 ☃","nothing":null}}"#)
    }

    func testSnapshotReadWithTopic() throws {
        let change = try makeChange(.read, keyedTable, new: cells("1", "a", nil))
        assertLine(RecordJSON(topic: "app").change(change),
                   #"{"offset":42,"topic":"app","kind":"change","op":"read","table":"public.accounts","table_schema":"public","table_name":"accounts","lsn":"16/B374D848","before":null,"after":{"id":1,"name":"a","note":null}}"#)
    }

    func testUpdateWithOldKeyAndUnchangedValue() throws {
        let change = try makeChange(.update, keyedTable, oldKind: .key, old: cells("2", nil, nil),
                                    new: [.text("3"), .text("b"), .unchanged])
        assertLine(json.change(change),
                   #"{"offset":42,"kind":"change","op":"update","table":"public.accounts","table_schema":"public","table_name":"accounts","lsn":"16/B374D848","before":{"id":2},"after":{"id":3,"name":"b"},"unchanged":["note"]}"#)
    }

    func testUpdateWithFullOldRow() throws {
        let change = try makeChange(.update, keylessTable, oldKind: .full, old: cells("1", nil), new: cells("1", "6"))
        assertLine(json.change(change),
                   #"{"offset":42,"kind":"change","op":"update","table":"public.ledger","table_schema":"public","table_name":"ledger","lsn":"16/B374D848","before":{"account":1,"amount":null},"after":{"account":1,"amount":6}}"#)
    }

    func testDelete() throws {
        assertLine(json.change(try makeChange(.delete, keyedTable, oldKind: .key, old: cells("7", nil, nil))),
                   #"{"offset":42,"kind":"change","op":"delete","table":"public.accounts","table_schema":"public","table_name":"accounts","lsn":"16/B374D848","before":{"id":7},"after":null}"#)
        assertLine(json.change(try makeChange(.delete, keylessTable, oldKind: .full, old: cells("1", "5"))),
                   #"{"offset":42,"kind":"change","op":"delete","table":"public.ledger","table_schema":"public","table_name":"ledger","lsn":"16/B374D848","before":{"account":1,"amount":5},"after":null}"#)
    }

    func testTruncateOptions() throws {
        assertLine(json.change(try makeChange(.truncate, keyedTable)),
                   #"{"offset":42,"kind":"change","op":"truncate","table":"public.accounts","table_schema":"public","table_name":"accounts","lsn":"16/B374D848","before":null,"after":null}"#)
        assertLine(json.change(try makeChange(.truncate, keyedTable, truncateOptions: 3)),
                   #"{"offset":42,"kind":"change","op":"truncate","table":"public.accounts","table_schema":"public","table_name":"accounts","lsn":"16/B374D848","before":null,"after":null,"cascade":true,"restart_identity":true}"#)
    }

    /// json and jsonb are embedded as JSON on one line; JSON null is told from SQL NULL by `json_null`.
    func testJSONColumnsAreEmbedded() throws {
        let table = RelationSchema(id: 6, schema: "public", table: "docs", replicaIdentity: .default, columns: [
            column("id", key: true), column("j", oid: 114, type: "json"), column("jb", oid: 3802, type: "jsonb"),
            column("s", oid: 3802, type: "jsonb"), column("n", oid: 3802, type: "jsonb"),
        ])
        let change = try makeChange(.update, table, oldKind: .key, old: cells("1", nil, nil, nil, nil), new: cells(
            "1", "{\n  \"a\" : [1, 2],\t\"sp ace\": \"x \\\" y\"\n}", #"{"vip": true, "n": null}"#, #""just a string""#, "null"))
        assertLine(json.change(change),
                   #"{"offset":42,"kind":"change","op":"update","table":"public.docs","table_schema":"public","table_name":"docs","lsn":"16/B374D848","before":{"id":1},"#
                   + #""after":{"id":1,"j":{"a":[1,2],"sp ace":"x \" y"},"jb":{"vip":true,"n":null},"s":"just a string","n":null},"#
                   + #""json_null":["after.n"]}"#)
        // The Debezium form keeps the text.
        XCTAssertEqual(RecordJSON.value(.text(ArraySlice(#"{"a": 1}"#.utf8)), typeClass: .json), #""{\"a\": 1}""#)
    }

    /// `sluice tail` without --json: the new row alone when there are no old values.
    func testReadableLines() throws {
        XCTAssertEqual(json.text((try makeChange(.insert, keyedTable, new: cells("1", "a", nil)))),
                       #"{"id":1,"name":"a","note":null}"#)
        XCTAssertEqual(json.text((try makeChange(.update, keyedTable, new: [.text("1"), .text("b"), .unchanged]))), #"{"id":1,"name":"b"} (unchanged: note)"#)
        XCTAssertEqual(json.text((try makeChange(.update, keylessTable, oldKind: .full, old: cells("1", "5"), new: cells("1", "6")))), #"{"account":1,"amount":5} -> {"account":1,"amount":6}"#)
        XCTAssertEqual(json.text((try makeChange(.delete, keyedTable, oldKind: .key, old: cells("7", nil, nil)))), #"{"id":7}"#)
    }

    func testJSONStringEscapes() {
        XCTAssertEqual(jsonString("a\"b\\c\nd\re\tf\u{0}\u{1F}g é 😀"), #""a\"b\\c\nd\re\tf\u0000\u001fg é 😀""#)
    }

    /// Equal to `expected`, and valid JSON.
    private func assertLine(_ line: String, _ expected: String, file: StaticString = #filePath, line number: UInt = #line) {
        XCTAssertEqual(line, expected, file: file, line: number)
        XCTAssertNoThrow(try JSONSerialization.jsonObject(with: Data(line.utf8)), "not valid JSON: \(line)", file: file, line: number)
    }
}

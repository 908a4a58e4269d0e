import Foundation
@testable import SluiceKit
import XCTest

/// Each common PostgreSQL type as Debezium's default settings write it (decimal.handling.mode=precise,
/// time.precision.mode=adaptive, binary.handling.mode=bytes), against values worked out by hand
/// (the base64 ones from the two's-complement bytes written beside them).
final class DebeziumValueTests: XCTestCase {
    func value(_ text: String?, oid: UInt32, type: String, modifier: Int32 = -1) -> String {
        let column = RelationSchema.Column(name: "c", typeOID: oid, typeModifier: modifier, typeName: type,
                                           isPrimaryKey: false, isReplicaIdentity: false)
        let bytes = Array((text ?? "").utf8)
        return DebeziumValue.json(text == nil ? .null : .text(bytes[...]), column: column)
    }

    /// numeric(p, s) typmod.
    func numericModifier(_ precision: Int32, _ scale: Int32) -> Int32 { (precision << 16 | scale) + 4 }

    func testNumbersAndBooleans() {
        XCTAssertEqual(value("t", oid: 16, type: "boolean"), "true")
        XCTAssertEqual(value("f", oid: 16, type: "boolean"), "false")
        XCTAssertEqual(value("-32768", oid: 21, type: "smallint"), "-32768")
        XCTAssertEqual(value("2147483647", oid: 23, type: "integer"), "2147483647")
        XCTAssertEqual(value("9223372036854775807", oid: 20, type: "bigint"), "9223372036854775807")
        XCTAssertEqual(value("1.5", oid: 701, type: "double precision"), "1.5")
        XCTAssertEqual(value("1e+20", oid: 701, type: "double precision"), "1e+20")
        XCTAssertEqual(value("NaN", oid: 701, type: "double precision"), #""NaN""#)
        XCTAssertEqual(value("-Infinity", oid: 700, type: "real"), #""-Infinity""#)
        XCTAssertEqual(value(nil, oid: 23, type: "integer"), "null")
    }

    func testNumericIsPreciseDecimalBytes() {
        let money = numericModifier(10, 2)
        XCTAssertEqual(value("123.45", oid: 1700, type: "numeric(10,2)", modifier: money), #""MDk=""#, "12345 = 0x3039")
        XCTAssertEqual(value("-1.00", oid: 1700, type: "numeric(10,2)", modifier: money), #""nA==""#, "-100 = 0x9C")
        XCTAssertEqual(value("0.00", oid: 1700, type: "numeric(10,2)", modifier: money), #""AA==""#, "0 = 0x00")
        XCTAssertEqual(value("1.28", oid: 1700, type: "numeric(10,2)", modifier: money), #""AIA=""#, "128 = 0x0080: a sign byte")
        XCTAssertEqual(value("-1.29", oid: 1700, type: "numeric(10,2)", modifier: money), #""/38=""#, "-129 = 0xFF7F")
        XCTAssertEqual(value("-2.56", oid: 1700, type: "numeric(10,2)", modifier: money), #""/wA=""#, "-256 = 0xFF00")
        XCTAssertEqual(value("12345678901234567890.12", oid: 1700, type: "numeric(22,2)", modifier: numericModifier(22, 2)),
                       #""Qu0SOwvYIDoU""#, "1234567890123456789012 = 0x42ED123B0BD8203A14")
        XCTAssertEqual(value("-12345678901234567890.12", oid: 1700, type: "numeric(22,2)", modifier: numericModifier(22, 2)),
                       #""vRLtxPQn38Xs""#, "two's complement 0xBD12EDC4F427DFC5EC")
        XCTAssertEqual(value("7", oid: 1700, type: "numeric(5,0)", modifier: numericModifier(5, 0)), #""Bw==""#)
        // Unconstrained numeric: VariableScaleDecimal, the scale as written.
        XCTAssertEqual(value("1.5", oid: 1700, type: "numeric"), #"{"scale":1,"value":"Dw=="}"#, "15 = 0x0F")
        XCTAssertEqual(value("1.50", oid: 1700, type: "numeric"), #"{"scale":2,"value":"AJY="}"#, "150 = 0x0096")
        XCTAssertEqual(value("-42", oid: 1700, type: "numeric"), #"{"scale":0,"value":"1g=="}"#, "-42 = 0xD6")
        XCTAssertEqual(value("NaN", oid: 1700, type: "numeric"), "null", "no precise form")
        XCTAssertEqual(value("$1,234.56", oid: 790, type: "money"), #""AeJA""#, "money: 123456 = 0x01E240 at scale 2")
        XCTAssertEqual(value("-$1.29", oid: 790, type: "money"), #""/38=""#)
    }

    func testTextLikeTypesAreStrings() {
        XCTAssertEqual(value("a \"b\"\n", oid: 25, type: "text"), #""a \"b\"\n""#)
        XCTAssertEqual(value("ab   ", oid: 1042, type: "character(5)"), #""ab   ""#)
        XCTAssertEqual(value("0b8f7f5e-5a2a-4c1e-9c57-0b9a5b6c7d8e", oid: 2950, type: "uuid"), #""0b8f7f5e-5a2a-4c1e-9c57-0b9a5b6c7d8e""#)
        XCTAssertEqual(value(#"{"a": [1, 2]}"#, oid: 3802, type: "jsonb"), #""{\"a\": [1, 2]}""#, "io.debezium.data.Json: the text")
        XCTAssertEqual(value(#"{"a":1}"#, oid: 114, type: "json"), #""{\"a\":1}""#)
        XCTAssertEqual(value("<a>x</a>", oid: 142, type: "xml"), #""<a>x</a>""#)
        XCTAssertEqual(value("192.168.0.1/24", oid: 869, type: "inet"), #""192.168.0.1/24""#)
        XCTAssertEqual(value("happy", oid: 16_500, type: "mood"), #""happy""#, "an enum")
    }

    func testByteaAndBitsAreBase64() {
        XCTAssertEqual(value(#"\x0102ff"#, oid: 17, type: "bytea"), #""AQL/""#)
        XCTAssertEqual(value(#"\x"#, oid: 17, type: "bytea"), #""""#)
        XCTAssertEqual(value("1", oid: 1560, type: "bit(1)", modifier: 1), "true")
        XCTAssertEqual(value("0", oid: 1560, type: "bit(1)", modifier: 1), "false")
        XCTAssertEqual(value("1000000001", oid: 1560, type: "bit(10)", modifier: 10), #""AQI=""#, "513 little-endian: 01 02")
        XCTAssertEqual(value("101", oid: 1562, type: "bit varying"), #""BQ==""#)
    }

    func testDatesAndTimesAdaptive() {
        XCTAssertEqual(value("1970-01-01", oid: 1082, type: "date"), "0")
        XCTAssertEqual(value("2024-02-29", oid: 1082, type: "date"), "19782", "io.debezium.time.Date: days since the epoch")
        XCTAssertEqual(value("1969-12-31", oid: 1082, type: "date"), "-1")
        XCTAssertEqual(value("0001-01-01 BC", oid: 1082, type: "date"), "-719528", "year 0, proleptic Gregorian")
        XCTAssertEqual(value("infinity", oid: 1082, type: "date"), "null")
        // time(0..3): io.debezium.time.Time, milliseconds; time(4..6) and time: MicroTime, microseconds.
        XCTAssertEqual(value("13:45:30.123", oid: 1083, type: "time(3) without time zone", modifier: 3), "49530123")
        XCTAssertEqual(value("13:45:30.123456", oid: 1083, type: "time without time zone"), "49530123456")
        XCTAssertEqual(value("24:00:00", oid: 1083, type: "time without time zone"), "86400000000")
        // timestamp(0..3): Timestamp, milliseconds; timestamp(4..6) and timestamp: MicroTimestamp.
        XCTAssertEqual(value("2024-02-29 13:45:30.5", oid: 1114, type: "timestamp without time zone"), "1709214330500000")
        XCTAssertEqual(value("2024-02-29 13:45:30.5", oid: 1114, type: "timestamp(3) without time zone", modifier: 3),
                       "1709214330500")
        XCTAssertEqual(value("1969-12-31 23:59:59.999", oid: 1114, type: "timestamp(3) without time zone", modifier: 3), "-1")
        // timestamptz: ZonedTimestamp, ISO-8601 in UTC; timetz: ZonedTime.
        XCTAssertEqual(value("2024-02-29 13:45:30.5+05:30", oid: 1184, type: "timestamp with time zone"),
                       #""2024-02-29T08:15:30.5Z""#)
        XCTAssertEqual(value("2024-03-01 01:00:00+02", oid: 1184, type: "timestamp with time zone"), #""2024-02-29T23:00:00Z""#)
        XCTAssertEqual(value("2024-02-29 10:00:00.000123-08", oid: 1184, type: "timestamp with time zone"),
                       #""2024-02-29T18:00:00.000123Z""#)
        XCTAssertEqual(value("13:45:30.25+02", oid: 1266, type: "time with time zone"), #""11:45:30.25Z""#)
        XCTAssertEqual(value("01:00:00+03", oid: 1266, type: "time with time zone"), #""22:00:00Z""#)
        // interval: MicroDuration, a month counted as 365.25 / 12 days.
        XCTAssertEqual(value("1 year 2 mons 3 days 04:05:06.5", oid: 1186, type: "interval"), "37091106500000")
        XCTAssertEqual(value("-1 days +02:03:00", oid: 1186, type: "interval"), "-79020000000")
        XCTAssertEqual(value("1 mon", oid: 1186, type: "interval"), "2629800000000")
        XCTAssertEqual(value("-00:00:01", oid: 1186, type: "interval"), "-1000000")
    }

    func testArraysAndPoints() {
        XCTAssertEqual(value("{1,2,NULL}", oid: 1007, type: "integer[]"), "[1,2,null]")
        XCTAssertEqual(value(#"{a,"b c","d\"e",NULL,"NULL"}"#, oid: 1009, type: "text[]"), #"["a","b c","d\"e",null,"NULL"]"#)
        XCTAssertEqual(value("{{1,2},{3,4}}", oid: 1007, type: "integer[]"), "[[1,2],[3,4]]")
        XCTAssertEqual(value("{}", oid: 1007, type: "integer[]"), "[]")
        XCTAssertEqual(value("{1.50}", oid: 1231, type: "numeric(5,2)[]", modifier: numericModifier(5, 2)), #"["AJY="]"#)
        XCTAssertEqual(value("{2024-02-29}", oid: 1182, type: "date[]"), "[19782]")
        XCTAssertEqual(value("{happy,sad}", oid: 16_501, type: "mood[]"), #"["happy","sad"]"#, "an enum array")
        XCTAssertEqual(value("(1.5,2)", oid: 600, type: "point"),
                       #"{"x":1.5,"y":2,"wkb":"AQEAAAAAAAAAAAD4PwAAAAAAAABA","srid":null}"#)
    }

    func testUnchangedToastedValuesAreTheUnavailablePlaceholder() {
        func unchanged(_ oid: UInt32, _ type: String) -> String {
            DebeziumValue.json(.unchanged, column: RelationSchema.Column(name: "c", typeOID: oid, typeModifier: -1, typeName: type,
                                                                        isPrimaryKey: false, isReplicaIdentity: false))
        }
        XCTAssertEqual(unchanged(25, "text"), #""__debezium_unavailable_value""#)
        XCTAssertEqual(unchanged(3802, "jsonb"), #""__debezium_unavailable_value""#)
        XCTAssertEqual(unchanged(17, "bytea"), #""X19kZWJleml1bV91bmF2YWlsYWJsZV92YWx1ZQ==""#)
        XCTAssertEqual(unchanged(1009, "text[]"), #"["__debezium_unavailable_value"]"#)
    }
}

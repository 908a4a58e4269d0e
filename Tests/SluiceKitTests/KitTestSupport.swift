import Foundation
import SluiceKit
import XCTest

/// One column value for building tuples in tests, including the kinds `Tuple.encode` does not write.
enum TestCell: Equatable {
    case null
    case unchanged
    case text(String)
    case binary([UInt8])
}

/// A row of text values; nil is NULL.
func cells(_ values: String?...) -> [TestCell] { values.map { $0.map(TestCell.text) ?? .null } }

/// A tuple's bytes in the topic's layout: a 2-byte count, then per column `n`, `u`, or `t`/`b` with
/// a 4-byte length and the bytes.
func tupleBytes(_ cells: [TestCell]) -> [UInt8] {
    var body = RecordBody()
    body.u16(UInt16(cells.count))
    for cell in cells {
        switch cell {
        case .null: body.u8(UInt8(ascii: "n"))
        case .unchanged: body.u8(UInt8(ascii: "u"))
        case let .text(text):
            body.u8(UInt8(ascii: "t"))
            body.u32(UInt32(text.utf8.count))
            body.raw(Array(text.utf8))
        case let .binary(bytes):
            body.u8(UInt8(ascii: "b"))
            body.u32(UInt32(bytes.count))
            body.raw(bytes)
        }
    }
    return body.bytes
}

/// A column: `integer` unless another OID and name are given.
func column(_ name: String, oid: UInt32 = 23, type: String = "integer", key: Bool = false,
            identity: Bool? = nil) -> RelationSchema.Column {
    RelationSchema.Column(name: name, typeOID: oid, typeModifier: -1, typeName: type, isPrimaryKey: key,
                          isReplicaIdentity: identity ?? key)
}

/// `public.accounts (id integer primary key, name text, note text)`.
let keyedTable = RelationSchema(id: 16_385, schema: "public", table: "accounts", replicaIdentity: .default, columns: [
    column("id", key: true), column("name", oid: 25, type: "text"), column("note", oid: 25, type: "text"),
])

/// `public.pairs (a integer, b integer, PRIMARY KEY (a, b))` plus a text column.
let compositeKeyTable = RelationSchema(id: 16_386, schema: "public", table: "pairs", replicaIdentity: .default, columns: [
    column("a", key: true), column("b", key: true), column("label", oid: 25, type: "text"),
])

/// `public.ledger (account integer, amount integer)`, no key, REPLICA IDENTITY FULL.
let keylessTable = RelationSchema(id: 16_387, schema: "public", table: "ledger", replicaIdentity: .full, columns: [
    column("account", identity: true), column("amount", identity: true),
])

/// A change as a sink receives it, built through the record codec (encode, then decode) like the
/// runtime's reader does.
func makeChange(_ operation: ChangeOperation, _ relation: RelationSchema, oldKind: OldValuesKind = .none,
                old: [TestCell]? = nil, new: [TestCell]? = nil, truncateOptions: UInt8 = 0,
                file: StaticString = #filePath, line: UInt = #line) throws -> Change {
    var body = RecordBody()
    let oldBytes = old.map(tupleBytes) ?? []
    let newBytes = new.map(tupleBytes) ?? []
    oldBytes.withUnsafeBytes { oldRaw in
        newBytes.withUnsafeBytes { newRaw in
            ChangeRecord.encode(operation: operation, relationID: relation.id, lsn: LSN(0x16_B374_D848), oldKind: oldKind,
                                old: old == nil ? nil : oldRaw, new: new == nil ? nil : newRaw,
                                truncateOptions: truncateOptions, into: &body)
        }
    }
    var cursor = RecordCursor(body.bytes, range: 0..<body.bytes.count)
    let record = try ChangeRecord.decode(&cursor)
    XCTAssertTrue(cursor.isAtEnd, "the change record decodes to its end", file: file, line: line)
    return Change(topic: "app", offset: 42, record: record, relation: relation)
}

/// Values as strings for comparisons (`<null>`, `<unchanged>`, `<binary …>`).
func describe(_ values: [Value]) -> [String] {
    values.map { value in
        switch value {
        case .null: return "<null>"
        case .unchanged: return "<unchanged>"
        case let .text(bytes): return String(decoding: bytes, as: UTF8.self)
        case let .binary(bytes): return "<binary \(bytes.map { String(format: "%02x", $0) }.joined())>"
        }
    }
}

/// The repository's root, found from this file's path.
let kitRepositoryRoot: String = {
    var url = URL(fileURLWithPath: #filePath)
    while url.path != "/" {
        url.deleteLastPathComponent()
        if FileManager.default.fileExists(atPath: url.path + "/Package.swift") { return url.path }
    }
    fatalError("repository root not found from \(#filePath)")
}()

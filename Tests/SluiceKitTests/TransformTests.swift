@testable import SluiceKit
import XCTest

/// The per-sink transforms on change records: configuration checks, target schemas, and what each
/// change becomes (rename, exclude, masks, where with rows moving in and out, deletes, history, metadata).
final class TransformTests: XCTestCase {
    /// `public.customers (id int4 pk, email text, ssn text, amount numeric)`.
    let customers = RelationSchema(id: 16_400, schema: "public", table: "customers", replicaIdentity: .default, columns: [
        column("id", key: true), column("email", oid: 25, type: "text"), column("ssn", oid: 25, type: "text"),
        column("amount", oid: 1700, type: "numeric"),
    ])
    let transaction = TransactionInfo(xid: 777, commitTime: 1_764_590_400_000_000)

    func transforms(_ yaml: [(String, ConfigValue)]) throws -> SinkTransforms {
        let config = ConnectorConfig(file: "sluice.yml", path: "sinks[0] (t)", name: "t", type: "sqlite", entries: yaml,
                                     line: 1, dataDirectory: "/tmp", baseDirectory: "/tmp")
        return try SinkTransforms(config: config)
    }

    func s(_ text: String) -> ConfigValue { .scalar(text, line: 1) }
    func map(_ pairs: [(String, ConfigValue)]) -> ConfigValue { .map(pairs.map { (key: $0.0, value: $0.1) }, line: 1) }
    func list(_ items: [String]) -> ConfigValue { .list(items.map(s), line: 1) }

    func assertConfigError(_ yaml: [(String, ConfigValue)], _ fragment: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try transforms(yaml), file: file, line: line) { error in
            XCTAssertTrue("\(error)".contains(fragment), "\(error)", file: file, line: line)
        }
    }

    func assertMisconfigured(_ rules: SinkTransforms, _ fragment: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try TableTransform(source: customers, transforms: rules), file: file, line: line) { error in
            guard case let ConnectorError.misconfigured(message) = error else { return XCTFail("\(error)", file: file, line: line) }
            XCTAssertTrue(message.contains(fragment), message, file: file, line: line)
        }
    }

    func values(_ change: Change?) -> (old: [String]?, new: [String]?) {
        (change?.old.map { describe($0.values) }, change?.new.map { describe($0.values) })
    }

    func testHMACMatchesRFC4231() {
        XCTAssertEqual(HMACSHA256(key: Array("Jefe".utf8)).hex(Array("what do ya want for nothing?".utf8)),
                       "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
        let longKey = [UInt8](repeating: 0xaa, count: 131)
        XCTAssertEqual(HMACSHA256(key: longKey).hex(Array("Test Using Larger Than Block-Size Key - Hash Key First".utf8)),
                       "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54")
        XCTAssertEqual(SHA256.digest([UInt8]()).map { String(format: "%02x", $0) }.joined(),
                       "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
    }

    /// libcrypto's path and the Swift one agree, on values of every length around the block edges.
    func testHMACOfValuesMatchesTheSwiftReference() {
        let hmac = HMACSHA256(key: Array("bench-mask-key".utf8))
        for length in [0, 1, 31, 55, 56, 63, 64, 65, 119, 120, 200] {
            let message = (0..<length).map { UInt8(truncatingIfNeeded: $0 &* 37 &+ 11) }
            XCTAssertEqual(hmac.authenticate(message), hmac.swiftMAC(message), "\(length) bytes")
        }
    }

    /// A predicate read straight from a tuple's bytes decides as over its values, NULL and unsent values included.
    func testPredicatesOverTupleBytesMatchPredicatesOverValues() throws {
        let predicate = try Predicate("id > 1 AND (email LIKE '%@x.org' OR amount IS NULL)").bind(to: customers.columns)
        func t(_ text: String) -> Value { .text(Array(text.utf8)[...]) }
        let rows: [[Value]] = [
            [t("2"), t("a@x.org"), .null, t("1")], [t("1"), t("a@x.org"), .null, .null],
            [t("3"), t("b@y.org"), t("s"), .null], [t("3"), t("b@y.org"), t("s"), t("2")],
            [.null, .null, .null, .null], [t("5"), .unchanged, t("s"), t("1")],
        ]
        let expected: [PredicateResult] = [.true, .false, .true, .false, .null, .unavailable]
        for (row, wanted) in zip(rows, expected) {
            XCTAssertEqual(predicate.evaluate(row), wanted, "\(describe(row))")
            XCTAssertEqual(predicate.evaluate(Tuple(values: row)), wanted, "\(describe(row))")
        }
    }

    func testGlobs() throws {
        let rules = try transforms([("tables", list(["public.*", "!public.audit_*", "sales.orders"]))])
        XCTAssertTrue(rules.includes(TableName(schema: "public", table: "customers")))
        XCTAssertFalse(rules.includes(TableName(schema: "public", table: "audit_log")))
        XCTAssertTrue(rules.includes(TableName(schema: "sales", table: "orders")))
        XCTAssertFalse(rules.includes(TableName(schema: "sales", table: "orders_old")))
        let onlyExcludes = try transforms([("tables", list(["!*.tmp*"]))])
        XCTAssertTrue(onlyExcludes.includes(TableName(schema: "x", table: "y")))
        XCTAssertFalse(onlyExcludes.includes(TableName(schema: "x", table: "tmp1")))
        XCTAssertTrue(try transforms([("tables", list(["customers"]))]).includes(TableName(schema: "public", table: "customers")))
    }

    func testConfigErrorsNameTheKey() {
        assertConfigError([("where", map([("public.orders", s("amount >"))]))],
                          "sinks[0] (t).where.public.orders: \"amount >\" does not parse: at character 9: expected a value after '>'")
        assertConfigError([("mode", s("history")), ("deletes", s("soft"))], "sinks[0] (t).deletes: 'soft' does not apply to mode: history")
        assertConfigError([("columns", map([("customers", map([("mask", map([("email", s("hash"))]))]))]))],
                          "sinks[0] (t).mask_key: is required: columns.public.customers masks with hash")
        assertConfigError([("columns", map([("customers", map([("mask", map([("email", s("scramble"))]))]))]))],
                          "columns.public.customers.mask.email: must be hash, redact or keep N")
        assertConfigError([("columns", map([("customers", map([("exclude", list(["email"])), ("mask", map([("email", s("redact"))]))]))]))],
                          "email is excluded; a column is either excluded or masked")
        assertConfigError([("rename", map([("a", s("x.t")), ("b", s("x.t"))]))], "renames onto x.t, as public.a does")
        assertConfigError([("tables", list(["public.*"])), ("where", map([("other.t", s("true"))]))],
                          "where.other.t: names other.t, which tables: leaves out")
        assertConfigError([("metadata", list(["lsn", "offset"]))], "'offset' is not one of: lsn, commit_time, op, xid")
        assertConfigError([("deletes", s("hard"))], "'hard' is not one of: apply, soft, ignore")
        assertConfigError([("mode", s("history")), ("metadata", list(["lsn"]))], "metadata: is not needed with mode: history")
    }

    func testUnknownColumnsAndKeysFailWhenTheSchemaIsSeen() throws {
        assertMisconfigured(try transforms([("columns", map([("customers", map([("exclude", list(["phone"]))]))]))]),
                            "columns.public.customers: unknown column phone in public.customers (columns: id, email, ssn, amount)")
        assertMisconfigured(try transforms([("columns", map([("customers", map([("exclude", list(["id"]))]))]))]),
                            "id identifies rows of public.customers")
        assertMisconfigured(try transforms([("where", map([("customers", s("total > 1"))]))]),
                            "where.public.customers: \"total > 1\": at character 1: unknown column total")
        assertMisconfigured(try transforms([("where", map([("customers", s("email > 1"))]))]), "cannot compare text with integer")
        let keyless = RelationSchema(id: 1, schema: "public", table: "customers", replicaIdentity: .full, columns: [column("a")])
        XCTAssertThrowsError(try TableTransform(source: keyless, transforms: try transforms([("deletes", s("soft"))])))
    }

    /// REPLICA IDENTITY FULL flags every column as identity; with a primary key only the key identifies rows.
    func testExcludingUnderReplicaIdentityFullKeepsOnlyTheKey() throws {
        let full = RelationSchema(id: 2, schema: "public", table: "customers", replicaIdentity: .full, columns: [
            column("id", key: true), column("email", oid: 25, type: "text", identity: true), column("ssn", oid: 25, type: "text", identity: true),
        ])
        let plan = try TableTransform(source: full, transforms: try transforms([("columns", map([("customers", map([("exclude", list(["ssn"]))]))]))]))
        XCTAssertEqual(plan.target.columns.map(\.name), ["id", "email"])
        XCTAssertThrowsError(try TableTransform(source: full, transforms: try transforms([("columns", map([("customers", map([("exclude", list(["id"]))]))]))])))
        let keyless = RelationSchema(id: 3, schema: "public", table: "customers", replicaIdentity: .full, columns: [
            column("a", identity: true), column("b", identity: true),
        ])
        XCTAssertThrowsError(try TableTransform(source: keyless, transforms: try transforms([("columns", map([("customers", map([("exclude", list(["b"]))]))]))])),
                             "a keyless row is matched on every column")
        let byIndex = RelationSchema(id: 4, schema: "public", table: "customers", replicaIdentity: .index, columns: [
            column("id", key: true), column("code", identity: true), column("note", oid: 25, type: "text"),
        ])
        XCTAssertThrowsError(try TableTransform(source: byIndex, transforms: try transforms([("columns", map([("customers", map([("exclude", list(["code"]))]))]))])),
                             "the old key of REPLICA IDENTITY USING INDEX names code")
    }

    func testRenameExcludeMaskAndMetadata() throws {
        let rules = try transforms([
            ("rename", map([("public.customers", s("crm.people"))])), ("mask_key", s("Jefe")),
            ("columns", map([("customers", map([("exclude", list(["ssn"])), ("mask", map([("email", s("hash")), ("id", s("hash"))]))]))])),
            ("metadata", list(["op", "lsn", "xid", "commit_time"])),
        ])
        let plan = try TableTransform(source: customers, transforms: rules)
        XCTAssertEqual(plan.target.qualifiedName, "crm.people")
        XCTAssertEqual(plan.target.columns.map(\.name), ["id", "email", "amount", "_sluice_op", "_sluice_lsn", "_sluice_xid", "_sluice_commit_time"])
        XCTAssertEqual(plan.target.columns.map(\.typeName), ["text", "text", "numeric", "text", "pg_lsn", "bigint", "timestamp with time zone"])
        XCTAssertEqual(plan.target.primaryKey, [0], "a hashed key is still the key")
        let hash = HMACSHA256(key: Array("Jefe".utf8))
        let insert = try makeChange(.insert, customers, new: cells("1", "a@x.org", "123-45", "9.50"))
        let out = try plan.transform(insert, in: transaction)
        XCTAssertEqual(values(out).new, [hash.hex(Array("1".utf8)), hash.hex(Array("a@x.org".utf8)), "9.50", "insert", "16/B374D848",
                                         "777", "2025-12-01 12:00:00.000000+00"])
        XCTAssertEqual(out?.relation.qualifiedName, "crm.people")
        // The delete's old key is hashed the same way, so it finds the row.
        let delete = try makeChange(.delete, customers, oldKind: .key, old: cells("1", nil, nil, nil))
        XCTAssertEqual(values(try plan.transform(delete, in: transaction)).old,
                       [hash.hex(Array("1".utf8))] + [String](repeating: "<null>", count: 6))
        XCTAssertEqual(values(try plan.transform(try makeChange(.insert, customers, new: cells("2", nil, "x", "1")), in: transaction)).new?[1], "<null>",
                       "NULL stays NULL")
    }

    /// The new row written straight from the tuple's bytes (inserts, updates without a full old row)
    /// is the same tuple, byte for byte, as the one built from values (updates with a full old row).
    func testRowsWrittenFromTheTupleEqualRowsBuiltFromValues() throws {
        let rules = try transforms([
            ("mask_key", s("Jefe")), ("deletes", s("soft")), ("metadata", list(["op", "lsn", "xid", "commit_time"])),
            ("columns", map([("customers", map([("exclude", list(["amount"])), ("mask", map([("email", s("hash")), ("ssn", s("redact"))]))]))])),
        ])
        let plan = try TableTransform(source: customers, transforms: rules)
        for row: [TestCell] in [cells("1", "a@x.org", "123", "9.50"), cells("2", nil, nil, nil), [.text("3"), .unchanged, .text("s"), .text("1")]] {
            let direct = try XCTUnwrap(try plan.transform(try makeChange(.update, customers, new: row), in: transaction))
            let built = try XCTUnwrap(try plan.transform(try makeChange(.update, customers, oldKind: .full, old: row, new: row), in: transaction))
            XCTAssertEqual(direct.new.map { Array($0.bytes) }, built.new.map { Array($0.bytes) }, "\(row)")
            XCTAssertEqual(values(direct).new?.count, 9, "id, email, ssn, four metadata columns, two soft-delete ones")
        }
        let insert = try XCTUnwrap(try plan.transform(try makeChange(.insert, customers, new: cells("1", "a@x.org", "123", "9.50")), in: transaction))
        XCTAssertEqual(values(insert).new, ["1", HMACSHA256(key: Array("Jefe".utf8)).hex(Array("a@x.org".utf8)), "<null>", "insert",
                                            "16/B374D848", "777", "2025-12-01 12:00:00.000000+00", "f", "<null>"])
    }

    /// `keep N` keeps the first N characters (not bytes) of the text form; NULL stays NULL; the column
    /// becomes text. A key column may only be hashed: redacted or cut, rows would share one key.
    func testKeepMaskKeepsAPrefixOfCharactersAndKeysMayOnlyBeHashed() throws {
        XCTAssertEqual(SinkTransforms.Mask("keep 4"), .keep(4))
        XCTAssertEqual(SinkTransforms.Mask("keep(2)"), .keep(2))
        for bad in ["keep", "keep 0", "keep -1", "keep x", "keep +3", "keeps 3"] { XCTAssertNil(SinkTransforms.Mask(bad), bad) }
        assertConfigError([("columns", map([("customers", map([("mask", map([("email", s("keep 0"))]))]))]))], "keep N")
        let rules = try transforms([("columns", map([("customers", map([("mask", map([("email", s("keep 3")), ("amount", s("keep 2"))]))]))]))])
        let plan = try TableTransform(source: customers, transforms: rules)
        XCTAssertEqual(plan.target.columns.map(\.typeName), ["integer", "text", "text", "text"])
        for (email, kept) in [("ab", "ab"), ("abcdef", "abc"), ("ééé€x", "ééé"), ("日本語テキスト", "日本語"), ("", "")] {
            let out = try plan.transform(try makeChange(.insert, customers, new: cells("1", email, "s", "123.45")), in: transaction)
            XCTAssertEqual(values(out).new, ["1", kept, "s", "12"], email)
        }
        XCTAssertEqual(values(try plan.transform(try makeChange(.insert, customers, new: cells("1", nil, "s", nil)), in: transaction)).new,
                       ["1", "<null>", "s", "<null>"])
        for mask in ["redact", "keep 1"] {
            assertMisconfigured(try transforms([("columns", map([("customers", map([("mask", map([("id", s(mask))]))]))]))]),
                                "mask it with hash instead")
        }
    }

    func testMaskedColumnsAddedWithADefaultGetTheMaskedDefault() throws {
        var columns = customers.columns
        columns[1].existingRowsValue = "none@x.org"
        columns[2].existingRowsValue = "000"
        let table = RelationSchema(id: customers.id, schema: "public", table: "customers", replicaIdentity: .default, columns: columns)
        let rules = try transforms([("mask_key", s("Jefe")),
                                    ("columns", map([("customers", map([("mask", map([("email", s("hash")), ("ssn", s("redact"))]))]))]))])
        let plan = try TableTransform(source: table, transforms: rules)
        XCTAssertEqual(plan.target.columns[1].existingRowsValue, HMACSHA256(key: Array("Jefe".utf8)).hex(Array("none@x.org".utf8)))
        XCTAssertNil(plan.target.columns[2].existingRowsValue)
    }

    func testWhereMovesRowsInAndOut() throws {
        let plan = try TableTransform(source: customers, transforms: try transforms([("where", map([("customers", s("amount > 100"))]))]))
        XCTAssertNil(try plan.transform(try makeChange(.insert, customers, new: cells("1", "a", "s", "50")), in: transaction))
        XCTAssertNotNil(try plan.transform(try makeChange(.insert, customers, new: cells("1", "a", "s", "150")), in: transaction))
        XCTAssertNil(try plan.transform(try makeChange(.insert, customers, new: cells("1", "a", "s", nil)), in: transaction), "NULL is not true")
        // Into the predicate: an upsert of the whole row (the sink inserts it).
        let into = try plan.transform(try makeChange(.update, customers, new: cells("1", "a", "s", "150")), in: transaction)
        XCTAssertEqual(into?.operation, .update)
        // Out of it: a delete by the row's key.
        let out = try plan.transform(try makeChange(.update, customers, new: cells("1", "a", "s", "50")), in: transaction)
        XCTAssertEqual(out?.operation, .delete)
        XCTAssertEqual(out?.oldKind, .key)
        XCTAssertEqual(values(out).old, ["1", "<null>", "<null>", "<null>"])
        // A delete with only the key cannot be judged: it is applied (a no-op if the row was never there).
        XCTAssertEqual(try plan.transform(try makeChange(.delete, customers, oldKind: .key, old: cells("1", nil, nil, nil)), in: transaction)?.operation, .delete)
        // A value the predicate needs that was not sent stops the sink, naming the fix.
        let toast = try makeChange(.update, customers, new: [.text("1"), .text("a"), .text("s"), .unchanged])
        XCTAssertThrowsError(try plan.transform(toast, in: transaction)) { error in
            XCTAssertTrue("\(error)".contains("REPLICA IDENTITY FULL"), "\(error)")
        }
        // Under REPLICA IDENTITY FULL the old row fills it in, and a full old row that never passed is not deleted.
        let full = RelationSchema(id: customers.id, schema: "public", table: "customers", replicaIdentity: .full, columns: customers.columns)
        let fullPlan = try TableTransform(source: full, transforms: plan.rules)
        let filled = try makeChange(.update, full, oldKind: .full, old: cells("1", "a", "s", "150"),
                                    new: [.text("1"), .text("b"), .text("s"), .unchanged])
        XCTAssertEqual(values(try fullPlan.transform(filled, in: transaction)).new, ["1", "b", "s", "150"])
        XCTAssertNil(try fullPlan.transform(try makeChange(.delete, full, oldKind: .full, old: cells("1", "a", "s", "5")), in: transaction))
    }

    func testSoftAndIgnoredDeletes() throws {
        let soft = try TableTransform(source: customers, transforms: try transforms([("deletes", s("soft"))]))
        XCTAssertEqual(soft.target.columns.suffix(2).map(\.name), ["_sluice_deleted", "_sluice_deleted_at"])
        let insert = try soft.transform(try makeChange(.insert, customers, new: cells("1", "a", "s", "5")), in: transaction)
        XCTAssertEqual(values(insert).new, ["1", "a", "s", "5", "f", "<null>"], "a (re-)insert clears the mark")
        let delete = try soft.transform(try makeChange(.delete, customers, oldKind: .key, old: cells("1", nil, nil, nil)), in: transaction)
        XCTAssertEqual(delete?.operation, .update)
        XCTAssertEqual(values(delete).new, ["<unchanged>", "<unchanged>", "<unchanged>", "<unchanged>", "t", "2025-12-01 12:00:00.000000+00"])
        XCTAssertEqual(values(delete).old, ["1", "<null>", "<null>", "<null>", "<null>", "<null>"])
        let ignore = try TableTransform(source: customers, transforms: try transforms([("deletes", s("ignore"))]))
        XCTAssertNil(try ignore.transform(try makeChange(.delete, customers, oldKind: .key, old: cells("1", nil, nil, nil)), in: transaction))
        XCTAssertNil(try ignore.transform(try makeChange(.truncate, customers), in: transaction))
    }

    func testHistoryRecordsEveryChangeAsAnInsert() throws {
        let plan = try TableTransform(source: customers, transforms: try transforms([("mode", s("history"))]))
        XCTAssertEqual(plan.target.columns.map(\.name), ["_sluice_op", "_sluice_lsn", "_sluice_xid", "_sluice_commit_time", "id", "email", "ssn", "amount"])
        XCTAssertTrue(plan.target.primaryKey.isEmpty, "a history table is keyless")
        let update = try plan.transform(try makeChange(.update, customers, new: [.text("1"), .text("b"), .unchanged, .text("2")]), in: transaction)
        XCTAssertEqual(update?.operation, .insert)
        XCTAssertEqual(values(update).new, ["update", "16/B374D848", "777", "2025-12-01 12:00:00.000000+00", "1", "b", "<null>", "2"])
        let delete = try plan.transform(try makeChange(.delete, customers, oldKind: .key, old: cells("1", nil, nil, nil)), in: transaction)
        XCTAssertEqual(values(delete).new?.prefix(5), ["delete", "16/B374D848", "777", "2025-12-01 12:00:00.000000+00", "1"])
        XCTAssertEqual(values(try plan.transform(try makeChange(.truncate, customers), in: transaction)).new?.first, "truncate")
    }
}

import PGOutput
import XCTest

/// Decodes messages captured from a real PostgreSQL 15 (see `Fixtures/capture.sh`) and checks
/// them against what the capture workload wrote.
final class DecoderFixtureTests: XCTestCase {
    static let expectedFixtures = [
        "binary", "crud", "messages", "origin", "replica_identity",
        "stream_abort", "stream_commit", "toast", "truncate", "types",
    ]

    // MARK: - Every fixture

    func testFixtureSetIsComplete() throws {
        XCTAssertEqual(try FixtureFile.allNames(), Self.expectedFixtures)
    }

    func testEveryLineOfEveryFixtureDecodes() throws {
        var total = 0
        for name in try FixtureFile.allNames() {
            let fixture = try FixtureFile.named(name)
            XCTAssertFalse(fixture.messages.isEmpty, "\(name).hex has no messages")
            let decoded = try fixture.decodeAll()
            XCTAssertEqual(decoded.count, fixture.messages.count)
            XCTAssertFalse(decoded.last?.inStream ?? true, "\(name).hex ends inside a stream block")
            total += decoded.count
        }
        XCTAssertGreaterThan(total, 200)
    }

    /// Between them, the fixtures hold every message type, every tuple column kind and both old-tuple forms.
    func testFixturesCoverEveryMessageTypeAndTupleKind() throws {
        var tags = Set<Character>()
        var cellKinds = Set<String>()
        var oldKinds = Set<String>()
        var identities = Set<UInt8>()
        func note(_ tuple: TupleData) {
            for cell in tuple.cells {
                switch cell {
                case .null: cellKinds.insert("n")
                case .unchanged: cellKinds.insert("u")
                case .text: cellKinds.insert("t")
                case .binary: cellKinds.insert("b")
                }
            }
        }
        func note(_ old: Update.OldTuple?) {
            switch old {
            case let .key(tuple)?: oldKinds.insert("K"); note(tuple)
            case let .full(tuple)?: oldKinds.insert("O"); note(tuple)
            case nil: oldKinds.insert("none")
            }
        }
        for name in try FixtureFile.allNames() {
            for decoded in try FixtureFile.named(name).decodeAll() {
                tags.insert(decoded.message.tag)
                switch decoded.message {
                case let .insert(insert): note(insert.new)
                case let .update(update): note(update.old); note(update.new)
                case let .delete(delete): note(delete.old)
                case let .relation(relation): identities.insert(relation.replicaIdentity)
                default: break
                }
            }
        }
        XCTAssertEqual(tags, Set("BCORYIUDTMSEcA"))
        XCTAssertEqual(cellKinds, ["n", "u", "t", "b"])
        XCTAssertEqual(oldKinds, ["K", "O", "none"])
        XCTAssertEqual(identities, Set("dfni".utf8))
    }

    /// Every Begin is closed by a Commit for the same commit LSN and time; positions only grow.
    func testBeginAndCommitPairUp() throws {
        for name in try FixtureFile.allNames() {
            var open: Begin?
            var lastEnd: UInt64 = 0
            var commits = 0
            for decoded in try FixtureFile.named(name).decodeAll() {
                switch decoded.message {
                case let .begin(begin):
                    XCTAssertNil(open, "\(name):\(decoded.line): nested Begin")
                    XCTAssertGreaterThan(begin.finalLSN, lastEnd, "\(name):\(decoded.line)")
                    XCTAssertNotEqual(begin.xid, 0)
                    open = begin
                case let .commit(commit):
                    let begin = try XCTUnwrap(open, "\(name):\(decoded.line): Commit without Begin")
                    XCTAssertEqual(commit.flags, 0)
                    XCTAssertEqual(commit.commitLSN, begin.finalLSN, "\(name):\(decoded.line)")
                    XCTAssertGreaterThan(commit.endLSN, commit.commitLSN)
                    XCTAssertEqual(commit.commitTime, begin.commitTime)
                    lastEnd = commit.endLSN
                    open = nil
                    commits += 1
                default:
                    break
                }
            }
            XCTAssertNil(open, "\(name): unterminated transaction")
            if !name.hasPrefix("stream") { XCTAssertGreaterThan(commits, 0, name) }
        }
    }

    /// Outside stream blocks no change message carries an xid.
    func testNoXidOutsideStreams() throws {
        for name in try FixtureFile.allNames() {
            var inStream = false
            for decoded in try FixtureFile.named(name).decodeAll() {
                if case .streamStart = decoded.message { inStream = true }
                if !inStream {
                    XCTAssertNil(decoded.message.changeXid, "\(name):\(decoded.line)")
                }
                if case .streamStop = decoded.message { inStream = false }
            }
        }
    }

    // MARK: - types: Type message, column types, NULLs

    func testTypesRelationAndEnumType() throws {
        let decoded = try FixtureFile.named("types").decodeAll()
        XCTAssertEqual(decoded.tags, "BYRICBIC")

        let type = try XCTUnwrap(decoded[1].message.typeMessage)
        XCTAssertNil(type.xid)
        XCTAssertEqual(type.namespace, "public")
        XCTAssertEqual(type.name, "mood")
        XCTAssertGreaterThanOrEqual(type.oid, 16384, "a user-defined type")

        let relation = try decoded.relation(named: "types_demo")
        XCTAssertNil(relation.xid)
        XCTAssertEqual(relation.namespace, "public")
        XCTAssertEqual(relation.replicaIdentity, UInt8(ascii: "d"))
        XCTAssertGreaterThanOrEqual(relation.oid, 16384)
        let expected: [Relation.Column] = [
            .init(isKey: true, name: "id", typeOID: 23, typeModifier: -1),
            .init(isKey: false, name: "small", typeOID: 21, typeModifier: -1),
            .init(isKey: false, name: "big", typeOID: 20, typeModifier: -1),
            .init(isKey: false, name: "label", typeOID: 25, typeModifier: -1),
            .init(isKey: false, name: "code", typeOID: 1043, typeModifier: 20 + 4),  // varchar(20)
            .init(isKey: false, name: "amount", typeOID: 1700, typeModifier: (10 << 16 | 2) + 4),  // numeric(10,2)
            .init(isKey: false, name: "flag", typeOID: 16, typeModifier: -1),
            .init(isKey: false, name: "ratio", typeOID: 701, typeModifier: -1),
            .init(isKey: false, name: "at", typeOID: 1184, typeModifier: -1),
            .init(isKey: false, name: "day", typeOID: 1082, typeModifier: -1),
            .init(isKey: false, name: "uid", typeOID: 2950, typeModifier: -1),
            .init(isKey: false, name: "doc", typeOID: 3802, typeModifier: -1),
            .init(isKey: false, name: "raw", typeOID: 17, typeModifier: -1),
            .init(isKey: false, name: "feeling", typeOID: type.oid, typeModifier: -1),
            .init(isKey: false, name: "tags", typeOID: 1007, typeModifier: -1),
        ]
        XCTAssertEqual(relation.columns, expected)
    }

    func testTypesInsertValuesAndNulls() throws {
        let decoded = try FixtureFile.named("types").decodeAll()
        let relation = try decoded.relation(named: "types_demo")
        let inserts = decoded.compactMap(\.message.insert)
        XCTAssertEqual(inserts.count, 2)
        XCTAssertEqual(inserts.map(\.relationOID), [relation.oid, relation.oid])
        XCTAssertEqual(inserts[0].new.columnCount, 15)
        XCTAssertEqual(inserts[0].new.cells, [
            "1", "-32768", "9223372036854775807", "hello, world", "abc", "12345.67", "t", "1.5",
            "2024-01-02 03:04:05.123456+00", "2024-02-29", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
            #"{"k": [1, 2, 3]}"#, #"\xdeadbeef"#, "happy", "{1,2,3}",
        ])
        XCTAssertEqual(inserts[0].new.values.map(\.string), inserts[0].new.cells.map {
            if case let .text(text) = $0 { text } else { nil }
        })
        XCTAssertEqual(inserts[1].new.cells, ["2"] + Array(repeating: Cell.null, count: 14))
        XCTAssertEqual(inserts[1].new.values.map(\.string), ["2"] + Array(repeating: nil, count: 14))
        // The tuple view is the message's tail: oid(4) + 'N' after the tag.
        XCTAssertEqual(inserts[1].new.bytes.count, decoded[6].bytes.count - 6)
        XCTAssertEqual(Array(inserts[1].new.bytes.prefix(2)), [0, 15])
    }

    // MARK: - crud: default replica identity

    func testCrudInsertUpdateDelete() throws {
        let decoded = try FixtureFile.named("crud").decodeAll()
        XCTAssertEqual(decoded.tags, "BRIICBUCBUCBDC")
        let relation = try decoded.relation(named: "accounts")
        XCTAssertEqual(relation.replicaIdentity, UInt8(ascii: "d"))
        XCTAssertEqual(relation.columns.map(\.name), ["id", "owner", "balance"])
        XCTAssertEqual(relation.columns.map(\.isKey), [true, false, false])
        XCTAssertEqual(relation.columns.map(\.typeOID), [23, 25, 1700])
        XCTAssertEqual(relation.columns[2].typeModifier, (12 << 16 | 2) + 4)

        let transactions = decoded.transactions
        XCTAssertEqual(transactions.count, 4)
        // One transaction, two inserts.
        let inserts = transactions[0].compactMap(\.message.insert)
        XCTAssertEqual(inserts.map(\.new.cells), [["1", "alice", "100.00"], ["2", "bob", .null]])
        XCTAssertTrue(inserts.allSatisfy { $0.relationOID == relation.oid && $0.xid == nil })

        // UPDATE of a non-key column: no old tuple.
        let plain = try XCTUnwrap(transactions[1].first?.message.update)
        XCTAssertEqual(plain.relationOID, relation.oid)
        XCTAssertNil(plain.old)
        XCTAssertEqual(plain.new.cells, ["1", "alice", "250.50"])

        // UPDATE of the primary key: the old key, non-key columns null.
        let keyChange = try XCTUnwrap(transactions[2].first?.message.update)
        guard case let .key(oldKey)? = keyChange.old else { return XCTFail("expected old 'K', got \(String(describing: keyChange.old))") }
        XCTAssertEqual(oldKey.cells, ["2", .null, .null])
        XCTAssertEqual(keyChange.old?.tuple, oldKey)
        XCTAssertEqual(keyChange.new.cells, ["10", "bob", .null])

        // DELETE: the key.
        let delete = try XCTUnwrap(transactions[3].first?.message.delete)
        XCTAssertEqual(delete.relationOID, relation.oid)
        XCTAssertNil(delete.xid)
        guard case let .key(deletedKey) = delete.old else { return XCTFail("expected 'K', got \(delete.old)") }
        XCTAssertEqual(deletedKey.cells, ["1", .null, .null])
    }

    // MARK: - replica identity FULL, NOTHING, USING INDEX, keyless

    func testReplicaIdentityFull() throws {
        let decoded = try FixtureFile.named("replica_identity").decodeAll()
        XCTAssertEqual(decoded.tags, "BRICBUCBDCBRICBRICBUCBDCBRIIC")
        let relation = try decoded.relation(named: "audit_full")
        XCTAssertEqual(relation.replicaIdentity, UInt8(ascii: "f"))
        XCTAssertEqual(relation.columns.map(\.name), ["id", "note", "qty"])
        XCTAssertEqual(relation.columns.map(\.typeOID), [23, 25, 23])
        XCTAssertEqual(relation.columns.map(\.isKey), [true, true, true], "every column is part of a FULL identity")

        let updates = decoded.compactMap(\.message.update).filter { $0.relationOID == relation.oid }
        XCTAssertEqual(updates.count, 1)
        guard case let .full(oldRow)? = updates[0].old else { return XCTFail("expected old 'O'") }
        XCTAssertEqual(oldRow.cells, ["1", "first", "5"])
        XCTAssertEqual(updates[0].new.cells, ["1", "first", "6"])

        let deletes = decoded.compactMap(\.message.delete).filter { $0.relationOID == relation.oid }
        XCTAssertEqual(deletes.count, 1)
        guard case let .full(deletedRow) = deletes[0].old else { return XCTFail("expected 'O'") }
        XCTAssertEqual(deletedRow.cells, ["1", "first", "6"])
    }

    func testReplicaIdentityNothingIndexAndKeyless() throws {
        let decoded = try FixtureFile.named("replica_identity").decodeAll()

        let nothing = try decoded.relation(named: "ident_nothing")
        XCTAssertEqual(nothing.replicaIdentity, UInt8(ascii: "n"))
        XCTAssertEqual(nothing.columns.map(\.isKey), [false, false])

        let index = try decoded.relation(named: "ident_index")
        XCTAssertEqual(index.replicaIdentity, UInt8(ascii: "i"))
        XCTAssertEqual(index.columns.map(\.name), ["id", "code", "val"])
        XCTAssertEqual(index.columns.map(\.isKey), [false, true, false])
        let update = try XCTUnwrap(decoded.compactMap(\.message.update).first { $0.relationOID == index.oid })
        guard case let .key(oldKey)? = update.old else { return XCTFail("expected old 'K'") }
        XCTAssertEqual(oldKey.cells, [.null, "c-1", .null])
        XCTAssertEqual(update.new.cells, ["1", "c-2", "v1"])
        let delete = try XCTUnwrap(decoded.compactMap(\.message.delete).first { $0.relationOID == index.oid })
        XCTAssertEqual(delete.old, .key(delete.old.tuple))
        XCTAssertEqual(delete.old.tuple.cells, [.null, "c-2", .null])

        let keyless = try decoded.relation(named: "keyless")
        XCTAssertEqual(keyless.replicaIdentity, UInt8(ascii: "d"))
        XCTAssertEqual(keyless.columns, [
            .init(isKey: false, name: "a", typeOID: 25, typeModifier: -1),
            .init(isKey: false, name: "b", typeOID: 23, typeModifier: -1),
        ])
        let rows = decoded.compactMap(\.message.insert).filter { $0.relationOID == keyless.oid }.map(\.new.cells)
        XCTAssertEqual(rows, [["no key", "7"], [.null, .null]])
    }

    // MARK: - truncate

    func testTruncateOptionsAndRelations() throws {
        let decoded = try FixtureFile.named("truncate").decodeAll()
        XCTAssertEqual(decoded.tags, "BRICBRICBRICBRTCBICBICBRRTCBRRRTC")
        let names = decoded.relationNames
        let truncates = decoded.compactMap(\.message.truncate)
        XCTAssertEqual(truncates.count, 3)
        XCTAssertTrue(truncates.allSatisfy { $0.xid == nil })

        XCTAssertEqual(truncates[0].options, [])
        XCTAssertEqual(truncates[0].relationOIDs.map { names[$0] }, ["trunc_serial"])

        XCTAssertEqual(truncates[1].options, .cascade)
        XCTAssertEqual(truncates[1].options.rawValue, 1)
        XCTAssertEqual(truncates[1].relationOIDs.map { names[$0] }, ["trunc_parent", "trunc_child"])

        XCTAssertEqual(truncates[2].options, [.cascade, .restartIdentity])
        XCTAssertEqual(truncates[2].options.rawValue, 3)
        XCTAssertEqual(Set(truncates[2].relationOIDs.compactMap { names[$0] }),
                       ["trunc_parent", "trunc_serial", "trunc_child"])
        XCTAssertEqual(truncates[2].relationOIDs.count, 3)

        // Each Truncate is preceded, in its transaction, by a Relation for every table it names.
        for transaction in decoded.transactions {
            guard let truncate = transaction.last?.message.truncate else { continue }
            let sent = transaction.compactMap(\.message.relation).map(\.oid)
            XCTAssertEqual(Set(sent), Set(truncate.relationOIDs))
        }
    }

    // MARK: - logical messages

    func testLogicalMessages() throws {
        let decoded = try FixtureFile.named("messages").decodeAll()
        XCTAssertEqual(decoded.tags, "MBRIMMCM")
        let messages = decoded.compactMap(\.message.logicalMessage)
        XCTAssertEqual(messages.count, 4)
        XCTAssertTrue(messages.allSatisfy { $0.xid == nil && $0.lsn != 0 })

        // Non-transactional messages are sent at once, before the transaction that wrote them commits.
        XCTAssertFalse(messages[0].isTransactional)
        XCTAssertEqual(messages[0].prefix, "fixture.nontx")
        XCTAssertEqual(String(decoding: messages[0].content, as: UTF8.self), "non-transactional payload")

        XCTAssertTrue(messages[1].isTransactional)
        XCTAssertEqual(messages[1].prefix, "fixture.tx")
        XCTAssertEqual(String(decoding: messages[1].content, as: UTF8.self), "transactional payload")

        XCTAssertTrue(messages[2].isTransactional)
        XCTAssertEqual(messages[2].prefix, "fixture.bytes")
        XCTAssertEqual(Array(messages[2].content), [0x00, 0xFF, 0x10])
        XCTAssertLessThan(messages[1].lsn, messages[2].lsn)

        XCTAssertFalse(messages[3].isTransactional)
        XCTAssertEqual(messages[3].prefix, "fixture.empty")
        XCTAssertEqual(messages[3].content.count, 0)

        // The transactional ones sit inside the transaction, after its insert.
        let transaction = try XCTUnwrap(decoded.transactions.first)
        XCTAssertEqual(transaction.map(\.message.tag), ["R", "I", "M", "M"])
        XCTAssertEqual(transaction[1].message.insert?.new.cells, ["100", "msg", "1.00"])
        // A message's LSN is the end of its WAL record: the last one ends where the commit record starts.
        let commit = try XCTUnwrap(decoded.compactMap(\.message.commit).first)
        XCTAssertEqual(messages[2].lsn, commit.commitLSN)
        XCTAssertGreaterThan(messages[3].lsn, commit.commitLSN)
    }

    // MARK: - origin

    func testOrigin() throws {
        let decoded = try FixtureFile.named("origin").decodeAll()
        XCTAssertEqual(decoded.tags, "BORIC")
        let origin = try XCTUnwrap(decoded[1].message.origin)
        XCTAssertEqual(origin.name, "fixture_origin")
        XCTAssertEqual(origin.commitLSN, 0xABCDEF, "set with pg_replication_origin_xact_setup('0/ABCDEF', …)")
        XCTAssertEqual(formatLSN(origin.commitLSN), "0/ABCDEF")
        // pg_replication_origin_xact_setup also set the commit timestamp: 2024-01-02 03:04:05 UTC.
        let begin = try XCTUnwrap(decoded[0].message.begin)
        XCTAssertEqual(begin.commitTime, pgMicros(unixSeconds: 1_704_164_645))
        XCTAssertEqual(decoded[3].message.insert?.new.cells, ["1", "from elsewhere"])
        XCTAssertEqual(try decoded.relation(named: "origin_demo").columns.map(\.name), ["id", "v"])
    }

    // MARK: - TOAST

    func testUnchangedToast() throws {
        let decoded = try FixtureFile.named("toast").decodeAll()
        XCTAssertEqual(decoded.tags, "BRICBUCBDC")
        let relation = try decoded.relation(named: "docs")
        XCTAssertEqual(relation.columns.map(\.name), ["id", "title", "body"])

        // The insert carries the whole 9600-byte value: md5(1) || md5(2) || … || md5(300).
        let insert = try XCTUnwrap(decoded.compactMap(\.message.insert).first)
        let cells = insert.new.cells
        XCTAssertEqual(Array(cells.prefix(2)), ["1", "v1"])
        guard case let .text(body) = cells[2] else { return XCTFail("body is \(cells[2])") }
        XCTAssertEqual(body.utf8.count, 9600)
        XCTAssertTrue(body.hasPrefix("c4ca4238a0b923820dcc509a6f75849b" + "c81e728d9d4c2f636f067f89cc14862c"))
        XCTAssertTrue(body.hasSuffix("94f6d7e04a4d452035300f18b984988c"), "md5('300')")
        XCTAssertTrue(body.allSatisfy(\.isHexDigit))

        // Updating another column: the TOASTed value is not sent.
        let update = try XCTUnwrap(decoded.compactMap(\.message.update).first)
        XCTAssertNil(update.old)
        XCTAssertEqual(update.new.cells, ["1", "v2", .unchanged])
        XCTAssertEqual(update.new.values.map(\.string), ["1", "v2", nil])
        XCTAssertEqual(Array(update.new.values)[2], .unchangedToast)

        let delete = try XCTUnwrap(decoded.compactMap(\.message.delete).first)
        XCTAssertEqual(delete.old.tuple.cells, ["1", .null, .null])
    }

    // MARK: - binary

    func testBinaryTupleValues() throws {
        let decoded = try FixtureFile.named("binary").decodeAll()
        XCTAssertEqual(decoded.tags, "BRICBUC")
        let relation = try decoded.relation(named: "bin_demo")
        XCTAssertEqual(relation.columns.map(\.typeOID), [23, 20, 25, 16, 701, 17, 23])

        let insert = try XCTUnwrap(decoded.compactMap(\.message.insert).first)
        XCTAssertEqual(insert.new.cells, [
            .binary(be(Int32(42))),
            .binary(be(Int64(-2))),
            .binary(Array("bin text".utf8)),
            .binary([1]),
            .binary(be((0.5 as Double).bitPattern)),
            .binary([0x00, 0x01, 0xFF]),
            .null,
        ])
        let values = Array(insert.new.values)
        guard case let .binary(id) = values[0] else { return XCTFail("id is \(values[0])") }
        XCTAssertEqual(id.loadUnaligned(as: UInt32.self).bigEndian, 42)
        XCTAssertEqual(values[2].string, "bin text")
        XCTAssertNotEqual(values[2], .text(values[2].binaryBytes!), "binary and text values never compare equal")

        let update = try XCTUnwrap(decoded.compactMap(\.message.update).first)
        XCTAssertNil(update.old)
        XCTAssertEqual(update.new.cells[2], .binary(Array("changed".utf8)))
        XCTAssertEqual(update.new.cells[6], .null)
    }
}

extension TupleValue {
    var binaryBytes: UnsafeRawBufferPointer? {
        if case let .binary(bytes) = self { bytes } else { nil }
    }
}

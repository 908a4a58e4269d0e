import SluiceKit
import XCTest

/// `RowAction` is decided once for every sink: each case here is a change pgoutput can send, and
/// what a mirroring target must do with it.
final class RowActionTests: XCTestCase {
    // MARK: Keyed tables

    func testInsertAndSnapshotReadIntoKeyedTableAreUpserts() throws {
        for operation in [ChangeOperation.insert, .read] {
            let action = RowAction(try makeChange(operation, keyedTable, new: cells("1", "a", nil)))
            guard case let .upsert(tuple) = action else { return XCTFail("\(operation.name): \(action)") }
            XCTAssertEqual(describe(tuple.values), ["1", "a", "<null>"])
        }
    }

    func testUpdateWithoutOldKeyIsUpsert() throws {
        // REPLICA IDENTITY DEFAULT and the key did not change: pgoutput sends no old tuple.
        let action = RowAction(try makeChange(.update, keyedTable, new: cells("1", "b", "n")))
        guard case let .upsert(tuple) = action else { return XCTFail("\(action)") }
        XCTAssertEqual(describe(tuple.values), ["1", "b", "n"])
    }

    func testUpdateWithFullOldRowAndSameKeyIsUpsert() throws {
        // REPLICA IDENTITY FULL on a keyed table: the whole old row comes, the key is the same.
        let action = RowAction(try makeChange(.update, keyedTable, oldKind: .full, old: cells("1", "a", "n"),
                                              new: cells("1", "b", "n")))
        guard case .upsert = action else { return XCTFail("\(action)") }
    }

    func testPrimaryKeyChangeDeletesOldKeyThenUpserts() throws {
        let action = RowAction(try makeChange(.update, keyedTable, oldKind: .key, old: cells("2", nil, nil),
                                              new: cells("20", "b", nil)))
        guard case let .deleteThenUpsert(match, tuple) = action else { return XCTFail("\(action)") }
        XCTAssertEqual(match.columns, [0])
        XCTAssertEqual(describe(match.values), ["2"])
        XCTAssertEqual(describe(tuple.values), ["20", "b", "<null>"])
    }

    func testCompositeKeyChangeOfOneColumn() throws {
        let action = RowAction(try makeChange(.update, compositeKeyTable, oldKind: .key, old: cells("1", "2", nil),
                                              new: cells("1", "3", "x")))
        guard case let .deleteThenUpsert(match, _) = action else { return XCTFail("\(action)") }
        XCTAssertEqual(match.columns, [0, 1])
        XCTAssertEqual(describe(match.values), ["1", "2"])
    }

    func testFullOldRowOfKeyedTableMatchesOnPrimaryKeyOnly() throws {
        let action = RowAction(try makeChange(.update, keyedTable, oldKind: .full, old: cells("2", "a", "n"),
                                              new: cells("3", "a", "n")))
        guard case let .deleteThenUpsert(match, _) = action else { return XCTFail("\(action)") }
        XCTAssertEqual(match.columns, [0], "the old row is found by its primary key, not by every column")
        XCTAssertEqual(describe(match.values), ["2"])
    }

    func testUnchangedToastedValueMakesPartialUpdateByNewKey() throws {
        let action = RowAction(try makeChange(.update, keyedTable, new: [.text("1"), .text("b"), .unchanged]))
        guard case let .update(present, new, match) = action else { return XCTFail("\(action)") }
        XCTAssertEqual(present, [0, 1], "the unchanged column is not written")
        XCTAssertEqual(describe(new), ["1", "b", "<unchanged>"])
        XCTAssertEqual(match, KeyMatch(columns: [0], values: [.text(ArraySlice("1".utf8))]))
    }

    func testUnchangedToastedValueWithKeyChangeMatchesOldKey() throws {
        let action = RowAction(try makeChange(.update, keyedTable, oldKind: .key, old: cells("2", nil, nil),
                                              new: [.text("3"), .text("b"), .unchanged]))
        guard case let .update(present, _, match) = action else { return XCTFail("\(action)") }
        XCTAssertEqual(present, [0, 1], "the new key is set on the row the old key finds")
        XCTAssertEqual(match.columns, [0])
        XCTAssertEqual(describe(match.values), ["2"])
    }

    func testDeleteByKey() throws {
        let action = RowAction(try makeChange(.delete, keyedTable, oldKind: .key, old: cells("7", nil, nil)))
        guard case let .delete(match) = action else { return XCTFail("\(action)") }
        XCTAssertEqual(match.columns, [0])
        XCTAssertEqual(describe(match.values), ["7"])
    }

    func testDeleteWithFullOldRowOfKeyedTableIsByKey() throws {
        let action = RowAction(try makeChange(.delete, compositeKeyTable, oldKind: .full, old: cells("1", "2", "x")))
        guard case let .delete(match) = action else { return XCTFail("\(action)") }
        XCTAssertEqual(match.columns, [0, 1])
    }

    func testReplicaIdentityIndexMatchesOnItsColumns() throws {
        // REPLICA IDENTITY USING INDEX on a unique column that is not the primary key.
        let table = RelationSchema(id: 9, schema: "public", table: "users", replicaIdentity: .index, columns: [
            column("id", key: true, identity: false), column("email", oid: 25, type: "text", identity: true),
        ])
        let action = RowAction(try makeChange(.delete, table, oldKind: .key, old: cells(nil, "a@b")))
        guard case let .delete(match) = action else { return XCTFail("\(action)") }
        XCTAssertEqual(match.columns, [1])
        XCTAssertEqual(describe(match.values), ["a@b"])
    }

    func testDeleteWithoutOldValuesDoesNothing() throws {
        guard case .none = RowAction(try makeChange(.delete, keyedTable, oldKind: .none)) else { return XCTFail() }
    }

    // MARK: Keyless tables

    func testInsertIntoKeylessTableAddsOneRow() throws {
        for operation in [ChangeOperation.insert, .read] {
            guard case let .insert(tuple) = RowAction(try makeChange(operation, keylessTable, new: cells("1", "5"))) else {
                return XCTFail(operation.name)
            }
            XCTAssertEqual(describe(tuple.values), ["1", "5"])
        }
    }

    func testKeylessUpdateChangesOneRowEqualToTheOld() throws {
        let action = RowAction(try makeChange(.update, keylessTable, oldKind: .full, old: cells("1", nil),
                                              new: cells("1", "6")))
        guard case let .updateOneRow(old, new) = action else { return XCTFail("\(action)") }
        XCTAssertEqual(describe(old), ["1", "<null>"], "NULL is part of the row to find")
        XCTAssertEqual(describe(new), ["1", "6"])
    }

    func testKeylessUpdateKeepsUnchangedColumns() throws {
        let action = RowAction(try makeChange(.update, keylessTable, oldKind: .full, old: cells("1", "5"),
                                              new: [.text("2"), .unchanged]))
        guard case let .updateOneRow(_, new) = action else { return XCTFail("\(action)") }
        XCTAssertEqual(describe(new), ["2", "<unchanged>"])
    }

    func testKeylessUpdateWithoutOldRowAddsTheNewRow() throws {
        // REPLICA IDENTITY DEFAULT without a key: nothing identifies the old row.
        guard case let .insert(tuple) = RowAction(try makeChange(.update, keylessTable, new: cells("3", "4"))) else {
            return XCTFail()
        }
        XCTAssertEqual(describe(tuple.values), ["3", "4"])
    }

    func testKeylessDeleteRemovesOneRowEqualToTheOld() throws {
        guard case let .deleteOneRow(old) = RowAction(try makeChange(.delete, keylessTable, oldKind: .full,
                                                                      old: cells("1", "5"))) else { return XCTFail() }
        XCTAssertEqual(describe(old), ["1", "5"])
    }

    // MARK: Truncate

    func testTruncateKeepsItsOptions() throws {
        for options: UInt8 in [0, 1, 2, 3] {
            guard case let .truncate(got) = RowAction(try makeChange(.truncate, keyedTable, truncateOptions: options)) else {
                return XCTFail()
            }
            XCTAssertEqual(got, options)
        }
    }
}

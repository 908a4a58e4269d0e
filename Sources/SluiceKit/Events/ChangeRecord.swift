/// One row change as stored in a topic.
///
/// Layout: operation, relation id, LSN, then by operation:
/// read/insert: new tuple; update: old kind, old tuple if any, new tuple;
/// delete: old kind, old tuple; truncate: options (1 cascade, 2 restart identity, 4 backfill).
public struct ChangeRecord: Sendable {
    public var operation: ChangeOperation
    public var relationID: UInt32
    /// WAL position of the change (the snapshot's consistent point for reads).
    public var lsn: LSN
    public var oldKind: OldValuesKind
    /// The old key or row of an update or delete.
    public var old: Tuple?
    /// The new row of a read, insert or update.
    public var new: Tuple?
    public var truncateOptions: UInt8

    /// Truncate option: not a TRUNCATE at the source but the start of a backfill's whole copy of a table
    /// without a key; the table's rows follow as `read` changes in the same transaction.
    public static let backfillTruncate: UInt8 = 4

    public static func decode(_ cursor: inout RecordCursor) throws(RecordError) -> ChangeRecord {
        let opByte = try cursor.u8()
        guard let op = ChangeOperation(rawValue: opByte) else {
            throw RecordError.malformed("change operation \(opByte)", at: cursor.position - 1)
        }
        let relation = try cursor.u32()
        let lsn = LSN(try cursor.u64())
        var record = ChangeRecord(operation: op, relationID: relation, lsn: lsn, oldKind: .none, old: nil, new: nil,
                                  truncateOptions: 0)
        switch op {
        case .read, .insert:
            record.new = try cursor.tuple()
        case .update, .delete:
            let kindByte = try cursor.u8()
            guard let kind = OldValuesKind(rawValue: kindByte) else {
                throw RecordError.malformed("old values kind \(kindByte)", at: cursor.position - 1)
            }
            record.oldKind = kind
            if kind != .none { record.old = try cursor.tuple() }
            if op == .update { record.new = try cursor.tuple() }
        case .truncate:
            record.truncateOptions = try cursor.u8()
        }
        return record
    }

    /// Writes a change whose tuples are given in the tuple layout (as pgoutput sends them).
    public static func encode(operation: ChangeOperation, relationID: UInt32, lsn: LSN,
                              oldKind: OldValuesKind = .none, old: UnsafeRawBufferPointer? = nil,
                              new: UnsafeRawBufferPointer? = nil, truncateOptions: UInt8 = 0,
                              into body: inout RecordBody) {
        body.u8(operation.rawValue)
        body.u32(relationID)
        body.u64(lsn.rawValue)
        switch operation {
        case .read, .insert:
            body.raw(new!)
        case .update, .delete:
            body.u8(oldKind.rawValue)
            if oldKind != .none { body.raw(old!) }
            if operation == .update { body.raw(new!) }
        case .truncate:
            body.u8(truncateOptions)
        }
    }
}

/// A decoded topic record.
public enum TopicRecord: Sendable {
    case begin(BeginRecord)
    case relation(RelationSchema)
    case change(ChangeRecord)
    case commit(CommitRecord)

    public static func decode(kind: UInt8, storage: [UInt8], body: Range<Int>) throws(RecordError) -> TopicRecord {
        var cursor = RecordCursor(storage, range: body)
        guard let kind = RecordKind(rawValue: kind) else { throw RecordError.unknownKind(kind) }
        let record: TopicRecord
        switch kind {
        case .begin: record = .begin(try BeginRecord.decode(&cursor))
        case .relation: record = .relation(try RelationSchema.decode(&cursor))
        case .change: record = .change(try ChangeRecord.decode(&cursor))
        case .commit: record = .commit(try CommitRecord.decode(&cursor))
        }
        guard cursor.isAtEnd else { throw RecordError.malformed("trailing bytes", at: cursor.position) }
        return record
    }
}

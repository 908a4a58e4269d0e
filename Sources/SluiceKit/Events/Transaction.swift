/// Opens a source transaction in a topic.
public struct BeginRecord: Sendable, Equatable {
    public var xid: UInt32
    /// LSN of the commit record (equal to the commit marker's `commitLSN`).
    public var commitLSN: LSN
    public var commitTime: Micros

    public init(xid: UInt32, commitLSN: LSN, commitTime: Micros) {
        self.xid = xid
        self.commitLSN = commitLSN
        self.commitTime = commitTime
    }

    public func encode(into body: inout RecordBody) {
        body.u32(xid)
        body.u64(commitLSN.rawValue)
        body.i64(commitTime)
    }

    public static func decode(_ cursor: inout RecordCursor) throws(RecordError) -> BeginRecord {
        BeginRecord(xid: try cursor.u32(), commitLSN: LSN(try cursor.u64()), commitTime: try cursor.i64())
    }
}

/// Closes a source transaction: only records followed by their commit marker are ever read.
public struct CommitRecord: Sendable, Equatable {
    public var xid: UInt32
    public var commitLSN: LSN
    /// Where the source resumes after this transaction (the slot's confirmed flush position).
    public var endLSN: LSN
    public var commitTime: Micros
    /// Changes in this transaction.
    public var eventCount: UInt64
    /// Changes in the topic up to and including this transaction: lag in events is a subtraction.
    public var totalEvents: UInt64

    public init(xid: UInt32, commitLSN: LSN, endLSN: LSN, commitTime: Micros, eventCount: UInt64, totalEvents: UInt64) {
        self.xid = xid
        self.commitLSN = commitLSN
        self.endLSN = endLSN
        self.commitTime = commitTime
        self.eventCount = eventCount
        self.totalEvents = totalEvents
    }

    public func encode(into body: inout RecordBody) {
        body.u32(xid)
        body.u64(commitLSN.rawValue)
        body.u64(endLSN.rawValue)
        body.i64(commitTime)
        body.u64(eventCount)
        body.u64(totalEvents)
    }

    public static func decode(_ cursor: inout RecordCursor) throws(RecordError) -> CommitRecord {
        CommitRecord(xid: try cursor.u32(), commitLSN: LSN(try cursor.u64()), endLSN: LSN(try cursor.u64()),
                     commitTime: try cursor.i64(), eventCount: try cursor.u64(), totalEvents: try cursor.u64())
    }
}

extension RelationSchema {
    public func encode(into body: inout RecordBody) {
        body.u32(id)
        body.string(schema)
        body.string(table)
        body.u8(replicaIdentity.rawValue)
        body.u16(UInt16(columns.count))
        for column in columns {
            body.u8((column.isReplicaIdentity ? 1 : 0) | (column.isPrimaryKey ? 2 : 0)
                    | (column.existingRowsValue != nil ? 4 : 0) | (column.isNotNull ? 8 : 0)
                    | (column.enumType != nil ? 16 : 0))
            body.string(column.name)
            body.u32(column.typeOID)
            body.i32(column.typeModifier)
            body.string(column.typeName)
            if let value = column.existingRowsValue { body.string(value) }
            if let type = column.enumType {
                body.string(type.schema)
                body.string(type.name)
                body.u16(UInt16(min(type.labels.count, Int(UInt16.max))))
                for label in type.labels.prefix(Int(UInt16.max)) { body.string(label) }
            }
        }
    }

    public static func decode(_ cursor: inout RecordCursor) throws(RecordError) -> RelationSchema {
        let id = try cursor.u32()
        let schema = try cursor.string()
        let table = try cursor.string()
        let identityByte = try cursor.u8()
        guard let identity = ReplicaIdentity(rawValue: identityByte) else {
            throw RecordError.malformed("replica identity \(identityByte)", at: cursor.position - 1)
        }
        let count = Int(try cursor.u16())
        var columns: [Column] = []
        columns.reserveCapacity(count)
        for _ in 0..<count {
            let flags = try cursor.u8()
            var column = Column(name: try cursor.string(), typeOID: try cursor.u32(), typeModifier: try cursor.i32(),
                                typeName: try cursor.string(), isPrimaryKey: flags & 2 != 0,
                                isReplicaIdentity: flags & 1 != 0,
                                existingRowsValue: flags & 4 != 0 ? try cursor.string() : nil,
                                isNotNull: flags & 8 != 0)
            if flags & 16 != 0 {
                let schema = try cursor.string()
                let name = try cursor.string()
                let count = Int(try cursor.u16())
                var labels: [String] = []
                labels.reserveCapacity(count)
                for _ in 0..<count { labels.append(try cursor.string()) }
                column.enumType = EnumType(schema: schema, name: name, labels: labels)
            }
            columns.append(column)
        }
        return RelationSchema(id: id, schema: schema, table: table, replicaIdentity: identity, columns: columns)
    }
}

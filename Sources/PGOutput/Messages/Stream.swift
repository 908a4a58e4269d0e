/// 'S': the start of a block of changes of an in-progress transaction (protocol version 2).
public struct StreamStart: Equatable {
    public let xid: UInt32
    public let isFirstSegment: Bool

    static func decode(from reader: inout ByteReader) throws(PGOutputError) -> StreamStart {
        StreamStart(xid: try reader.readUInt32("xid"), isFirstSegment: try reader.readUInt8("first segment") == 1)
    }
}

/// 'c': a streamed transaction committed.
public struct StreamCommit: Equatable {
    public let xid: UInt32
    public let flags: UInt8
    public let commitLSN: UInt64
    public let endLSN: UInt64
    public let commitTime: Int64

    static func decode(from reader: inout ByteReader) throws(PGOutputError) -> StreamCommit {
        StreamCommit(xid: try reader.readUInt32("xid"),
                     flags: try reader.readUInt8("commit flags"),
                     commitLSN: try reader.readUInt64("commit LSN"),
                     endLSN: try reader.readUInt64("end LSN"),
                     commitTime: try reader.readInt64("commit time"))
    }
}

/// 'A': a streamed transaction, or one of its subtransactions, aborted.
public struct StreamAbort: Equatable {
    public let xid: UInt32
    public let subtransactionXid: UInt32

    static func decode(from reader: inout ByteReader) throws(PGOutputError) -> StreamAbort {
        StreamAbort(xid: try reader.readUInt32("xid"), subtransactionXid: try reader.readUInt32("subtransaction xid"))
    }
}

/// 'B': the start of a committed transaction (sent only when it commits, unless streaming).
public struct Begin: Equatable {
    /// LSN of the transaction's commit record.
    public let finalLSN: UInt64
    /// Commit time in microseconds since 2000-01-01 UTC.
    public let commitTime: Int64
    public let xid: UInt32

    static func decode(from reader: inout ByteReader) throws(PGOutputError) -> Begin {
        Begin(finalLSN: try reader.readUInt64("final LSN"),
              commitTime: try reader.readInt64("commit time"),
              xid: try reader.readUInt32("xid"))
    }
}

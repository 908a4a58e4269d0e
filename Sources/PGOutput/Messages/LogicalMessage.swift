/// 'M': a message written with `pg_logical_emit_message` (sent when the `messages` option is on).
public struct LogicalMessage: Equatable {
    public let xid: UInt32?
    /// Written inside the transaction (true) or immediately (false).
    public let isTransactional: Bool
    public let lsn: UInt64
    public let prefix: String
    public let content: UnsafeRawBufferPointer

    public static func == (lhs: LogicalMessage, rhs: LogicalMessage) -> Bool {
        lhs.xid == rhs.xid && lhs.isTransactional == rhs.isTransactional && lhs.lsn == rhs.lsn
            && lhs.prefix == rhs.prefix && lhs.content.elementsEqual(rhs.content)
    }

    static func decode(from reader: inout ByteReader, streaming: Bool) throws(PGOutputError) -> LogicalMessage {
        let xid = streaming ? try reader.readUInt32("xid") : nil
        let flags = try reader.readUInt8("message flags")
        let lsn = try reader.readUInt64("message LSN")
        let prefix = try reader.readCString("message prefix")
        let lengthOffset = reader.offset
        let length = try reader.readInt32("message length")
        guard length >= 0 else { throw PGOutputError(.negativeLength(length), at: lengthOffset) }
        return LogicalMessage(xid: xid, isTransactional: flags & 1 != 0, lsn: lsn, prefix: prefix,
                              content: try reader.readBytes(Int(length), "message content"))
    }
}

/// 'D': a removed row, identified by its key ('K') or, under REPLICA IDENTITY FULL, the whole row ('O').
public struct Delete: Equatable {
    public let xid: UInt32?
    public let relationOID: UInt32
    public let old: Update.OldTuple

    static func decode(from reader: inout ByteReader, streaming: Bool) throws(PGOutputError) -> Delete {
        let xid = streaming ? try reader.readUInt32("xid") : nil
        let oid = try reader.readUInt32("relation OID")
        let at = reader.offset
        let marker = try reader.readUInt8("tuple marker")
        let old: Update.OldTuple
        switch marker {
        case UInt8(ascii: "K"): old = .key(try TupleData.decode(from: &reader))
        case UInt8(ascii: "O"): old = .full(try TupleData.decode(from: &reader))
        default: throw PGOutputError(.unexpectedByte(expected: "'K' or 'O'", got: marker), at: at)
        }
        return Delete(xid: xid, relationOID: oid, old: old)
    }
}

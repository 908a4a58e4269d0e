/// 'U': a changed row, with the old key ('K') when the key changed, or the whole old row ('O')
/// under REPLICA IDENTITY FULL.
public struct Update: Equatable {
    public enum OldTuple: Equatable {
        case key(TupleData)
        case full(TupleData)

        public var tuple: TupleData {
            switch self {
            case let .key(tuple), let .full(tuple): return tuple
            }
        }
    }

    public let xid: UInt32?
    public let relationOID: UInt32
    public let old: OldTuple?
    public let new: TupleData

    static func decode(from reader: inout ByteReader, streaming: Bool) throws(PGOutputError) -> Update {
        let xid = streaming ? try reader.readUInt32("xid") : nil
        let oid = try reader.readUInt32("relation OID")
        let at = reader.offset
        var marker = try reader.readUInt8("tuple marker")
        var old: OldTuple?
        switch marker {
        case UInt8(ascii: "K"):
            old = .key(try TupleData.decode(from: &reader))
            marker = try reader.readUInt8("tuple marker")
        case UInt8(ascii: "O"):
            old = .full(try TupleData.decode(from: &reader))
            marker = try reader.readUInt8("tuple marker")
        default:
            break
        }
        guard marker == UInt8(ascii: "N") else {
            throw PGOutputError(.unexpectedByte(expected: "'K', 'O' or 'N'", got: marker),
                                at: old == nil ? at : reader.offset - 1)
        }
        return Update(xid: xid, relationOID: oid, old: old, new: try TupleData.decode(from: &reader))
    }
}

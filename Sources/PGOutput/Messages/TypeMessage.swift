/// 'Y': the name of a non-built-in type used by a following Relation.
public struct TypeMessage: Equatable {
    public let xid: UInt32?
    public let oid: UInt32
    public let namespace: String
    public let name: String

    static func decode(from reader: inout ByteReader, streaming: Bool) throws(PGOutputError) -> TypeMessage {
        TypeMessage(xid: streaming ? try reader.readUInt32("xid") : nil,
                    oid: try reader.readUInt32("type OID"),
                    namespace: try reader.readCString("type namespace"),
                    name: try reader.readCString("type name"))
    }
}

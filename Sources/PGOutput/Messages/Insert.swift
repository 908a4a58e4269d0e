/// 'I': a new row.
public struct Insert: Equatable {
    public let xid: UInt32?
    public let relationOID: UInt32
    public let new: TupleData

    static func decode(from reader: inout ByteReader, streaming: Bool) throws(PGOutputError) -> Insert {
        let xid = streaming ? try reader.readUInt32("xid") : nil
        let oid = try reader.readUInt32("relation OID")
        try expect(UInt8(ascii: "N"), "'N' (new tuple)", in: &reader)
        return Insert(xid: xid, relationOID: oid, new: try TupleData.decode(from: &reader))
    }
}

extension TupleData: Equatable {
    public static func == (lhs: TupleData, rhs: TupleData) -> Bool {
        lhs.columnCount == rhs.columnCount && lhs.bytes.elementsEqual(rhs.bytes)
    }
}

func expect(_ byte: UInt8, _ name: String, in reader: inout ByteReader) throws(PGOutputError) {
    let at = reader.offset
    let got = try reader.readUInt8("tuple marker")
    guard got == byte else { throw PGOutputError(.unexpectedByte(expected: name, got: got), at: at) }
}

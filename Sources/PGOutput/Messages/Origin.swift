/// 'O': the transaction was replicated from another origin.
public struct Origin: Equatable {
    public let commitLSN: UInt64
    public let name: String

    static func decode(from reader: inout ByteReader) throws(PGOutputError) -> Origin {
        Origin(commitLSN: try reader.readUInt64("origin commit LSN"), name: try reader.readCString("origin name"))
    }
}

/// 'R': a table's shape, sent before its first change in a session and after each schema change.
public struct Relation: Equatable, Sendable {
    public struct Column: Equatable, Sendable {
        /// Part of the replica identity (the key pgoutput sends for updates and deletes).
        public let isKey: Bool
        public let name: String
        public let typeOID: UInt32
        public let typeModifier: Int32

        public init(isKey: Bool, name: String, typeOID: UInt32, typeModifier: Int32) {
            self.isKey = isKey
            self.name = name
            self.typeOID = typeOID
            self.typeModifier = typeModifier
        }
    }

    /// Present only inside a streamed transaction (protocol version 2).
    public let xid: UInt32?
    public let oid: UInt32
    /// Empty for pg_catalog.
    public let namespace: String
    public let name: String
    /// REPLICA IDENTITY: 'd' default, 'n' nothing, 'f' full, 'i' index.
    public let replicaIdentity: UInt8
    public let columns: [Column]

    static func decode(from reader: inout ByteReader, streaming: Bool) throws(PGOutputError) -> Relation {
        let xid = streaming ? try reader.readUInt32("xid") : nil
        let oid = try reader.readUInt32("relation OID")
        let namespace = try reader.readCString("namespace")
        let name = try reader.readCString("relation name")
        let identity = try reader.readUInt8("replica identity")
        let count = Int(try reader.readUInt16("column count"))
        var columns: [Column] = []
        // Each column takes at least 10 bytes: a corrupt count cannot make us reserve megabytes.
        columns.reserveCapacity(min(count, reader.remaining / 10))
        for _ in 0..<count {
            let flags = try reader.readUInt8("column flags")
            columns.append(Column(isKey: flags & 1 != 0,
                                  name: try reader.readCString("column name"),
                                  typeOID: try reader.readUInt32("column type OID"),
                                  typeModifier: try reader.readInt32("column type modifier")))
        }
        return Relation(xid: xid, oid: oid, namespace: namespace, name: name,
                        replicaIdentity: identity, columns: columns)
    }
}

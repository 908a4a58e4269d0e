/// 'T': TRUNCATE of one or more tables.
public struct Truncate: Equatable {
    public struct Options: OptionSet, Equatable, Sendable {
        public let rawValue: UInt8
        public init(rawValue: UInt8) { self.rawValue = rawValue }
        public static let cascade = Options(rawValue: 1)
        public static let restartIdentity = Options(rawValue: 2)
    }

    public let xid: UInt32?
    public let options: Options
    public let relationOIDs: [UInt32]

    static func decode(from reader: inout ByteReader, streaming: Bool) throws(PGOutputError) -> Truncate {
        let xid = streaming ? try reader.readUInt32("xid") : nil
        let count = Int(try reader.readUInt32("relation count"))
        let options = Options(rawValue: try reader.readUInt8("truncate options"))
        // Checked before allocating so a corrupt count cannot ask for gigabytes.
        try reader.need(count &* 4, "relation OIDs")
        var oids: [UInt32] = []
        oids.reserveCapacity(count)
        for _ in 0..<count { oids.append(try reader.readUInt32("relation OID")) }
        return Truncate(xid: xid, options: options, relationOIDs: oids)
    }
}

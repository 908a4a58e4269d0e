/// The two fields a streaming client needs to stage a message of an in-progress transaction
/// without decoding it: its type and the (sub)transaction it belongs to.
///
/// Inside a stream block (Stream Start … Stream Stop), Relation, Type, Insert, Update, Delete,
/// Truncate and Message carry the xid of the subtransaction that made them right after the type
/// byte. A client keeps such messages aside until the Stream Commit and then decodes them with
/// ``PGOutputDecoder/init(inStream:)``.
public struct StreamedChange: Equatable {
    public let tag: UInt8
    /// The subtransaction's xid, or the top-level transaction's when no savepoint is involved.
    public let xid: UInt32

    public init(tag: UInt8, xid: UInt32) {
        self.tag = tag
        self.xid = xid
    }

    /// The types that carry an xid inside a stream block.
    public static let tags: Set<UInt8> = Set("RYIUDTM".utf8)

    /// Relation and Type describe schema, not changes: a client keeps them even when the
    /// subtransaction they arrived in aborts, because pgoutput does not send them again.
    public var isSchema: Bool { tag == UInt8(ascii: "R") || tag == UInt8(ascii: "Y") }

    /// The header of `bytes` when they are a message that carries an xid inside a stream block,
    /// nil for any other message (stream control, Begin, Commit, Origin).
    public static func peek(_ bytes: UnsafeRawBufferPointer) throws(PGOutputError) -> StreamedChange? {
        var reader = ByteReader(bytes)
        guard !reader.isAtEnd else { throw PGOutputError(.empty, at: 0) }
        let tag = try reader.readUInt8("message type")
        guard tags.contains(tag) else { return nil }
        return StreamedChange(tag: tag, xid: try reader.readUInt32("xid"))
    }
}

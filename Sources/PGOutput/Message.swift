/// One pgoutput message (protocol versions 1 and 2), as decoded from the payload of an XLogData frame.
public enum Message: Equatable {
    case begin(Begin)
    case commit(Commit)
    case origin(Origin)
    case relation(Relation)
    case type(TypeMessage)
    case insert(Insert)
    case update(Update)
    case delete(Delete)
    case truncate(Truncate)
    case message(LogicalMessage)
    case streamStart(StreamStart)
    case streamStop
    case streamCommit(StreamCommit)
    case streamAbort(StreamAbort)
}

/// Decodes pgoutput messages.
///
/// The only state is whether a stream block (Stream Start … Stream Stop) is open, because inside
/// one, Relation, Type, Insert, Update, Delete, Truncate and Message carry the xid first.
/// Messages hold views into the input buffer: use them before the buffer is freed.
public struct PGOutputDecoder {
    public private(set) var inStream = false

    public init() {}

    /// A decoder already inside a stream block: for messages of a streamed transaction that were
    /// kept aside (see ``StreamedChange``) and are decoded at its Stream Commit.
    public init(inStream: Bool) {
        self.inStream = inStream
    }

    public mutating func decode(_ bytes: UnsafeRawBufferPointer) throws(PGOutputError) -> Message {
        var reader = ByteReader(bytes)
        guard !reader.isAtEnd else { throw PGOutputError(.empty, at: 0) }
        let tag = try reader.readUInt8("message type")
        let message: Message
        switch tag {
        case UInt8(ascii: "B"): message = .begin(try Begin.decode(from: &reader))
        case UInt8(ascii: "C"): message = .commit(try Commit.decode(from: &reader))
        case UInt8(ascii: "O"): message = .origin(try Origin.decode(from: &reader))
        case UInt8(ascii: "R"): message = .relation(try Relation.decode(from: &reader, streaming: inStream))
        case UInt8(ascii: "Y"): message = .type(try TypeMessage.decode(from: &reader, streaming: inStream))
        case UInt8(ascii: "I"): message = .insert(try Insert.decode(from: &reader, streaming: inStream))
        case UInt8(ascii: "U"): message = .update(try Update.decode(from: &reader, streaming: inStream))
        case UInt8(ascii: "D"): message = .delete(try Delete.decode(from: &reader, streaming: inStream))
        case UInt8(ascii: "T"): message = .truncate(try Truncate.decode(from: &reader, streaming: inStream))
        case UInt8(ascii: "M"): message = .message(try LogicalMessage.decode(from: &reader, streaming: inStream))
        case UInt8(ascii: "S"):
            message = .streamStart(try StreamStart.decode(from: &reader))
        case UInt8(ascii: "E"):
            message = .streamStop
        case UInt8(ascii: "c"): message = .streamCommit(try StreamCommit.decode(from: &reader))
        case UInt8(ascii: "A"): message = .streamAbort(try StreamAbort.decode(from: &reader))
        default:
            throw PGOutputError(.unknownMessageType(tag), at: 0)
        }
        guard reader.isAtEnd else { throw PGOutputError(.trailingBytes(count: reader.remaining), at: reader.offset) }
        // Only a message that decoded whole changes the stream state.
        if case .streamStart = message { inStream = true }
        if case .streamStop = message { inStream = false }
        return message
    }
}

/// A CopyData message of the streaming replication protocol, server to client.
public enum ReplicationMessage {
    /// 'w': WAL data; `payload` is one pgoutput message.
    case xLogData(walStart: UInt64, walEnd: UInt64, sendTime: Int64, payload: UnsafeRawBufferPointer)
    /// 'k': the server's WAL end, and whether it wants a status update now.
    case keepalive(walEnd: UInt64, sendTime: Int64, replyRequested: Bool)

    public static func decode(_ bytes: UnsafeRawBufferPointer) throws(PGOutputError) -> ReplicationMessage {
        var reader = ByteReader(bytes)
        guard !reader.isAtEnd else { throw PGOutputError(.empty, at: 0) }
        let tag = try reader.readUInt8("replication message type")
        switch tag {
        case UInt8(ascii: "w"):
            let start = try reader.readUInt64("WAL start")
            let end = try reader.readUInt64("WAL end")
            let time = try reader.readInt64("send time")
            return .xLogData(walStart: start, walEnd: end, sendTime: time,
                             payload: UnsafeRawBufferPointer(rebasing: bytes[reader.offset...]))
        case UInt8(ascii: "k"):
            let end = try reader.readUInt64("WAL end")
            let time = try reader.readInt64("send time")
            let reply = try reader.readUInt8("reply requested")
            return .keepalive(walEnd: end, sendTime: time, replyRequested: reply == 1)
        default:
            throw PGOutputError(.unknownMessageType(tag), at: 0)
        }
    }
}

/// 'r': the client's standby status update: written, flushed and applied positions.
public struct StandbyStatusUpdate: Equatable {
    public var written: UInt64
    public var flushed: UInt64
    public var applied: UInt64
    public var sendTime: Int64
    public var replyRequested: Bool

    public init(written: UInt64, flushed: UInt64, applied: UInt64, sendTime: Int64, replyRequested: Bool = false) {
        self.written = written
        self.flushed = flushed
        self.applied = applied
        self.sendTime = sendTime
        self.replyRequested = replyRequested
    }

    /// The 34-byte wire form.
    public var bytes: [UInt8] {
        var out: [UInt8] = [UInt8(ascii: "r")]
        out.reserveCapacity(34)
        for value in [written, flushed, applied, UInt64(bitPattern: sendTime)] {
            withUnsafeBytes(of: value.bigEndian) { out.append(contentsOf: $0) }
        }
        out.append(replyRequested ? 1 : 0)
        return out
    }
}

/// Microseconds between the Unix epoch and PostgreSQL's (2000-01-01 UTC).
public let postgresEpochOffsetMicros: Int64 = 946_684_800_000_000

/// Formats an LSN the way PostgreSQL prints it: `16/B374D848`.
public func formatLSN(_ lsn: UInt64) -> String {
    String(lsn >> 32, radix: 16, uppercase: true) + "/" + String(lsn & 0xFFFF_FFFF, radix: 16, uppercase: true)
}

/// Parses `16/B374D848`; nil if malformed.
public func parseLSN(_ text: some StringProtocol) -> UInt64? {
    // As pg_lsn_in: 1 to 8 hex digits on each side, no sign.
    let parts = text.split(separator: "/", omittingEmptySubsequences: false)
    guard parts.count == 2, parts.allSatisfy({ (1...8).contains($0.count) && $0.allSatisfy(\.isHexDigit) }),
          let high = UInt64(parts[0], radix: 16), let low = UInt64(parts[1], radix: 16) else { return nil }
    return high << 32 | low
}

/// 'C': the end of a transaction.
public struct Commit: Equatable {
    public let flags: UInt8
    /// LSN of the commit record.
    public let commitLSN: UInt64
    /// LSN just past the commit record: where a restart resumes.
    public let endLSN: UInt64
    /// Commit time in microseconds since 2000-01-01 UTC.
    public let commitTime: Int64

    static func decode(from reader: inout ByteReader) throws(PGOutputError) -> Commit {
        Commit(flags: try reader.readUInt8("commit flags"),
               commitLSN: try reader.readUInt64("commit LSN"),
               endLSN: try reader.readUInt64("end LSN"),
               commitTime: try reader.readInt64("commit time"))
    }
}

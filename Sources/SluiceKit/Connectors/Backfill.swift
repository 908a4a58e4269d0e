import Foundation

/// A source that can copy the current rows of tables into its topic while it streams
/// (`sluice backfill`), consistently with the changes around them.
public protocol BackfillSource: Source {
    /// Checks that `requested` tables can be backfilled (captured, keyed) and returns them in
    /// `schema.table` form; an empty request means every captured table. Throws
    /// ``ConnectorError/misconfigured(_:)`` naming the table and the problem.
    func backfillTables(_ requested: [String]) throws -> [String]
}

/// A request for a backfill, left by `sluice backfill` in the source's state directory and
/// adopted by the running source.
public struct BackfillRequest: Codable, Sendable, Equatable {
    public var id: String
    public var tables: [String]
    /// Per table, the only rows to copy (their primary keys in text form), for `sluice verify --repair`;
    /// a key the source no longer has is deleted at the sinks. Tables not in it are copied whole.
    public var keys: [String: [[String]]]?
    public var requestedAt: Date

    public init(id: String = UUID().uuidString, tables: [String], keys: [String: [[String]]]? = nil, requestedAt: Date = Date()) {
        self.id = id
        self.tables = tables
        self.keys = keys
        self.requestedAt = requestedAt
    }

    public static let fileName = "backfill-request.json"
    /// Left by `sluice backfill --cancel`: the source drops the pending or running backfill.
    public static let cancelFileName = "backfill-cancel.json"
    /// What to do about a damaged request file (tables whose rows were to be copied).
    public static let damagedFix = "it asks for the rows of tables to be copied (tables added to tables:, sluice backfill, "
        + "verify --repair), which would otherwise never happen. Delete it, start sluice run again and run sluice backfill "
        + "for those tables"
}

/// The progress of a source's backfill, written by the source after each chunk is durable in
/// the topic, and read by `sluice backfill` to show progress and to know when sinks are done.
public struct BackfillProgress: Codable, Sendable, Equatable {
    public struct Table: Codable, Sendable, Equatable {
        public var table: String
        /// Rows counted when the table's copy started (the progress bar's total).
        public var totalRows: UInt64?
        public var copiedRows: UInt64 = 0
        /// The primary key of the last row copied, in text form; nil before the first chunk.
        public var lastKey: [String]?
        public var done = false
        /// The keys to copy, when only some rows are (see ``BackfillRequest/keys``), and how many are done.
        public var keys: [[String]]?
        public var keysDone: Int?

        public init(table: String, keys: [[String]]? = nil) {
            self.table = table
            self.keys = keys
        }
    }

    public var id: String
    public var tables: [Table]
    public var startedAt: Date
    /// The offset of the last commit marker the backfill needed (nil if it needed none), set when
    /// every table is copied. The backfill is complete for a sink once its committed offset reaches it.
    public var finalOffset: UInt64?
    /// Set when every table is copied, or when the backfill failed or was cancelled.
    public var finishedAt: Date?
    /// Why the backfill stopped without copying everything (it failed alone; streaming went on).
    public var failure: String?

    public init(id: String, tables: [String], keys: [String: [[String]]]? = nil, startedAt: Date = Date()) {
        self.id = id
        self.tables = tables.map { Table(table: $0, keys: keys?[$0]) }
        self.startedAt = startedAt
    }

    public var copiedRows: UInt64 { tables.reduce(0) { $0 + $1.copiedRows } }
    public var totalRows: UInt64 { tables.reduce(0) { $0 + ($1.totalRows ?? 0) } }
    public var isFinished: Bool { finishedAt != nil }

    public static let fileName = "backfill.json"
}

/// Reading and writing the backfill files atomically.
public enum BackfillFiles {
    public static func read<T: Decodable>(_ type: T.Type, directory: String, name: String) -> T? {
        guard let data = FileManager.default.contents(atPath: directory + "/" + name) else { return nil }
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        return try? decoder.decode(type, from: data)
    }

    /// The file's value, nil when there is none; a file that is there but does not decode was damaged
    /// (its writes are atomic), and is not taken for an absent one: throws `.fatal` naming it and `fix`.
    public static func readExisting<T: Decodable>(_ type: T.Type, directory: String, name: String, fix: String) throws -> T? {
        let path = directory + "/" + name
        guard FileManager.default.fileExists(atPath: path) else { return nil }
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        guard let data = FileManager.default.contents(atPath: path), let value = try? decoder.decode(type, from: data) else {
            throw ConnectorError.fatal("\(path) is damaged (not the JSON Sluice wrote): \(fix)")
        }
        return value
    }

    /// Writes through a temporary file, fsync and rename, so a reader never sees half a file.
    public static func write<T: Encodable>(_ value: T, directory: String, name: String) throws {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let encoder = JSONEncoder()
        encoder.dateEncodingStrategy = .iso8601
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        let data = try encoder.encode(value)
        try AtomicFile.write(data, to: directory + "/" + name)
    }

    public static func remove(directory: String, name: String) {
        unlink(directory + "/" + name)
    }
}

/// Small state files replaced whole: written to a temporary file, synced, renamed over the old one,
/// so a reader or a crash sees the old contents or the new, never half (not even on a full disk).
public enum AtomicFile {
    public static func write(_ data: Data, to path: String, mode: mode_t = 0o644) throws {
        let directory = (path as NSString).deletingLastPathComponent
        let temp = directory + "/." + (path as NSString).lastPathComponent + ".tmp"
        let fd = open(temp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode)
        guard fd >= 0 else { throw CocoaError(.fileWriteNoPermission, userInfo: [NSFilePathErrorKey: temp]) }
        var written = 0
        while written < data.count {
            let n = data.withUnsafeBytes { Glibc.write(fd, $0.baseAddress! + written, $0.count - written) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else {
                let full = errno == ENOSPC || errno == EDQUOT
                close(fd)
                unlink(temp)
                throw CocoaError(full ? .fileWriteOutOfSpace : .fileWriteUnknown, userInfo: [NSFilePathErrorKey: path])
            }
            written += n
        }
        guard fsync(fd) == 0 else {
            close(fd)
            unlink(temp)
            throw CocoaError(.fileWriteUnknown, userInfo: [NSFilePathErrorKey: path])
        }
        close(fd)
        guard rename(temp, path) == 0 else { throw CocoaError(.fileWriteUnknown, userInfo: [NSFilePathErrorKey: path]) }
        let dir = open(directory, O_RDONLY | O_CLOEXEC)
        if dir >= 0 { fsync(dir); close(dir) }
    }
}

import Foundation
import Logging
import SluiceKit
@testable import SluiceLog
import XCTest

// MARK: - Log capture

/// Collects what the log under test logs, so tests can assert that recovery reported what it dropped.
final class LogCapture: @unchecked Sendable {
    struct Entry {
        var level: Logger.Level
        var message: String
        var metadata: [String: String]
    }

    private let lock = NSLock()
    private var stored: [Entry] = []

    var entries: [Entry] {
        lock.lock()
        defer { lock.unlock() }
        return stored
    }

    func append(_ entry: Entry) {
        lock.lock()
        stored.append(entry)
        lock.unlock()
    }

    func clear() {
        lock.lock()
        stored.removeAll()
        lock.unlock()
    }

    /// Entries whose message contains `text`.
    func entries(containing text: String) -> [Entry] { entries.filter { $0.message.contains(text) } }

    var logger: Logger {
        let capture = self
        var logger = Logger(label: "sluice-log-tests") { _ in CaptureHandler(capture: capture) }
        logger.logLevel = .trace
        return logger
    }
}

struct CaptureHandler: LogHandler {
    let capture: LogCapture
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .trace

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        var merged: [String: String] = [:]
        for (key, value) in metadata { merged[key] = "\(value)" }
        for (key, value) in event.metadata ?? [:] { merged[key] = "\(value)" }
        capture.append(.init(level: event.level, message: "\(event.message)", metadata: merged))
    }
}

// MARK: - Scratch directories

class LogTestCase: XCTestCase {
    var capture = LogCapture()

    /// A fresh data directory under the system temporary directory, removed after the test.
    func makeDataDirectory() throws -> String {
        let url = FileManager.default.temporaryDirectory
            .appendingPathComponent("sluice-logtests-\(UUID().uuidString)", isDirectory: true)
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(at: url) }
        return url.path
    }

    func makeLog() throws -> EmbeddedLog {
        EmbeddedLog(dataDirectory: try makeDataDirectory(), logger: capture.logger)
    }
}

// MARK: - Fixture data

enum Fixture {
    static let topic = "pg"

    static let users = RelationSchema(
        id: 16_384, schema: "public", table: "users", replicaIdentity: .default,
        columns: [
            .init(name: "id", typeOID: 23, typeModifier: -1, typeName: "integer",
                  isPrimaryKey: true, isReplicaIdentity: true),
            .init(name: "name", typeOID: 25, typeModifier: -1, typeName: "text",
                  isPrimaryKey: false, isReplicaIdentity: false),
            .init(name: "note", typeOID: 1043, typeModifier: 68, typeName: "character varying(64)",
                  isPrimaryKey: false, isReplicaIdentity: false, existingRowsValue: "n/a"),
        ])

    static func commitLSN(_ xid: UInt32) -> LSN { LSN(0x1_0000_0000 + UInt64(xid) * 0x1000) }
    static func endLSN(_ xid: UInt32) -> LSN { LSN(commitLSN(xid).rawValue + 0x38) }
    static func commitTime(_ xid: UInt32) -> Micros { 1_700_000_000_000_000 + Micros(xid) * 1_000 }
    static func changeLSN(_ xid: UInt32, _ row: Int) -> LSN { LSN(commitLSN(xid).rawValue - 0x800 + UInt64(row) * 8) }

    /// The text values of row `row` of transaction `xid`; `padding` extra bytes make records big.
    static func row(_ xid: UInt32, _ row: Int, padding: Int) -> [String?] {
        ["\(Int(xid) * 100_000 + row)", "x\(xid)-r\(row)-" + String(repeating: "p", count: padding), row % 3 == 0 ? nil : "é\(row)"]
    }

    /// A row in the tuple layout.
    static func tuple(_ values: [String?]) -> [UInt8] {
        var body = RecordBody()
        Tuple.encode(values, into: &body)
        return body.bytes
    }
}

/// What a test expects at one offset.
enum Expected: Equatable {
    case begin(xid: UInt32)
    case relation(id: UInt32)
    case change(xid: UInt32, row: Int, values: [String?])
    case commit(xid: UInt32, eventCount: UInt64, totalEvents: UInt64)
}

/// Offsets of a transaction written by `writeTransaction`.
struct WrittenTransaction {
    var xid: UInt32
    var begin: UInt64
    /// Offset of the commit marker; nil while open.
    var commit: UInt64?
    var records: [Expected]
}

extension TransactionWriter {
    /// Writes begin, the relation, `rows` inserts and (unless `commit` is false) the commit marker.
    @discardableResult
    func writeTransaction(xid: UInt32, rows: Int, padding: Int = 16, commit: Bool = true,
                          expected model: inout [Expected]) throws -> WrittenTransaction {
        let first = writer.nextOffset
        var records: [Expected] = []
        try begin(BeginRecord(xid: xid, commitLSN: Fixture.commitLSN(xid), commitTime: Fixture.commitTime(xid)))
        records.append(.begin(xid: xid))
        try ensureRelation(Fixture.users)
        records.append(.relation(id: Fixture.users.id))
        try ensureRelation(Fixture.users)   // no second relation record inside the same transaction
        for row in 0..<rows {
            let values = Fixture.row(xid, row, padding: padding)
            try Fixture.tuple(values).withUnsafeBytes { bytes in
                try change(.insert, relation: Fixture.users.id, lsn: Fixture.changeLSN(xid, row), new: bytes)
            }
            records.append(.change(xid: xid, row: row, values: values))
        }
        var written = WrittenTransaction(xid: xid, begin: first, commit: nil, records: records)
        if commit {
            let before = lastCommit?.commit.totalEvents ?? 0
            try self.commit(commitLSN: Fixture.commitLSN(xid), endLSN: Fixture.endLSN(xid),
                            commitTime: Fixture.commitTime(xid))
            written.commit = writer.nextOffset - 1
            written.records.append(.commit(xid: xid, eventCount: UInt64(rows), totalEvents: before + UInt64(rows)))
            model.append(contentsOf: written.records)
        }
        return written
    }
}

// MARK: - Reading back

/// Every record from `offset` below `limit` (default: through the durable commit), decoded.
func readAll(_ topic: any Topic, from offset: UInt64 = 0, limit: UInt64? = nil,
             file: StaticString = #filePath, line: UInt = #line) throws -> [(offset: UInt64, record: TopicRecord)] {
    guard let end = limit ?? topic.durableCommit.map({ $0.offset + 1 }) else { return [] }
    let reader = try topic.makeReader(from: offset)
    var out: [(UInt64, TopicRecord)] = []
    while let raw = try reader.next(limit: end) {
        out.append((raw.offset, try raw.decode()))
    }
    XCTAssertEqual(reader.position, end, "reader stopped before the limit", file: file, line: line)
    return out
}

/// Asserts that `records` are exactly `expected[first...]`, offsets consecutive from `first`.
func assertRecords(_ records: [(offset: UInt64, record: TopicRecord)], match expected: [Expected], from first: UInt64 = 0,
                   file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertEqual(records.count, expected.count - Int(first), "record count", file: file, line: line)
    var xidOfOpenTransaction: UInt32?
    for (i, (offset, record)) in records.enumerated() {
        XCTAssertEqual(offset, first + UInt64(i), "offsets must increase by exactly 1", file: file, line: line)
        guard Int(offset) < expected.count else { return }
        let want = expected[Int(offset)]
        switch (record, want) {
        case let (.begin(begin), .begin(xid)):
            XCTAssertEqual(begin.xid, xid, "begin xid at \(offset)", file: file, line: line)
            XCTAssertEqual(begin.commitLSN, Fixture.commitLSN(xid), file: file, line: line)
            XCTAssertEqual(begin.commitTime, Fixture.commitTime(xid), file: file, line: line)
            xidOfOpenTransaction = xid
        case let (.relation(schema), .relation(id)):
            XCTAssertEqual(schema.id, id, file: file, line: line)
            XCTAssertEqual(schema, Fixture.users, "relation round trip at \(offset)", file: file, line: line)
        case let (.change(change), .change(xid, row, values)):
            XCTAssertEqual(change.operation, .insert, file: file, line: line)
            XCTAssertEqual(change.relationID, Fixture.users.id, file: file, line: line)
            XCTAssertEqual(change.lsn, Fixture.changeLSN(xid, row), "change LSN at \(offset)", file: file, line: line)
            XCTAssertNil(change.old, file: file, line: line)
            let got = change.new?.values.map { value -> String? in
                if case .null = value { return nil }
                return value.string
            }
            if got != values {
                let short = { (row: [String?]?) in row.map { $0.map { $0.map { String($0.prefix(24)) } } } }
                XCTFail("tuple at \(offset): \(String(describing: short(got))) is not \(String(describing: short(values)))",
                        file: file, line: line)
            }
        case let (.commit(commit), .commit(xid, eventCount, totalEvents)):
            XCTAssertEqual(commit.xid, xid, "commit xid at \(offset)", file: file, line: line)
            if let open = xidOfOpenTransaction { XCTAssertEqual(open, xid, "commit closes its begin", file: file, line: line) }
            XCTAssertEqual(commit.commitLSN, Fixture.commitLSN(xid), file: file, line: line)
            XCTAssertEqual(commit.endLSN, Fixture.endLSN(xid), file: file, line: line)
            XCTAssertEqual(commit.commitTime, Fixture.commitTime(xid), file: file, line: line)
            XCTAssertEqual(commit.eventCount, eventCount, "eventCount at \(offset)", file: file, line: line)
            XCTAssertEqual(commit.totalEvents, totalEvents, "totalEvents at \(offset)", file: file, line: line)
            xidOfOpenTransaction = nil
        default:
            XCTFail("record at \(offset) is \(describe(record)), expected \(want)", file: file, line: line)
        }
    }
}

/// A short description of a record (the default one prints the reader's whole buffer).
func describe(_ record: TopicRecord) -> String {
    switch record {
    case let .begin(begin): return "begin(xid: \(begin.xid))"
    case let .relation(schema): return "relation(\(schema.qualifiedName))"
    case let .change(change):
        return "change(\(change.operation.name), values: \(change.new?.values.map { $0.string.map { String($0.prefix(20)) } } ?? []))"
    case let .commit(commit): return "commit(xid: \(commit.xid), eventCount: \(commit.eventCount))"
    }
}

// MARK: - Raw files

enum Files {
    static func segment(_ directory: String, _ base: UInt64) -> String {
        directory + "/" + SegmentFile.name(base: base, suffix: "log")
    }

    static func index(_ directory: String, _ base: UInt64) -> String {
        directory + "/" + SegmentFile.name(base: base, suffix: "idx")
    }

    static func bytes(_ path: String) throws -> [UInt8] { [UInt8](try Data(contentsOf: URL(fileURLWithPath: path))) }

    static func write(_ bytes: [UInt8], to path: String) throws {
        try Data(bytes).write(to: URL(fileURLWithPath: path))
    }

    static func size(_ path: String) -> UInt64 {
        ((try? FileManager.default.attributesOfItem(atPath: path))?[.size] as? NSNumber)?.uint64Value ?? 0
    }

    static func truncate(_ path: String, to size: UInt64) throws {
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
        try handle.truncate(atOffset: size)
        try handle.close()
    }

    static func append(_ bytes: [UInt8], to path: String) throws {
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
        try handle.seekToEnd()
        try handle.write(contentsOf: Data(bytes))
        try handle.close()
    }

    /// Copies every file of `source` into `destination` (created), as a crash would leave them.
    static func copyDirectory(_ source: String, to destination: String) throws {
        try FileManager.default.createDirectory(atPath: destination, withIntermediateDirectories: true)
        for name in try FileManager.default.contentsOfDirectory(atPath: source) {
            try FileManager.default.copyItem(atPath: source + "/" + name, toPath: destination + "/" + name)
        }
    }

    static func u32(_ bytes: [UInt8], _ at: Int) -> UInt32 {
        bytes[at..<(at + 4)].reduce(0) { $0 << 8 | UInt32($1) }
    }

    static func u64(_ bytes: [UInt8], _ at: Int) -> UInt64 {
        bytes[at..<(at + 8)].reduce(0) { $0 << 8 | UInt64($1) }
    }

    /// One frame as an independent parser (written from docs/log-format.md) sees it.
    struct RawFrame {
        var position: Int
        var length: Int
        var kind: UInt8
        var offset: UInt64
        var body: Range<Int>
    }

    /// Parses a segment file without SluiceLog's reader: header, then frames until the bytes end or stop
    /// being a frame. Checks the frames' CRC32C with a bitwise reference implementation.
    static func frames(_ bytes: [UInt8]) -> (base: UInt64, frames: [RawFrame], validEnd: Int) {
        precondition(bytes.count >= 20 && Array(bytes[0..<8]) == Array("SLUICELG".utf8))
        let base = u64(bytes, 12)
        var frames: [RawFrame] = []
        var at = 20
        while at + 4 <= bytes.count {
            let size = Int(u32(bytes, at))
            guard size >= 14, at + 4 + size <= bytes.count else { break }
            guard u32(bytes, at + 4) == ReferenceCRC32C.checksum(bytes[(at + 8)..<(at + 4 + size)]) else { break }
            frames.append(RawFrame(position: at, length: 4 + size, kind: bytes[at + 9], offset: u64(bytes, at + 10),
                                   body: (at + 18)..<(at + 4 + size)))
            at += 4 + size
        }
        return (base, frames, at)
    }

    /// The sparse index entries of an `.idx` file.
    static func indexEntries(_ path: String) throws -> [(offset: UInt64, position: UInt64)] {
        guard FileManager.default.fileExists(atPath: path) else { return [] }
        let bytes = try Files.bytes(path)
        return stride(from: 0, to: bytes.count - bytes.count % 16, by: 16).map { (u64(bytes, $0), u64(bytes, $0 + 8)) }
    }
}

/// Bitwise CRC32C (Castagnoli, reflected polynomial 0x82F63B78), the reference the C code is checked against.
enum ReferenceCRC32C {
    static func checksum<C: Collection<UInt8>>(_ bytes: C, seed: UInt32 = 0) -> UInt32 {
        var crc = ~seed
        for byte in bytes {
            crc ^= UInt32(byte)
            for _ in 0..<8 { crc = crc & 1 != 0 ? (crc >> 1) ^ 0x82F6_3B78 : crc >> 1 }
        }
        return ~crc
    }
}

/// Lets a test hand a writer to another thread while it only waits.
final class UncheckedBox<T>: @unchecked Sendable {
    var value: T
    init(_ value: T) { self.value = value }
}

import Foundation
import PGOutput
import XCTest

/// One fixture file: pgoutput messages captured from PostgreSQL 15 by `Fixtures/capture.sh`.
///
/// Decoded messages are views into their input, so each message's bytes live in memory that is
/// allocated once and never freed: fixtures are cached for the whole test process.
final class FixtureFile: @unchecked Sendable {
    let name: String
    /// One entry per message line: the 1-based line number and the message bytes.
    let messages: [(line: Int, bytes: UnsafeRawBufferPointer)]

    private init(name: String, messages: [(line: Int, bytes: UnsafeRawBufferPointer)]) {
        self.name = name
        self.messages = messages
    }

    nonisolated(unsafe) private static var cache: [String: FixtureFile] = [:]
    private static let lock = NSLock()

    static var directory: URL {
        get throws {
            try XCTUnwrap(Bundle.module.url(forResource: "Fixtures", withExtension: nil),
                          "Fixtures directory missing from the test bundle")
        }
    }

    /// The names (without `.hex`) of every fixture in the bundle.
    static func allNames() throws -> [String] {
        try FileManager.default.contentsOfDirectory(at: directory, includingPropertiesForKeys: nil)
            .filter { $0.pathExtension == "hex" }
            .map { $0.deletingPathExtension().lastPathComponent }
            .sorted()
    }

    static func named(_ name: String) throws -> FixtureFile {
        lock.lock()
        defer { lock.unlock() }
        if let cached = cache[name] { return cached }
        let url = try directory.appendingPathComponent("\(name).hex")
        let text = try String(contentsOf: url, encoding: .utf8)
        var messages: [(line: Int, bytes: UnsafeRawBufferPointer)] = []
        for (index, rawLine) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = rawLine.trimmingCharacters(in: .whitespaces)
            if line.isEmpty || line.hasPrefix("#") { continue }
            let bytes = try XCTUnwrap(hexBytes(line), "\(name).hex:\(index + 1): not lowercase hex")
            let storage = UnsafeMutableRawBufferPointer.allocate(byteCount: bytes.count, alignment: 1)
            bytes.withUnsafeBytes { storage.copyMemory(from: $0) }
            messages.append((index + 1, UnsafeRawBufferPointer(storage)))
        }
        let file = FixtureFile(name: name, messages: messages)
        cache[name] = file
        return file
    }

    /// Decodes every message in order with one decoder, so stream state carries over.
    func decodeAll() throws -> [Decoded] {
        var decoder = PGOutputDecoder()
        var out: [Decoded] = []
        for (line, bytes) in messages {
            do {
                let message = try decoder.decode(bytes)
                out.append(Decoded(line: line, bytes: bytes, message: message, inStream: decoder.inStream))
            } catch {
                XCTFail("\(name).hex:\(line): \(error)")
                throw error
            }
        }
        return out
    }
}

/// A decoded fixture message.
struct Decoded {
    let line: Int
    let bytes: UnsafeRawBufferPointer
    let message: Message
    /// The decoder's stream state after this message.
    let inStream: Bool
}

func hexBytes(_ text: some StringProtocol) -> [UInt8]? {
    let utf8 = Array(text.utf8)
    guard utf8.count % 2 == 0 else { return nil }
    func nibble(_ c: UInt8) -> UInt8? {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return c - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return c - UInt8(ascii: "a") + 10
        default: return nil
        }
    }
    var out: [UInt8] = []
    out.reserveCapacity(utf8.count / 2)
    var i = 0
    while i < utf8.count {
        guard let high = nibble(utf8[i]), let low = nibble(utf8[i + 1]) else { return nil }
        out.append(high << 4 | low)
        i += 2
    }
    return out
}

/// A tuple column in a form that is easy to compare.
enum Cell: Equatable, CustomStringConvertible, ExpressibleByStringLiteral {
    case null
    case unchanged
    case text(String)
    case binary([UInt8])

    init(stringLiteral value: String) { self = .text(value) }

    init(_ value: TupleValue) {
        switch value {
        case .null: self = .null
        case .unchangedToast: self = .unchanged
        case let .text(bytes): self = .text(String(decoding: bytes, as: UTF8.self))
        case let .binary(bytes): self = .binary(Array(bytes))
        }
    }

    var description: String {
        switch self {
        case .null: return "NULL"
        case .unchanged: return "UNCHANGED"
        case let .text(text): return "'\(text.count > 40 ? String(text.prefix(40)) + "…" : text)'"
        case let .binary(bytes): return "b" + bytes.map { String(format: "%02x", $0) }.joined()
        }
    }
}

extension TupleData {
    var cells: [Cell] { values.map(Cell.init) }
}

extension Message {
    /// The message type byte as a character: B, C, O, R, Y, I, U, D, T, M, S, E, c, A.
    var tag: Character {
        switch self {
        case .begin: return "B"
        case .commit: return "C"
        case .origin: return "O"
        case .relation: return "R"
        case .type: return "Y"
        case .insert: return "I"
        case .update: return "U"
        case .delete: return "D"
        case .truncate: return "T"
        case .message: return "M"
        case .streamStart: return "S"
        case .streamStop: return "E"
        case .streamCommit: return "c"
        case .streamAbort: return "A"
        }
    }

    var begin: Begin? { if case let .begin(m) = self { m } else { nil } }
    var commit: Commit? { if case let .commit(m) = self { m } else { nil } }
    var origin: Origin? { if case let .origin(m) = self { m } else { nil } }
    var relation: Relation? { if case let .relation(m) = self { m } else { nil } }
    var typeMessage: TypeMessage? { if case let .type(m) = self { m } else { nil } }
    var insert: Insert? { if case let .insert(m) = self { m } else { nil } }
    var update: Update? { if case let .update(m) = self { m } else { nil } }
    var delete: Delete? { if case let .delete(m) = self { m } else { nil } }
    var truncate: Truncate? { if case let .truncate(m) = self { m } else { nil } }
    var logicalMessage: LogicalMessage? { if case let .message(m) = self { m } else { nil } }
    var streamStart: StreamStart? { if case let .streamStart(m) = self { m } else { nil } }
    var streamCommit: StreamCommit? { if case let .streamCommit(m) = self { m } else { nil } }
    var streamAbort: StreamAbort? { if case let .streamAbort(m) = self { m } else { nil } }

    /// The xid carried by change messages inside a stream block (nil outside one, or for other types).
    var changeXid: UInt32? {
        switch self {
        case let .relation(m): return m.xid
        case let .type(m): return m.xid
        case let .insert(m): return m.xid
        case let .update(m): return m.xid
        case let .delete(m): return m.xid
        case let .truncate(m): return m.xid
        case let .message(m): return m.xid
        default: return nil
        }
    }
}

extension Array where Element == Decoded {
    /// The message tags in order, e.g. "BRIIC".
    var tags: String { String(map(\.message.tag)) }

    func relation(named name: String, file: StaticString = #filePath, line: UInt = #line) throws -> Relation {
        try XCTUnwrap(lazy.compactMap(\.message.relation).first { $0.name == name },
                      "no Relation for \(name)", file: file, line: line)
    }

    /// Relation names by OID, from every Relation message.
    var relationNames: [UInt32: String] {
        var names: [UInt32: String] = [:]
        for case let .relation(relation) in map(\.message) { names[relation.oid] = relation.name }
        return names
    }

    /// The messages between each Begin and its Commit (exclusive), in order.
    var transactions: [[Decoded]] {
        var result: [[Decoded]] = []
        var current: [Decoded]?
        for decoded in self {
            switch decoded.message {
            case .begin: current = []
            case .commit:
                if let done = current { result.append(done) }
                current = nil
            default: current?.append(decoded)
            }
        }
        return result
    }
}

/// Big-endian bytes of an integer.
func be<T: FixedWidthInteger>(_ value: T) -> [UInt8] {
    withUnsafeBytes(of: value.bigEndian) { Array($0) }
}

/// A NUL-terminated string.
func cstring(_ text: String) -> [UInt8] { Array(text.utf8) + [0] }

/// Microseconds since 2000-01-01 UTC (PostgreSQL's epoch) for a Unix time in seconds.
func pgMicros(unixSeconds: Int64) -> Int64 { unixSeconds * 1_000_000 - postgresEpochOffsetMicros }

import Foundation
import PGOutput
import SluiceWire

/// Reads a slot's decoded changes through the SQL decoding interface: one
/// `pg_logical_slot_peek_binary_changes` call per batch, sent as `COPY … TO STDOUT (FORMAT binary)`.
/// The rows are the pgoutput messages the walsender would stream (same options), each with the LSN
/// the walsender would send as its XLogData start. Peeking does not move the slot; the caller advances
/// it (``advance(to:)``) once the topic holds the batch durably.
///
/// The backend decodes a batch faster than the walsender streams it (the walsender's per-message
/// sends are the capture limit; BENCHMARKS.md "Catch-up"), but every call decodes again from the
/// slot's `restart_lsn`, and the slot cannot be active on a walsender meanwhile: it pays only while
/// the slot is far behind.
final class CatchUpReader {
    let connection: PGConnection
    let slot: String
    let publication: String

    init(connection: PGConnection, slot: String, publication: String) {
        self.connection = connection
        self.slot = slot
        self.publication = publication
    }

    /// The WAL between the server's current position and the slot's confirmed one, with that position;
    /// nil when the slot does not exist.
    static func behind(slot: String, on connection: PGConnection) throws -> (bytes: UInt64, confirmed: UInt64)? {
        let result = try connection.execute("""
            SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::bigint, confirmed_flush_lsn::text
            FROM pg_replication_slots WHERE slot_name = $1
            """, [slot])
        guard result.rowCount == 1, let bytes = result.string(0, 0).flatMap(Int64.init),
              let confirmed = result.string(0, 1).flatMap(parseLSN) else { return nil }
        return (UInt64(max(0, bytes)), confirmed)
    }

    /// Hands every message of the next batch to `message` in order; returns how many rows came.
    /// `upto_nchanges` stops the server at the first transaction boundary past `changes` rows, so a
    /// batch holds whole transactions only (a larger one whole).
    @discardableResult
    func read(changes: Int, _ message: (_ lsn: UInt64, _ payload: UnsafeRawBufferPointer) throws -> Void) throws -> Int {
        let sql = Self.batchSQL("pg_logical_slot_peek_binary_changes", slot: slot, changes: changes, publication: publication)
        var rows = BinaryCopyRows()
        var count = 0
        try connection.copyOut(sql) { data in
            try rows.parse(data) { lsn, payload in
                count += 1
                try message(lsn, payload)
            }
        }
        guard rows.ended else { throw PGError("the slot's changes ended without COPY's trailer") }
        return count
    }

    /// One batch of `function` (peek or get) on `slot` as `COPY … TO STDOUT (FORMAT binary)`, with the
    /// pgoutput options the walsender would be started with.
    static func batchSQL(_ function: String, slot: String, changes: Int, publication: String) -> String {
        let options = [
            "'proto_version', '1'",
            "'publication_names', " + PGConnection.quoteLiteral(PGConnection.quoteIdentifier(publication)),
            "'messages', 'true'",
        ]
        return """
            COPY (SELECT lsn, data FROM \(function)(\(PGConnection.quoteLiteral(slot)), NULL, \
            \(changes), \(options.joined(separator: ", ")))) TO STDOUT (FORMAT binary)
            """
    }

    /// Moves the slot's confirmed position to `lsn` (never backwards: the server refuses that).
    static func advance(slot: String, to lsn: UInt64, on connection: PGConnection) throws {
        try connection.execute("""
            SELECT pg_replication_slot_advance($1, GREATEST($2::pg_lsn,
                (SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = $1)))
            """, [slot, formatLSN(lsn)])
    }
}

/// The rows of `COPY (SELECT lsn, data …) TO STDOUT (FORMAT binary)`: a pg_lsn and a bytea each,
/// parsed one CopyData message at a time (the header arrives with the first row).
struct BinaryCopyRows {
    static let signature: [UInt8] = Array("PGCOPY\n".utf8) + [0xFF, 0x0D, 0x0A, 0x00]
    private var headerRead = false
    /// The trailer (a field count of -1) arrived.
    private(set) var ended = false

    mutating func parse(_ data: UnsafeRawBufferPointer, _ row: (UInt64, UnsafeRawBufferPointer) throws -> Void) throws {
        var at = 0
        func take(_ count: Int) throws -> Int {
            guard count >= 0, data.count - at >= count else {
                throw PGError("a COPY binary row is cut short (\(data.count) bytes, needed \(at + count))")
            }
            defer { at += count }
            return at
        }
        func int(_ width: Int) throws -> Int64 {
            let start = try take(width)
            var value: Int64 = 0
            for index in 0..<width { value = value << 8 | Int64(data[start + index]) }
            // Sign-extend 16- and 32-bit fields.
            let shift = Int64(64 - 8 * width)
            return (value << shift) >> shift
        }
        if !headerRead {
            let start = try take(Self.signature.count)
            guard Array(data[start..<start + Self.signature.count]) == Self.signature else {
                throw PGError("COPY binary output does not start with its signature")
            }
            _ = try int(4)
            _ = try take(Int(try int(4)))
            headerRead = true
        }
        while at < data.count {
            guard !ended else { throw PGError("COPY binary output goes on after its trailer") }
            let fields = try int(2)
            if fields == -1 {
                ended = true
                continue
            }
            guard fields == 2, try int(4) == 8 else { throw PGError("a COPY binary row is not (pg_lsn, bytea)") }
            let lsn = UInt64(bitPattern: try int(8))
            let length = Int(try int(4))
            guard length >= 0 else { throw PGError("a decoded change has no data") }
            let start = try take(length)
            try row(lsn, UnsafeRawBufferPointer(rebasing: data[start..<start + length]))
        }
    }
}

import CLibPQ
import Foundation
import PGOutput

/// A logical replication connection: slot management and the CopyBoth stream of pgoutput.
/// Confined to one thread.
public final class ReplicationConnection {
    public let connection: PGConnection

    public struct SystemIdentity: Sendable {
        public let systemID: String
        public let timeline: Int
        public let walPosition: UInt64
        public let database: String
    }

    public struct CreatedSlot: Sendable {
        public let name: String
        public let consistentPoint: UInt64
        /// Name of the exported snapshot; valid until this connection runs its next command.
        public let snapshotName: String?
    }

    public enum Received {
        /// A CopyData message; the bytes are valid only inside the handler.
        case message
        case timeout
        /// The server ended the stream.
        case ended
    }

    public init(url: String) throws {
        connection = try PGConnection(url: url, replication: true)
    }

    public func identifySystem() throws -> SystemIdentity {
        let result = try connection.execute("IDENTIFY_SYSTEM")
        guard result.rowCount == 1 else { throw PGError("IDENTIFY_SYSTEM returned \(result.rowCount) rows") }
        return SystemIdentity(systemID: result.string(0, 0) ?? "",
                              timeline: Int(result.string(0, 1) ?? "") ?? 0,
                              walPosition: result.string(0, 2).flatMap(parseLSN) ?? 0,
                              database: result.string(0, 3) ?? "")
    }

    /// Creates a pgoutput slot; with `exportSnapshot`, the returned snapshot lets another session
    /// read the tables exactly as of the slot's consistent point.
    /// A `temporary` slot is dropped when this connection closes.
    public func createSlot(_ name: String, exportSnapshot: Bool, temporary: Bool = false) throws -> CreatedSlot {
        let mode = exportSnapshot ? "EXPORT_SNAPSHOT" : "NOEXPORT_SNAPSHOT"
        let result = try connection.execute(
            "CREATE_REPLICATION_SLOT \(PGConnection.quoteIdentifier(name))\(temporary ? " TEMPORARY" : "") LOGICAL pgoutput \(mode)")
        guard result.rowCount == 1 else { throw PGError("CREATE_REPLICATION_SLOT returned no row") }
        return CreatedSlot(name: result.string(0, 0) ?? name,
                           consistentPoint: result.string(0, 1).flatMap(parseLSN) ?? 0,
                           snapshotName: result.string(0, 2))
    }

    /// Starts streaming. The server sends transactions committed after `start`
    /// (or after the slot's confirmed position, if that is later). `streaming` (protocol version 2 or
    /// later) lets it send a large transaction's changes while it runs, in Stream Start … Stream Stop blocks.
    public func startReplication(slot: String, start: UInt64, publications: [String], protocolVersion: Int = 1,
                                 messages: Bool = true, streaming: Bool = false) throws {
        let names = publications.map { PGConnection.quoteIdentifier($0) }.joined(separator: ",")
        var options = ["proto_version '\(protocolVersion)'", "publication_names \(PGConnection.quoteLiteral(names))"]
        if messages { options.append("messages 'true'") }
        if streaming { options.append("streaming 'on'") }
        let sql = "START_REPLICATION SLOT \(PGConnection.quoteIdentifier(slot)) LOGICAL \(formatLSN(start)) ("
            + options.joined(separator: ", ") + ")"
        guard let raw = PQexec(connection.conn, sql) else { throw connection.lastError }
        let result = PGResult(raw)
        if let error = result.error {
            throw PGError(error.message, sqlState: error.sqlState, connectionLost: !connection.isConnected)
        }
        guard result.status == PGRES_COPY_BOTH else { throw PGError("START_REPLICATION did not enter streaming") }
    }

    /// Waits up to `timeoutMillis` for the next CopyData message and hands its bytes to `handle`.
    /// How long to poll without sleeping before blocking for data. Waking a thread that sleeps on an
    /// idle CPU costs the sending walsender dearly on virtual machines (an IPI to a halted vCPU), and the
    /// walsender is the pipeline's bottleneck: 50 µs took capture from 0.79–0.91 to 0.90–1.07 of
    /// pg_recvlogical (BENCHMARKS.md), for 50 µs of CPU per 20 ms when idle.
    static let spinNanos: UInt64 = 50_000
    /// Spinning pays while data streams in; when spins keep missing (a trickle of small transactions)
    /// they stop, and one in 32 waits tries again.
    private var spinCredit = 8
    private var spinSkips = 0

    public func receive(timeoutMillis: Int, _ handle: (UnsafeRawBufferPointer) throws -> Void) throws -> Received {
        let conn = connection.conn
        var waited = false
        while true {
            var buffer: UnsafeMutablePointer<CChar>?
            let length = PQgetCopyData(conn, &buffer, 1)
            if length > 0, let buffer {
                defer { PQfreemem(buffer) }
                try handle(UnsafeRawBufferPointer(start: buffer, count: Int(length)))
                return .message
            }
            if length == -1 {
                // The server finished the COPY; collect its final result.
                var failure: PGError?
                while let result = PQgetResult(conn) {
                    if let error = PGResult(result).error, failure == nil { failure = error }
                }
                if let failure {
                    throw PGError(failure.message, sqlState: failure.sqlState, connectionLost: true)
                }
                return .ended
            }
            if length == -2 { throw PGError(connection.lastError.message, connectionLost: true) }
            if waited { return .timeout }
            var pfd = pollfd(fd: PQsocket(conn), events: Int16(POLLIN), revents: 0)
            if spinCredit > 0 || spinSkips >= 32 {
                spinSkips = 0
                let spinUntil = DispatchTime.now().uptimeNanoseconds + Self.spinNanos
                var spun: Int32 = 0
                while spun == 0 && DispatchTime.now().uptimeNanoseconds < spinUntil { spun = poll(&pfd, 1, 0) }
                if spun > 0 {
                    spinCredit = min(spinCredit + 1, 8)
                    if PQconsumeInput(conn) == 0 { throw PGError(connection.lastError.message, connectionLost: true) }
                    continue
                }
                spinCredit = max(spinCredit - 1, 0)
            } else {
                spinSkips += 1
            }
            let ready = poll(&pfd, 1, Int32(timeoutMillis))
            if ready < 0 && errno != EINTR { throw PGError("poll failed: \(String(cString: strerror(errno)))", connectionLost: true) }
            if ready > 0 && PQconsumeInput(conn) == 0 {
                throw PGError(connection.lastError.message, connectionLost: true)
            }
            waited = ready <= 0
            if ready > 0 { waited = false; continue }
        }
    }

    /// True when bytes are already buffered or waiting on the socket.
    public func hasPendingInput() -> Bool {
        var pfd = pollfd(fd: PQsocket(connection.conn), events: Int16(POLLIN), revents: 0)
        return poll(&pfd, 1, 0) > 0
    }

    /// Sends a standby status update ('r').
    public func sendStatus(written: UInt64, flushed: UInt64, applied: UInt64, replyRequested: Bool = false) throws {
        let now = Int64(Date().timeIntervalSince1970 * 1_000_000) - postgresEpochOffsetMicros
        let update = StandbyStatusUpdate(written: written, flushed: flushed, applied: applied, sendTime: now,
                                         replyRequested: replyRequested)
        try update.bytes.withUnsafeBytes { try connection.putCopyData($0) }
        guard PQflush(connection.conn) == 0 else { throw PGError(connection.lastError.message, connectionLost: true) }
    }
}

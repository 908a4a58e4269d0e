import CLibPQ

/// Reusable text parameters for libpq: NUL-terminated values packed in one buffer.
public struct PGParameters {
    private var storage: [UInt8] = []
    private var starts: [Int] = []
    private var nulls: [Bool] = []

    public init() {
        storage.reserveCapacity(4096)
    }

    public var count: Int { starts.count }

    public mutating func removeAll() {
        storage.removeAll(keepingCapacity: true)
        starts.removeAll(keepingCapacity: true)
        nulls.removeAll(keepingCapacity: true)
    }

    public mutating func appendNull() {
        starts.append(storage.count)
        nulls.append(true)
    }

    public mutating func append(_ bytes: UnsafeRawBufferPointer) {
        starts.append(storage.count)
        nulls.append(false)
        storage.append(contentsOf: bytes)
        storage.append(0)
    }

    public mutating func append(_ bytes: ArraySlice<UInt8>) {
        bytes.withUnsafeBytes { append($0) }
    }

    public mutating func append(_ text: String) {
        var text = text
        text.withUTF8 { append(UnsafeRawBufferPointer($0)) }
    }

    /// Calls `body` with libpq's `paramValues` array.
    func withPointers<R>(_ body: (UnsafePointer<UnsafePointer<CChar>?>?) throws -> R) rethrows -> R {
        try storage.withUnsafeBytes { raw in
            let base = raw.baseAddress?.assumingMemoryBound(to: CChar.self)
            var pointers: [UnsafePointer<CChar>?] = []
            pointers.reserveCapacity(starts.count)
            for (index, start) in starts.enumerated() {
                pointers.append(nulls[index] ? nil : base.map { UnsafePointer($0 + start) })
            }
            return try pointers.withUnsafeBufferPointer { try body($0.baseAddress) }
        }
    }
}

/// A connection in libpq pipeline mode: statements are sent without waiting for each result, and
/// results are collected at sync points. A failed statement aborts the rest until the next sync,
/// which then throws the first error.
public final class PGPipeline {
    public let connection: PGConnection
    private var outstanding = 0
    private var conn: OpaquePointer { connection.conn }

    /// Statements sent before results are collected; bounds memory on both sides of the socket.
    public var syncEvery = 512

    public init(connection: PGConnection) throws {
        self.connection = connection
        guard PQenterPipelineMode(connection.conn) == 1 else {
            throw PGError("cannot enter pipeline mode: \(connection.lastError.message)", connectionLost: !connection.isConnected)
        }
    }

    deinit { PQexitPipelineMode(conn) }

    /// Leaves pipeline mode (after a sync) so the connection can run COPY; `resume` enters it again.
    public func suspend() throws {
        try sync()
        guard PQexitPipelineMode(conn) == 1 else { throw sendError() }
    }

    public func resume() throws {
        guard PQenterPipelineMode(conn) == 1 else { throw sendError() }
    }

    public func prepare(_ name: String, _ sql: String) throws {
        guard PQsendPrepare(conn, name, sql, 0, nil) == 1 else { throw sendError() }
        try sent()
    }

    public func send(prepared name: String, _ parameters: PGParameters) throws {
        let ok = parameters.withPointers { values in
            PQsendQueryPrepared(conn, name, Int32(parameters.count), values, nil, nil, 0)
        }
        guard ok == 1 else { throw sendError() }
        try sent()
    }

    public func send(_ sql: String, _ parameters: PGParameters = PGParameters()) throws {
        let ok = parameters.withPointers { values in
            PQsendQueryParams(conn, sql, Int32(parameters.count), nil, values, nil, nil, 0)
        }
        guard ok == 1 else { throw sendError() }
        try sent()
    }

    private func sent() throws {
        outstanding += 1
        if outstanding >= syncEvery { try sync() }
    }

    private func sendError() -> PGError {
        PGError(connection.lastError.message, connectionLost: !connection.isConnected)
    }

    /// Sends a sync point and reads every result up to it; throws the first error.
    public func sync() throws {
        _ = try syncCollecting(keepLast: false)
    }

    /// Sends one query, syncs, and returns its result (rows included).
    public func query(_ sql: String, _ parameters: PGParameters = PGParameters()) throws -> PGResult {
        try send(sql, parameters)
        guard let result = try syncCollecting(keepLast: true) else { throw PGError("query returned no result: \(sql)") }
        return result
    }

    private func syncCollecting(keepLast: Bool) throws -> PGResult? {
        guard PQpipelineSync(conn) == 1 else { throw sendError() }
        var failure: PGError?
        var last: PGResult?
        while true {
            guard let raw = PQgetResult(conn) else {
                // The end of one statement's results; a lost connection also ends here.
                if !connection.isConnected { throw PGError(connection.lastError.message, connectionLost: true) }
                continue
            }
            let result = PGResult(raw)
            let status = result.status
            if status == PGRES_PIPELINE_SYNC { break }
            if status == PGRES_PIPELINE_ABORTED { continue }
            if let error = result.error, failure == nil {
                failure = PGError(error.message, sqlState: error.sqlState, connectionLost: !connection.isConnected)
            }
            if keepLast && status == PGRES_TUPLES_OK || keepLast && status == PGRES_COMMAND_OK { last = result }
        }
        outstanding = 0
        if let failure { throw failure }
        return last
    }
}

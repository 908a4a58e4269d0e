import CSQLite
import Foundation

/// An sqlite3 error with the database's message.
public struct SQLiteError: Error, CustomStringConvertible, Sendable {
    public let code: Int32
    public let message: String

    public var description: String { "\(message) (sqlite code \(code))" }

    /// The database is locked or busy: worth retrying.
    public var isTransient: Bool {
        let primary = code & 0xFF
        return primary == SQLITE_BUSY || primary == SQLITE_LOCKED || primary == SQLITE_IOERR || primary == SQLITE_FULL
    }
}

/// One SQLite connection. Not thread-safe: confine it to one thread.
public final class SQLiteDatabase {
    let handle: OpaquePointer
    public let path: String

    public init(path: String, readOnly: Bool = false) throws {
        var db: OpaquePointer?
        let flags = (readOnly ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE) | SQLITE_OPEN_NOMUTEX
        let rc = sqlite3_open_v2(path, &db, flags, nil)
        guard rc == SQLITE_OK, let db else {
            let message = db.map { String(cString: sqlite3_errmsg($0)) } ?? "cannot open"
            if let db { sqlite3_close_v2(db) }
            throw SQLiteError(code: rc, message: "cannot open \(path): \(message)")
        }
        handle = db
        self.path = path
        sqlite3_busy_timeout(db, 5000)
        sqlite3_extended_result_codes(db, 1)
    }

    deinit { sqlite3_close_v2(handle) }

    func error(_ rc: Int32, _ context: String) -> SQLiteError {
        SQLiteError(code: rc, message: "\(context): \(String(cString: sqlite3_errmsg(handle)))")
    }

    /// Runs one or more statements without results.
    public func execute(_ sql: String) throws {
        var message: UnsafeMutablePointer<CChar>?
        let rc = sqlite3_exec(handle, sql, nil, nil, &message)
        guard rc == SQLITE_OK else {
            let text = message.map { String(cString: $0) } ?? "error"
            sqlite3_free(message)
            throw SQLiteError(code: rc, message: "\(text) in: \(sql.prefix(200))")
        }
    }

    public func prepare(_ sql: String) throws -> SQLiteStatement {
        var statement: OpaquePointer?
        let rc = sqlite3_prepare_v3(handle, sql, -1, UInt32(SQLITE_PREPARE_PERSISTENT), &statement, nil)
        guard rc == SQLITE_OK, let statement else { throw error(rc, "cannot prepare \(sql.prefix(200))") }
        return SQLiteStatement(statement, database: self)
    }

    /// Rows of a query as text (nil for NULL); for small catalog queries.
    public func query(_ sql: String, _ parameters: [String?] = []) throws -> [[String?]] {
        let statement = try prepare(sql)
        for (index, parameter) in parameters.enumerated() {
            if let parameter { statement.bind(index + 1, text: parameter) } else { statement.bindNull(index + 1) }
        }
        var rows: [[String?]] = []
        while try statement.step() {
            rows.append((0..<statement.columnCount).map { statement.text($0) })
        }
        return rows
    }

    public var changes: Int { Int(sqlite3_changes(handle)) }

    public static func quoteIdentifier(_ name: String) -> String {
        "\"" + name.replacingOccurrences(of: "\"", with: "\"\"") + "\""
    }
}

/// A prepared statement; reset and reused for every row.
public final class SQLiteStatement {
    let statement: OpaquePointer
    unowned let database: SQLiteDatabase

    init(_ statement: OpaquePointer, database: SQLiteDatabase) {
        self.statement = statement
        self.database = database
    }

    deinit { sqlite3_finalize(statement) }

    public var columnCount: Int { Int(sqlite3_column_count(statement)) }

    public func bindNull(_ index: Int) { sqlite3_bind_null(statement, Int32(index)) }
    public func bind(_ index: Int, int64 value: Int64) { sqlite3_bind_int64(statement, Int32(index), value) }
    public func bind(_ index: Int, double value: Double) { sqlite3_bind_double(statement, Int32(index), value) }

    /// Binds a string's UTF-8 bytes with their length: no C-string copy (a small string's would
    /// be a heap allocation) and no strlen.
    public func bind(_ index: Int, text value: String) {
        var value = value
        value.withUTF8 { bytes in bind(index, text: UnsafeRawBufferPointer(bytes)) }
    }

    /// Binds UTF-8 text without building a Swift string.
    public func bind(_ index: Int, text bytes: UnsafeRawBufferPointer) {
        guard let base = bytes.baseAddress, bytes.count > 0 else {
            sqlite3_bind_text(statement, Int32(index), "", 0, sluice_sqlite_transient())
            return
        }
        sqlite3_bind_text(statement, Int32(index), base.assumingMemoryBound(to: CChar.self), Int32(bytes.count),
                          sluice_sqlite_transient())
    }

    public func bind(_ index: Int, blob bytes: UnsafeRawBufferPointer) {
        sqlite3_bind_blob(statement, Int32(index), bytes.baseAddress ?? UnsafeRawPointer(bitPattern: 1),
                          Int32(bytes.count), sluice_sqlite_transient())
    }

    /// Runs the statement one step; true while it yields rows.
    @discardableResult
    public func step() throws -> Bool {
        let rc = sqlite3_step(statement)
        switch rc {
        case SQLITE_ROW: return true
        case SQLITE_DONE: return false
        default:
            let failure = database.error(rc, "statement failed")
            sqlite3_reset(statement)
            throw failure
        }
    }

    /// Runs to completion and clears bindings for the next use.
    public func run() throws {
        defer { reset() }
        while try step() {}
    }

    public func reset() {
        sqlite3_reset(statement)
        sqlite3_clear_bindings(statement)
    }

    public func text(_ column: Int) -> String? {
        guard sqlite3_column_type(statement, Int32(column)) != SQLITE_NULL,
              let pointer = sqlite3_column_text(statement, Int32(column)) else { return nil }
        return String(cString: pointer)
    }

    public func int64(_ column: Int) -> Int64 { sqlite3_column_int64(statement, Int32(column)) }
    public func double(_ column: Int) -> Double { sqlite3_column_double(statement, Int32(column)) }

    /// The storage class of a column's value in the current row.
    public func storageClass(_ column: Int) -> SQLiteStorageClass {
        switch sqlite3_column_type(statement, Int32(column)) {
        case SQLITE_INTEGER: return .integer
        case SQLITE_FLOAT: return .real
        case SQLITE_BLOB: return .blob
        case SQLITE_NULL: return .null
        default: return .text
        }
    }

    /// The bytes of a text or blob value of the current row, valid only inside `body` (no copy).
    public func withBytes<T>(_ column: Int, _ body: (UnsafeRawBufferPointer) throws -> T) rethrows -> T {
        let pointer = sqlite3_column_type(statement, Int32(column)) == SQLITE_BLOB
            ? sqlite3_column_blob(statement, Int32(column)) : UnsafeRawPointer(sqlite3_column_text(statement, Int32(column)))
        return try body(UnsafeRawBufferPointer(start: pointer, count: pointer == nil ? 0 : Int(sqlite3_column_bytes(statement, Int32(column)))))
    }

    public func blob(_ column: Int) -> [UInt8] {
        let count = Int(sqlite3_column_bytes(statement, Int32(column)))
        guard count > 0, let pointer = sqlite3_column_blob(statement, Int32(column)) else { return [] }
        return Array(UnsafeRawBufferPointer(start: pointer, count: count))
    }
}

/// What SQLite holds in a column of one row.
public enum SQLiteStorageClass: Sendable {
    case null, integer, real, text, blob
}

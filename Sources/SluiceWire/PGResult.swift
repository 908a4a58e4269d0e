import CLibPQ

/// The result of one statement. Owns the libpq result and frees it.
public final class PGResult {
    let pointer: OpaquePointer

    init(_ pointer: OpaquePointer) { self.pointer = pointer }
    deinit { PQclear(pointer) }

    public var status: ExecStatusType { PQresultStatus(pointer) }
    public var rowCount: Int { Int(PQntuples(pointer)) }
    public var columnCount: Int { Int(PQnfields(pointer)) }

    public func columnName(_ column: Int) -> String { String(cString: PQfname(pointer, Int32(column))) }

    public func isNull(_ row: Int, _ column: Int) -> Bool { PQgetisnull(pointer, Int32(row), Int32(column)) == 1 }

    /// The value in text form; nil for NULL.
    public func string(_ row: Int, _ column: Int) -> String? {
        guard !isNull(row, column) else { return nil }
        return String(cString: PQgetvalue(pointer, Int32(row), Int32(column)))
    }

    public func string(_ row: Int, _ column: String) -> String? {
        let index = PQfnumber(pointer, column)
        return index < 0 ? nil : string(row, Int(index))
    }

    /// Rows affected by INSERT, UPDATE, DELETE…
    public var affectedRows: Int { Int(String(cString: PQcmdTuples(pointer))) ?? 0 }

    var error: PGError? {
        switch status {
        case PGRES_COMMAND_OK, PGRES_TUPLES_OK, PGRES_COPY_IN, PGRES_COPY_OUT, PGRES_COPY_BOTH, PGRES_EMPTY_QUERY,
             PGRES_PIPELINE_SYNC, PGRES_SINGLE_TUPLE:
            return nil
        default:
            let message = String(cString: PQresultErrorMessage(pointer))
            let state = PQresultErrorField(pointer, Int32(UInt8(ascii: "C"))).map { String(cString: $0) }
            return PGError(message.isEmpty ? "statement failed: \(String(cString: PQresStatus(status)))" : message,
                           sqlState: state)
        }
    }
}

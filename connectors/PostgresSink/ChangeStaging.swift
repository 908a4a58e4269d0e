import SluiceKit
import SluiceWire

/// The staging table of a keyed table's runs of changes (``ChangeRun``), and the statements that
/// apply it: the table's columns, then the operation (`u` upsert, `p` update of the present columns,
/// `d` delete) and, for `p`, which columns are present (`1`) or unchanged TOASTed values (`0`).
extension PostgresTable {
    static let operationColumn = PGConnection.quoteIdentifier("$sluice_op")
    static let presentColumn = PGConnection.quoteIdentifier("$sluice_present")

    var columnCount: Int { quotedColumns.count }

    /// The key columns' values of a row, for telling apart keys whose hashes are equal.
    func keyBytes(of row: Tuple) -> [UInt8] {
        var bytes: [UInt8] = []
        row.forEachRaw { column, value in
            guard primaryKey.contains(column) else { return }
            switch value {
            case let .text(content), let .binary(content):
                withUnsafeBytes(of: UInt32(content.count).bigEndian) { bytes.append(contentsOf: $0) }
                bytes.append(contentsOf: content)
            case .null, .unchanged:
                bytes.append(contentsOf: [0xff, 0xff, 0xff, 0xff])
            }
        }
        return bytes
    }

    /// Created once per session, outside pipeline mode; without the table's NOT NULL constraints
    /// (a delete's row carries only its key). Emptied at each commit.
    func createChangeStaging(on connection: PGConnection) throws {
        guard !changeStagingReady else { return }
        try connection.execute("""
            CREATE TEMP TABLE IF NOT EXISTS \(changeStagingName) ON COMMIT DELETE ROWS AS
            SELECT \(quotedColumns.joined(separator: ", ")), NULL::"char" AS \(Self.operationColumn), NULL::text AS \(Self.presentColumn)
            FROM \(qualifiedName) WITH NO DATA
            """)
        changeStagingReady = true
    }

    var changeCopySQL: String {
        "COPY \(changeStagingName) (\(quotedColumns.joined(separator: ", ")), \(Self.operationColumn), \(Self.presentColumn)) FROM STDIN"
    }

    func encode(_ row: Tuple, operation: ChangeRun.Operation, into encoder: inout CopyTextEncoder) {
        let width = quotedColumns.count
        var present = [UInt8](repeating: UInt8(ascii: "1"), count: width)
        row.forEachRaw { column, value in
            guard column < width else { return }
            switch value {
            case .null: encoder.appendNull()
            case .unchanged:
                encoder.appendNull()
                present[column] = UInt8(ascii: "0")
            case let .text(bytes), let .binary(bytes): encoder.append(bytes)
            }
        }
        withUnsafeBytes(of: operation.rawValue) { encoder.append($0) }
        if operation == .update {
            present.withUnsafeBytes { encoder.append($0) }
        } else {
            encoder.appendNull()
        }
        encoder.endRow()
    }

    /// The statements that apply a copied run, for the operations it holds. Each key has one entry,
    /// so their order does not matter.
    func changeStatements(deletes: Bool, updates: Bool, upserts: Bool) -> [String] {
        let staging = "\(changeStagingName) AS s"
        let operation = "s.\(Self.operationColumn)"
        let match = primaryKey.map { "t.\(quotedColumns[$0]) = s.\(quotedColumns[$0])" }.joined(separator: " AND ")
        let others = quotedColumns.indices.filter { !primaryKey.contains($0) }
        var statements: [String] = []
        if deletes {
            statements.append("DELETE FROM \(qualifiedName) AS t USING \(staging) WHERE \(operation) = 'd' AND \(match)")
        }
        if updates && !others.isEmpty {
            let sets = others.map {
                "\(quotedColumns[$0]) = CASE WHEN substr(s.\(Self.presentColumn), \($0 + 1), 1) = '1' THEN s.\(quotedColumns[$0]) ELSE t.\(quotedColumns[$0]) END"
            }
            statements.append("UPDATE \(qualifiedName) AS t SET \(sets.joined(separator: ", ")) FROM \(staging) WHERE \(operation) = 'p' AND \(match)")
        }
        if upserts {
            let columns = quotedColumns.joined(separator: ", ")
            let values = quotedColumns.map { "s.\($0)" }.joined(separator: ", ")
            if others.isEmpty {
                statements.append("INSERT INTO \(qualifiedName) (\(columns)) SELECT \(values) FROM \(staging) WHERE \(operation) = 'u' ON CONFLICT DO NOTHING")
            } else {
                // Rows the update did not find are inserted: an upsert, as for single rows.
                let sets = others.map { "\(quotedColumns[$0]) = s.\(quotedColumns[$0])" }.joined(separator: ", ")
                let key = primaryKey.map { "t.\(quotedColumns[$0])" }.joined(separator: ", ")
                let found = primaryKey.map { "u.\(quotedColumns[$0]) = s.\(quotedColumns[$0])" }.joined(separator: " AND ")
                statements.append("""
                    WITH u AS (UPDATE \(qualifiedName) AS t SET \(sets) FROM \(staging) WHERE \(operation) = 'u' AND \(match) RETURNING \(key)) \
                    INSERT INTO \(qualifiedName) (\(columns)) SELECT \(values) FROM \(staging) \
                    WHERE \(operation) = 'u' AND NOT EXISTS (SELECT 1 FROM u WHERE \(found))
                    """)
            }
        }
        return statements
    }
}

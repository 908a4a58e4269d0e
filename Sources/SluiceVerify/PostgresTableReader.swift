import Foundation
import SluiceKit
import SluiceWire

/// Reads one table of a PostgreSQL database (the source, or a PostgreSQL sink's target) for verify:
/// summaries computed by the server, rows as canonical text.
final class PostgresTableReader {
    let connection: PGConnection
    let shape: TableShape
    private let qualified: String
    private let quotedColumns: [String]
    /// What each column is compared as: the column itself, or at the source a sink's mask of it.
    private let values: [String]
    /// The key as ordered: native columns, or their text form byte by byte when the other side is SQLite.
    private let orderTerms: [String]
    private let boundCasts: [String]

    /// The publication's row filter at the source: the sinks hold only the rows it passes.
    private let filter: String?

    init(connection: PGConnection, shape: TableShape, qualifiedName: String, textOrder: Bool, filter: String? = nil,
         values: [String]? = nil) {
        self.connection = connection
        self.filter = filter.map { "(" + $0 + ")" }
        self.shape = shape
        qualified = qualifiedName
        quotedColumns = shape.columns.map { PGConnection.quoteIdentifier($0.name) }
        self.values = values ?? quotedColumns
        orderTerms = shape.key.map { column in
            let quoted = PGConnection.quoteIdentifier(shape.columns[column].name)
            return textOrder && !shape.sortsNatively(column) ? "(\(RowDigest.textSQL(quoted)) COLLATE \"C\")" : quoted
        }
        boundCasts = shape.key.map { column in
            textOrder && !shape.sortsNatively(column) ? "text" : shape.columns[column].typeName
        }
    }

    private var orderList: String { "(" + orderTerms.joined(separator: ", ") + ")" }
    private var orderBy: String { orderTerms.joined(separator: ", ") }
    private var selectTexts: String {
        values.map { "\($0) IS NULL, " + RowDigest.textSQL($0) }.joined(separator: ", ")
    }

    private func bound(_ values: [String], from first: Int) -> String {
        "(" + boundCasts.enumerated().map { index, cast in "$\(first + index)::\(cast)" }.joined(separator: ", ") + ")"
    }

    private func condition(_ range: KeyRange) -> (String, [String?]) {
        var clauses: [String] = []
        var parameters: [String?] = []
        if let lower = range.lower {
            clauses.append("\(orderList) > \(bound(lower, from: 1))")
            parameters += lower
        }
        if let upper = range.upper {
            clauses.append("\(orderList) <= \(bound(upper, from: parameters.count + 1))")
            parameters += upper
        }
        if let filter { clauses.append(filter) }
        return (clauses.isEmpty ? "true" : clauses.joined(separator: " AND "), parameters)
    }

    /// The key of the `count`-th row after `lower`, nil when fewer rows remain.
    func upperBound(after lower: [String]?, count: Int) throws -> [String]? {
        let (whereClause, parameters) = condition(KeyRange(lower: lower, upper: nil))
        let keys = shape.key.map { RowDigest.textSQL(PGConnection.quoteIdentifier(shape.columns[$0].name)) }.joined(separator: ", ")
        let result = try connection.execute(
            "SELECT \(keys) FROM \(qualified) WHERE \(whereClause) ORDER BY \(orderBy) OFFSET \(count - 1) LIMIT 1", parameters)
        guard result.rowCount == 1 else { return nil }
        return shape.key.indices.map { result.string(0, $0) ?? "" }
    }

    func summary(_ range: KeyRange) throws -> ChunkSummary {
        let (whereClause, parameters) = condition(range)
        return try summary(whereClause, parameters)
    }

    private var digest: String { RowDigest.sql(columns: values) }

    private func summary(_ whereClause: String, _ parameters: [String?]) throws -> ChunkSummary {
        let result = try connection.execute("SELECT \(ChunkSummary.sqlColumns(digest)) FROM \(qualified) WHERE \(whereClause)", parameters)
        return ChunkSummary(rows: result.string(0, 0), sum: result.string(0, 1))
    }

    /// Per bucket of a keyless table: the summary of the rows whose digest falls in it.
    func bucketSummaries(count: Int) throws -> [ChunkSummary] {
        // OFFSET 0 keeps the subquery whole, so each row is digested once.
        let result = try connection.execute("""
            SELECT \(RowDigest.bucketSQL("h", count: count)), \(ChunkSummary.sqlColumns("h"))
            FROM (SELECT \(digest) AS h FROM \(qualified) WHERE \(filter ?? "true") OFFSET 0) r GROUP BY 1
            """)
        var summaries = [ChunkSummary](repeating: ChunkSummary(), count: count)
        for row in 0..<result.rowCount {
            guard let bucket = result.string(row, 0).flatMap({ Int($0) }), bucket < count else { continue }
            summaries[bucket] = ChunkSummary(rows: result.string(row, 1), sum: result.string(row, 2))
        }
        return summaries
    }

    func rowCount() throws -> UInt64 {
        UInt64(try connection.execute("SELECT count(*) FROM \(qualified) WHERE \(filter ?? "true")").string(0, 0) ?? "0") ?? 0
    }

    func rows(in range: KeyRange) throws -> [CanonicalRow] {
        let (whereClause, parameters) = condition(range)
        return try rows("SELECT \(selectTexts) FROM \(qualified) WHERE \(whereClause)", parameters)
    }

    func rows(inBuckets buckets: Set<Int>, of count: Int) throws -> [CanonicalRow] {
        let list = buckets.sorted().map(String.init).joined(separator: ", ")
        return try rows("""
            SELECT \(selectTexts) FROM \(qualified)
            WHERE \(RowDigest.bucketSQL(digest, count: count)) IN (\(list)) AND \(filter ?? "true")
            """, [])
    }

    /// The rows with these keys (each in canonical text), those that exist.
    func rows(withKeys keys: [[String]]) throws -> [CanonicalRow] {
        guard !keys.isEmpty else { return [] }
        let casts = shape.key.map { shape.columns[$0].typeName }
        let values = keys.map { key in
            "(" + zip(key, casts).map { PGConnection.quoteLiteral($0) + "::" + $1 }.joined(separator: ", ") + ")"
        }.joined(separator: ", ")
        let keyList = "(" + shape.key.map { quotedColumns[$0] }.joined(separator: ", ") + ")"
        return try rows("SELECT \(selectTexts) FROM \(qualified) WHERE \(keyList) IN (VALUES \(values)) AND \(filter ?? "true")", [])
    }

    private func rows(_ sql: String, _ parameters: [String?]) throws -> [CanonicalRow] {
        let result = try connection.execute(sql, parameters)
        let width = shape.columns.count
        return (0..<result.rowCount).map { row in
            (0..<width).map { column in result.string(row, 2 * column) == "t" ? nil : (result.string(row, 2 * column + 1) ?? "") }
        }
    }
}

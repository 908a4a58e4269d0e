import Foundation

/// A row as `sluice verify` compares it: each column's PostgreSQL text form (the type's output
/// function, as pgoutput sends it and the SQLite sink stores it), nil for NULL.
typealias CanonicalRow = [String?]

/// The digest of one row, the same whether PostgreSQL computes it (``sql(columns:)``) or Sluice does
/// (``init(_:)``): md5 of the columns' encodings concatenated, each `N` for NULL or
/// `<byte length>:<text>`, so no two rows share an encoding.
struct RowDigest: Hashable {
    let bytes: [UInt8]

    init(_ row: CanonicalRow) {
        var message: [UInt8] = []
        for value in row {
            if let value {
                message.append(contentsOf: "\(value.utf8.count):".utf8)
                message.append(contentsOf: value.utf8)
            } else {
                message.append(UInt8(ascii: "N"))
            }
        }
        bytes = MD5.digest(message)
    }

    /// The first and second halves, as PostgreSQL reads `('x' || substr(md5, 1, 16))::bit(64)::bigint`.
    var halves: (UInt64, UInt64) {
        var first: UInt64 = 0, second: UInt64 = 0
        for i in 0..<8 { first = first << 8 | UInt64(bytes[i]) }
        for i in 8..<16 { second = second << 8 | UInt64(bytes[i]) }
        return (first, second)
    }

    /// Which of `count` buckets a keyless row falls in (the first 32 bits, modulo the count).
    func bucket(of count: Int) -> Int {
        Int((UInt64(bytes[0]) << 24 | UInt64(bytes[1]) << 16 | UInt64(bytes[2]) << 8 | UInt64(bytes[3])) % UInt64(count))
    }

    /// The column's text form in SQL: `concat()` calls the type's output function (a cast to text
    /// would not for bool and inet).
    static func textSQL(_ quotedColumn: String) -> String { "concat(\(quotedColumn))" }

    /// The md5 hex of a row, computed by PostgreSQL.
    static func sql(columns quoted: [String]) -> String {
        let terms = quoted.map { column in
            "CASE WHEN \(column) IS NULL THEN 'N' ELSE octet_length(\(textSQL(column)))::text || ':' || \(textSQL(column)) END"
        }
        return "md5(" + (terms.isEmpty ? "''" : terms.joined(separator: " || ")) + ")"
    }

    /// The bucket of a row whose md5 hex is `digest`, in SQL.
    static func bucketSQL(_ digest: String, count: Int) -> String {
        "(('x' || substr(\(digest), 1, 8))::bit(32)::bigint % \(count))"
    }
}

/// What a range of rows adds up to: their count and the sums (modulo 2^64) of their digests' two
/// halves. Order-independent, so both sides may read the rows in any order, and duplicates count.
struct ChunkSummary: Equatable {
    var rows: UInt64 = 0
    var first: UInt64 = 0
    var second: UInt64 = 0

    mutating func add(_ digest: RowDigest) {
        let (a, b) = digest.halves
        rows += 1
        first = first &+ a
        second = second &+ b
    }

    /// The SQL select list computing a summary over a subquery that yields md5 hex as `m`.
    static let sqlColumns = """
        count(*)::text, coalesce(sum(('x' || substr(m, 1, 16))::bit(64)::bigint), 0)::text, \
        coalesce(sum(('x' || substr(m, 17, 16))::bit(64)::bigint), 0)::text
        """

    /// Parses the three texts of ``sqlColumns``; sums are exact numerics, reduced modulo 2^64.
    init(rows: String?, first: String?, second: String?) {
        self.rows = rows.flatMap { UInt64($0) } ?? 0
        self.first = Self.modulo64(first ?? "0")
        self.second = Self.modulo64(second ?? "0")
    }

    init() {}

    static func modulo64(_ decimal: String) -> UInt64 {
        var value: UInt64 = 0
        let negative = decimal.hasPrefix("-")
        for character in decimal.utf8 where character >= 48 && character <= 57 {
            value = value &* 10 &+ UInt64(character - 48)
        }
        return negative ? 0 &- value : value
    }
}

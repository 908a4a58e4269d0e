import Foundation

/// A row as `sluice verify` compares it: each column's PostgreSQL text form (the type's output
/// function, as pgoutput sends it and the SQLite sink stores it), nil for NULL.
typealias CanonicalRow = [String?]

/// The digest of one row, the same whether PostgreSQL computes it (``sql(columns:)``) or Sluice does:
/// PostgreSQL's `hashtextextended(…, 0)` (Jenkins' lookup3, 64 bits) of the row's record text,
/// `ROW(c1, c2, …)::text` — one output function call per column and one hash per row inside the
/// server, about as cheap as `COPY` printing the row (an md5 per row costs twice that).
struct RowDigest: Hashable {
    let value: UInt64

    init(value: UInt64) { self.value = value }

    init(_ row: CanonicalRow) {
        var text = RecordText()
        for column in row {
            if let column { Array(column.utf8).withUnsafeBytes { text.append($0) } } else { text.appendNull() }
        }
        value = text.digest()
    }

    /// Which of `count` buckets a keyless row falls in: the signed digest modulo the count, made
    /// non-negative (``bucketSQL(_:count:)`` computes the same in SQL).
    func bucket(of count: Int) -> Int {
        let remainder = Int64(bitPattern: value) % Int64(count)
        return Int(remainder < 0 ? remainder + Int64(count) : remainder)
    }

    /// The column's text form in SQL: `concat()` calls the type's output function (a cast to text
    /// would not for bool and inet).
    static func textSQL(_ quotedColumn: String) -> String { "concat(\(quotedColumn))" }

    /// The digest of a row as a signed bigint, computed by PostgreSQL. `COLLATE "C"`: hashing the
    /// bytes, whatever the database's default collation.
    static func sql(columns quoted: [String]) -> String {
        "hashtextextended(ROW(\(quoted.joined(separator: ", ")))::text COLLATE \"C\", 0)"
    }

    /// The bucket of a row whose signed digest is `digest`, in SQL.
    static func bucketSQL(_ digest: String, count: Int) -> String {
        "(((\(digest)) % \(count) + \(count)) % \(count))"
    }
}

/// A row's record text as PostgreSQL's `record_out` prints it, built into one reused buffer: `(`,
/// the columns separated by `,`, `)`; NULL is nothing; a value is double-quoted when it is empty or
/// holds `"`, `\`, `(`, `)`, `,` or ASCII white space, and inside quotes `"` and `\` are doubled.
struct RecordText {
    private(set) var bytes: [UInt8] = [UInt8(ascii: "(")]
    private var columns = 0

    mutating func reset() {
        bytes.removeAll(keepingCapacity: true)
        bytes.append(UInt8(ascii: "("))
        columns = 0
    }

    private mutating func separate() {
        if columns > 0 { bytes.append(UInt8(ascii: ",")) }
        columns += 1
    }

    mutating func appendNull() { separate() }

    mutating func append(_ value: UnsafeRawBufferPointer) {
        separate()
        var quoted = value.isEmpty
        if !quoted {
            for byte in value where Self.forcesQuotes(byte) { quoted = true; break }
        }
        guard quoted else { bytes.append(contentsOf: value); return }
        bytes.append(UInt8(ascii: "\""))
        for byte in value {
            if byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\") { bytes.append(byte) }
            bytes.append(byte)
        }
        bytes.append(UInt8(ascii: "\""))
    }

    private static func forcesQuotes(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "("), UInt8(ascii: ")"), UInt8(ascii: ","),
             UInt8(ascii: " "), 0x09...0x0D: return true
        default: return false
        }
    }

    /// The digest of the row written so far (closing it).
    mutating func digest() -> UInt64 {
        bytes.append(UInt8(ascii: ")"))
        return bytes.withUnsafeBytes { Lookup3.hash($0) }
    }
}

/// What a range of rows adds up to: their count and the sum (modulo 2^64) of their digests.
/// Order-independent, so both sides may read the rows in any order, and duplicates count.
struct ChunkSummary: Equatable {
    var rows: UInt64 = 0
    var sum: UInt64 = 0

    mutating func add(_ digest: RowDigest) {
        rows += 1
        sum = sum &+ digest.value
    }

    /// The SQL select list computing a summary over rows whose digests are `digest`.
    static func sqlColumns(_ digest: String) -> String { "count(*)::text, coalesce(sum(\(digest)), 0)::text" }

    /// Parses the two texts of ``sqlColumns(_:)``; the sum is an exact numeric, reduced modulo 2^64.
    init(rows: String?, sum: String?) {
        self.rows = rows.flatMap { UInt64($0) } ?? 0
        self.sum = Self.modulo64(sum ?? "0")
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

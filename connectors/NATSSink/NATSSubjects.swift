/// Subjects of the NATS sink: `<subject_prefix>.<schema>.<table>` for changes and
/// `<subject_prefix>._commit` for commit markers.
///
/// A NATS subject token cannot hold whitespace, `.`, `*` or `>` (and an empty token is no token), so
/// schema and table names are percent-encoded: every byte of their UTF-8 form outside the printable
/// ASCII range `!`…`~`, and `.`, `*`, `>` and `%` itself, becomes `%` and two upper-case hex digits.
/// Everything else is kept. Decoding `%XX` back gives the name exactly (`NATSSubjects.decode`), and no
/// encoded token starts with `_commit` unless the name does, so a marker subject (one token after the
/// prefix) never equals a change subject (two tokens after it).
///
///     public.orders            -> cdc.app.public.orders
///     "odd.schema"."a b*>%"    -> cdc.app.odd%2Eschema.a%20b%2A%3E%25
///     public."café"            -> cdc.app.public.caf%C3%A9
enum NATSSubjects {
    static let markerToken = "_commit"

    /// One schema or table name as a subject token.
    static func token(_ name: String) -> String {
        if name.utf8.allSatisfy(isPlain) { return name }
        let hex = Array("0123456789ABCDEF".utf8)
        var bytes: [UInt8] = []
        bytes.reserveCapacity(name.utf8.count * 3)
        for byte in name.utf8 {
            if isPlain(byte) {
                bytes.append(byte)
            } else {
                bytes.append(UInt8(ascii: "%"))
                bytes.append(hex[Int(byte >> 4)])
                bytes.append(hex[Int(byte & 0x0F)])
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// The name a token encodes (the inverse of `token`); nil for a malformed escape.
    static func decode(_ token: String) -> String? {
        var bytes: [UInt8] = []
        var iterator = Array(token.utf8).makeIterator()
        func digit(_ byte: UInt8?) -> UInt8? {
            guard let byte else { return nil }
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): return byte - UInt8(ascii: "0")
            case UInt8(ascii: "A")...UInt8(ascii: "F"): return byte - UInt8(ascii: "A") + 10
            case UInt8(ascii: "a")...UInt8(ascii: "f"): return byte - UInt8(ascii: "a") + 10
            default: return nil
            }
        }
        while let byte = iterator.next() {
            if byte == UInt8(ascii: "%") {
                guard let high = digit(iterator.next()), let low = digit(iterator.next()) else { return nil }
                bytes.append(high << 4 | low)
            } else {
                bytes.append(byte)
            }
        }
        return String(bytes: bytes, encoding: .utf8)
    }

    @inline(__always)
    static func isPlain(_ byte: UInt8) -> Bool {
        byte >= 0x21 && byte <= 0x7E && byte != UInt8(ascii: ".") && byte != UInt8(ascii: "*")
            && byte != UInt8(ascii: ">") && byte != UInt8(ascii: "%")
    }

    /// Why `prefix` cannot be a subject prefix (tokens of printable ASCII without wildcards), or nil.
    static func problem(prefix: String) -> String? {
        guard !prefix.isEmpty else { return "must not be empty" }
        let tokens = prefix.split(separator: ".", omittingEmptySubsequences: false)
        if tokens.contains(where: \.isEmpty) { return "'\(prefix)' has an empty token (two dots, or a dot at an end)" }
        for token in tokens {
            if token == "*" || token == ">" || token.contains("*") || token.contains(">") {
                return "'\(prefix)' holds a wildcard (* or >): it must be a literal subject such as cdc.app"
            }
            if token.utf8.contains(where: { $0 < 0x21 || $0 > 0x7E }) {
                return "'\(prefix)' holds a space or a character outside printable ASCII"
            }
        }
        return nil
    }

    /// Whether the stream subject `filter` captures every subject `<prefix>.…` (one token or more).
    static func covers(_ filter: String, prefix: String) -> Bool {
        let filterTokens = filter.split(separator: ".", omittingEmptySubsequences: false)
        let prefixTokens = prefix.split(separator: ".", omittingEmptySubsequences: false)
        for (index, token) in prefixTokens.enumerated() {
            guard index < filterTokens.count else { return false }
            let wanted = filterTokens[index]
            if wanted == ">" { return true }
            if wanted != "*" && wanted != token { return false }
        }
        return filterTokens.count == prefixTokens.count + 1 && filterTokens.last == ">"
    }

    /// Whether any of `filters` covers `prefix`.
    static func covers(_ filters: [String], prefix: String) -> Bool {
        filters.contains { covers($0, prefix: prefix) }
    }
}

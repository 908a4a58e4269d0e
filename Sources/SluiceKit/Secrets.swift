import Foundation

/// The secret values this process holds (passwords, tokens, keys read from the configuration) and
/// the one function every printed or stored message passes through on its way out: log lines,
/// command output, error messages, the status file, `/health`.
///
/// Redaction is by value, so a secret is hidden wherever it shows up — also inside a libpq or
/// NATS error that echoes a connection string — and then by pattern (`scheme://user:…@`,
/// `password=…`) for URLs whose password was never registered. Values shorter than
/// `minimumLength` are not replaced by value (hiding every "ab" would garble the text); their URL
/// form is still hidden by pattern.
public enum Secrets {
    public static let mask = "***"
    public static let minimumLength = 4
    /// Pieces of a secret split at URL delimiters are hidden from this length on (shorter ones, such
    /// as a year, would garble unrelated text).
    static let minimumPieceLength = 6

    /// RFC 3986's unreserved characters: what a URL carries as is.
    private static let unreserved = CharacterSet.alphanumerics.union(CharacterSet(charactersIn: "-._~"))
    private static let lock = NSLock()
    nonisolated(unsafe) private static var values: [String] = []

    /// Remembers a secret value (idempotent). Its percent-encoded form is remembered too, since
    /// URLs carry it that way.
    public static func register(_ value: String) {
        var forms = [value]
        if let encoded = value.addingPercentEncoding(withAllowedCharacters: unreserved), encoded != value {
            forms.append(encoded)
        }
        if let decoded = value.removingPercentEncoding, decoded != value { forms.append(decoded) }
        let escaped = value.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
        if escaped != value { forms.append(escaped) }  // as JSON output spells it
        // As a message may show it: case-folded (an identifier PostgreSQL folded), or in pieces (a
        // password with an unencoded '@' splits the URL, and libpq echoes the part after it).
        forms += [value.lowercased(), value.uppercased()]
        let pieces = value.split(whereSeparator: { "@:/?#&=;, ".contains($0) }).map(String.init)
        if pieces.count > 1 { forms += pieces.filter { $0.count >= minimumPieceLength } }
        lock.lock()
        defer { lock.unlock() }
        for form in forms where form.count >= minimumLength && !values.contains(form) {
            values.append(form)
        }
        // Longest first, so a secret containing another is hidden whole.
        values.sort { $0.count > $1.count }
    }

    /// Registers the password of each URL in `text` (`scheme://user:password@host`, `password=…`).
    public static func registerURLPasswords(in text: String) {
        for password in urlPasswords(in: text) { register(password) }
    }

    /// `text` with every registered secret and every URL password replaced by `***`.
    public static func redact(_ text: String) -> String {
        lock.lock()
        let secrets = values
        lock.unlock()
        var result = text
        for secret in secrets where result.contains(secret) {
            result = result.replacingOccurrences(of: secret, with: mask)
        }
        return redactURLPasswords(result)
    }

    /// Forgets every secret (tests only: a process loads one configuration).
    public static func reset() {
        lock.lock()
        values = []
        lock.unlock()
    }

    // MARK: patterns

    private static func passwordRanges(in text: String) -> [Range<String.Index>] {
        var ranges: [Range<String.Index>] = []
        var search = text.startIndex
        while let scheme = text.range(of: "://", range: search..<text.endIndex) {
            let rest = text[scheme.upperBound...]
            let end = rest.firstIndex(where: { $0 == "/" || $0 == "?" || $0 == "#" || $0.isWhitespace || "\"',)".contains($0) })
                ?? rest.endIndex
            if let at = rest[..<end].lastIndex(of: "@"), let colon = rest[..<at].firstIndex(of: ":") {
                let start = text.index(after: colon)
                if start < at { ranges.append(start..<at) }
            }
            search = end
        }
        search = text.startIndex
        while let key = text.range(of: "password=", options: .caseInsensitive, range: search..<text.endIndex) {
            let end = text[key.upperBound...].firstIndex(where: { $0 == "&" || $0.isWhitespace || "\"',)".contains($0) })
                ?? text.endIndex
            if key.upperBound < end { ranges.append(key.upperBound..<end) }
            search = end
        }
        return ranges
    }

    static func urlPasswords(in text: String) -> [String] {
        passwordRanges(in: text).map { String(text[$0]) }.filter { $0 != mask }
    }

    static func redactURLPasswords(_ text: String) -> String {
        guard text.contains("://") || text.localizedCaseInsensitiveContains("password=") else { return text }
        var result = ""
        var copied = text.startIndex
        for range in passwordRanges(in: text).sorted(by: { $0.lowerBound < $1.lowerBound }) where range.lowerBound >= copied {
            result += text[copied..<range.lowerBound]
            result += mask
            copied = range.upperBound
        }
        return result + text[copied...]
    }
}

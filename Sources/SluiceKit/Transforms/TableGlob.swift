import Foundation

/// A `tables:` pattern over `schema.table`: `*` matches any run of characters (dots included),
/// everything else itself. A pattern without a dot means a table in schema `public`.
public struct TableGlob: Sendable, Equatable, CustomStringConvertible {
    public let pattern: String
    private let parts: [Substring]

    public static func parse(_ text: String) -> Result<TableGlob, GlobError> {
        let trimmed = text.trimmingSpaces
        guard !trimmed.isEmpty else { return .failure(.empty) }
        guard !trimmed.contains("\"") else { return .failure(.quoted) }
        let qualified = trimmed.contains(".") ? trimmed : "public.\(trimmed)"
        return .success(TableGlob(pattern: qualified))
    }

    private init(pattern: String) {
        self.pattern = pattern
        parts = pattern.split(separator: "*", omittingEmptySubsequences: false)
    }

    public enum GlobError: Error, CustomStringConvertible {
        case empty, quoted
        public var description: String {
            switch self {
            case .empty: return "is empty"
            case .quoted: return "has a double quote; globs match names as they are (no quoting)"
            }
        }
    }

    public var description: String { pattern }

    /// Whether `name` (`schema.table`) matches.
    public func matches(_ name: String) -> Bool {
        guard parts.count > 1 else { return name == pattern }
        var rest = Substring(name)
        guard rest.hasPrefix(parts[0]) else { return false }
        rest = rest.dropFirst(parts[0].count)
        for part in parts.dropFirst().dropLast() where !part.isEmpty {
            guard let range = rest.range(of: part) else { return false }
            rest = rest[range.upperBound...]
        }
        return rest.hasSuffix(parts.last!) && rest.count >= parts.last!.count
    }
}

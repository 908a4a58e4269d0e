/// A schema-qualified table name, read with SQL's identifier rules: `schema.table` or `table`
/// (schema `public`); each part either unquoted, folded to lower case as PostgreSQL does, or
/// double-quoted with `""` for a quote inside, so `"My Schema"."a.b"` is table `a.b` in schema
/// `My Schema`.
///
/// ``description`` writes the name back in the same syntax, quoting only what needs it, so it
/// parses to the same name (state files and requests keep tables in that form).
public struct TableName: Hashable, Sendable, Comparable, CustomStringConvertible {
    public let schema: String
    public let table: String

    public init(schema: String, table: String) {
        self.schema = schema
        self.table = table
    }

    /// The longest identifier PostgreSQL keeps (NAMEDATALEN - 1 bytes).
    public static let maxIdentifierBytes = 63

    public enum ParseError: Error, Equatable, CustomStringConvertible {
        case empty
        case unterminatedQuote
        case unexpected(Character, at: Int)
        case emptyPart
        case tooManyParts
        case tooLong(String)
        case reserved(String)

        public var description: String {
            switch self {
            case .empty: return "is empty"
            case .unterminatedQuote: return "has a double quote that is never closed"
            case let .unexpected(character, position): return "has an unexpected '\(character)' at character \(position + 1)"
            case .emptyPart: return "has an empty name part"
            case .tooManyParts: return "has more than two dot-separated parts (write schema.table; quote a name that contains a dot: \"a.b\")"
            case let .tooLong(part): return "has a name longer than \(TableName.maxIdentifierBytes) bytes: \(part)"
            case let .reserved(word): return "is the reserved word \(word), not a table name (a YAML \(word == "null" ? "null" : "boolean") where a list of tables is expected; write tables: [schema.table], or quote a table really named so: '\"\(word)\"')"
            }
        }
    }

    /// Parses `text`; a bare table name is in schema `public`.
    public static func parse(_ text: String) throws(ParseError) -> TableName {
        let characters = Array(text)
        guard !characters.allSatisfy(\.isWhitespace) else { throw .empty }
        var parts: [String] = []
        var index = 0
        while true {
            guard index < characters.count else { throw .emptyPart }
            var part = ""
            if characters[index] == "\"" {
                index += 1
                var closed = false
                while index < characters.count {
                    if characters[index] == "\"" {
                        if index + 1 < characters.count, characters[index + 1] == "\"" {
                            part.append("\"")
                            index += 2
                            continue
                        }
                        index += 1
                        closed = true
                        break
                    }
                    part.append(characters[index])
                    index += 1
                }
                guard closed else { throw .unterminatedQuote }
                guard !part.isEmpty else { throw .emptyPart }
            } else {
                while index < characters.count, characters[index] != "." {
                    let character = characters[index]
                    guard isIdentifierCharacter(character, first: part.isEmpty) else {
                        throw .unexpected(character, at: index)
                    }
                    part.append(foldedASCII(character))
                    index += 1
                }
                guard !part.isEmpty else { throw .emptyPart }
                // YAML turns `tables: true` into this; PostgreSQL reserves these words unquoted.
                if ["true", "false", "null"].contains(part) { throw .reserved(part) }
            }
            guard part.utf8.count <= maxIdentifierBytes else { throw .tooLong(part) }
            parts.append(part)
            if index == characters.count { break }
            guard characters[index] == "." else { throw .unexpected(characters[index], at: index) }
            index += 1
            guard parts.count < 2 else { throw .tooManyParts }
        }
        return parts.count == 1 ? TableName(schema: "public", table: parts[0]) : TableName(schema: parts[0], table: parts[1])
    }

    /// PostgreSQL's unquoted identifiers: a letter or `_` first, then letters, digits, `_` and `$`;
    /// every non-ASCII character counts as a letter.
    static func isIdentifierCharacter(_ character: Character, first: Bool) -> Bool {
        guard character.isASCII else { return true }
        if character == "_" || character.isLetter { return true }
        return !first && (character.isNumber || character == "$")
    }

    static func foldedASCII(_ character: Character) -> Character {
        character.isASCII ? Character(character.lowercased()) : character
    }

    /// One part as written in a name: bare when it would read back the same, else quoted.
    public static func display(_ part: String) -> String {
        let plain = !part.isEmpty && part.unicodeScalars.enumerated().allSatisfy { index, scalar in
            (scalar >= "a" && scalar <= "z") || scalar == "_" || (index > 0 && scalar >= "0" && scalar <= "9")
        }
        return plain ? part : "\"" + part.replacingOccurrences(of: "\"", with: "\"\"") + "\""
    }

    /// Always quoted, for SQL text.
    public static func quoted(_ part: String) -> String {
        "\"" + part.replacingOccurrences(of: "\"", with: "\"\"") + "\""
    }

    public var description: String { Self.display(schema) + "." + Self.display(table) }

    /// Both parts quoted: safe to paste into any PostgreSQL statement, and accepted by `::regclass`.
    public var sql: String { Self.quoted(schema) + "." + Self.quoted(table) }

    public static func < (lhs: TableName, rhs: TableName) -> Bool {
        (lhs.schema, lhs.table) < (rhs.schema, rhs.table)
    }
}

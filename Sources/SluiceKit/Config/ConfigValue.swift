/// A value from the configuration file, with where it came from for error messages.
public indirect enum ConfigValue: Sendable, Equatable {
    case scalar(String, line: Int)
    case list([ConfigValue], line: Int)
    case map([(key: String, value: ConfigValue)], line: Int)
    case null(line: Int)

    public var line: Int {
        switch self {
        case let .scalar(_, line), let .list(_, line), let .map(_, line), let .null(line): return line
        }
    }

    public static func == (lhs: ConfigValue, rhs: ConfigValue) -> Bool {
        switch (lhs, rhs) {
        case let (.scalar(a, _), .scalar(b, _)): return a == b
        case let (.list(a, _), .list(b, _)): return a == b
        case let (.map(a, _), .map(b, _)):
            return a.count == b.count && zip(a, b).allSatisfy { $0.key == $1.key && $0.value == $1.value }
        case (.null, .null): return true
        default: return false
        }
    }

    var kindName: String {
        switch self {
        case .scalar: return "a value"
        case .list: return "a list"
        case .map: return "a mapping"
        case .null: return "empty"
        }
    }
}

/// A mistake in the configuration: names the file, the key and the value, and says what to do.
/// The command line exits with status 2 on it, before touching any database.
public struct ConfigError: Error, CustomStringConvertible, Sendable {
    public var file: String
    public var line: Int?
    public var key: String
    public var message: String

    public init(file: String, line: Int? = nil, key: String, message: String) {
        self.file = file
        self.line = line
        self.key = key
        self.message = message
    }

    public var description: String {
        let place = line.map { "\(file):\($0)" } ?? file
        return key.isEmpty ? "\(place): \(message)" : "\(place): \(key): \(message)"
    }
}

/// Every mistake found in one configuration file, reported together (a file with four typos needs
/// one run to learn about all four). Thrown only for two or more; a single one is a ``ConfigError``.
public struct ConfigErrors: Error, CustomStringConvertible, Sendable {
    public var errors: [ConfigError]

    public init(_ errors: [ConfigError]) { self.errors = errors }

    public var description: String { errors.map(\.description).joined(separator: "\n") }

    /// Throws what was collected: nothing, the one error, or all of them.
    public static func throwIfAny(_ errors: [ConfigError]) throws {
        if errors.count == 1 { throw errors[0] }
        if errors.count > 1 { throw ConfigErrors(errors) }
    }

    /// The errors a thrown error carries (a ``ConfigError`` or ``ConfigErrors``), nil for any other error.
    public static func unpack(_ error: any Error) -> [ConfigError]? {
        if let one = error as? ConfigError { return [one] }
        if let many = error as? ConfigErrors { return many.errors }
        return nil
    }
}

extension Array where Element == ConfigError {
    /// Runs `body`; a configuration mistake it throws is kept here (and nil returned), so independent parts
    /// of a file are all checked; any other error is rethrown.
    public mutating func collect<T>(_ body: () throws -> T) throws -> T? {
        do {
            return try body()
        } catch {
            guard let found = ConfigErrors.unpack(error) else { throw error }
            self += found
            return nil
        }
    }
}

/// " (did you mean 'tables'?)" for a misspelt key close to a known one, else "".
public func didYouMean(_ word: String, among known: [String]) -> String {
    let lowered = word.lowercased()
    let scored = known.map { ($0, editDistance(lowered, $0.lowercased())) }.filter { candidate, distance in
        distance <= max(1, min(3, candidate.count / 3)) || candidate.hasPrefix(lowered) && lowered.count >= 3
    }
    guard let best = scored.min(by: { $0.1 < $1.1 }) else { return "" }
    return " (did you mean '\(best.0)'?)"
}

/// Levenshtein distance, counting an adjacent swap as one edit ("tabels" → "tables").
func editDistance(_ a: String, _ b: String) -> Int {
    let a = Array(a), b = Array(b)
    if a.isEmpty { return b.count }
    if b.isEmpty { return a.count }
    var rows = [[Int]](repeating: [Int](repeating: 0, count: b.count + 1), count: a.count + 1)
    for i in 0...a.count { rows[i][0] = i }
    for j in 0...b.count { rows[0][j] = j }
    for i in 1...a.count {
        for j in 1...b.count {
            let cost = a[i - 1] == b[j - 1] ? 0 : 1
            rows[i][j] = min(rows[i - 1][j] + 1, rows[i][j - 1] + 1, rows[i - 1][j - 1] + cost)
            if i > 1, j > 1, a[i - 1] == b[j - 2], a[i - 2] == b[j - 1] { rows[i][j] = min(rows[i][j], rows[i - 2][j - 2] + 1) }
        }
    }
    return rows[a.count][b.count]
}

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

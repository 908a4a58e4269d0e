import Foundation

/// One source's or sink's section of the configuration, with typed accessors whose errors name
/// the file, the key path and the offending value.
///
/// A connector reads every key it understands in its initializer and then calls
/// ``rejectUnknownKeys()``: a misspelt key is an error, never silently ignored.
public final class ConnectorConfig: @unchecked Sendable {
    public let file: String
    /// Where this section sits, e.g. `sinks[1] (replica)`.
    public let path: String
    public let name: String
    public let type: String
    /// The configuration's data directory, resolved against the file's folder.
    public let dataDirectory: String
    /// The folder of the configuration file: relative paths in it resolve against this.
    public let baseDirectory: String
    private let entries: [(key: String, value: ConfigValue)]
    private let line: Int
    private var read: Set<String> = ["name", "type"]

    public init(file: String, path: String, name: String, type: String, entries: [(key: String, value: ConfigValue)],
                line: Int, dataDirectory: String, baseDirectory: String) {
        self.file = file
        self.path = path
        self.name = name
        self.type = type
        self.entries = entries
        self.line = line
        self.dataDirectory = dataDirectory
        self.baseDirectory = baseDirectory
    }

    public func error(_ key: String, _ message: String, line: Int? = nil) -> ConfigError {
        ConfigError(file: file, line: line ?? self.line, key: key.isEmpty ? path : "\(path).\(key)", message: message)
    }

    public func value(_ key: String) -> ConfigValue? {
        read.insert(key)
        return entries.first { $0.key == key }?.value
    }

    /// The key's text, nil when the key is absent. Written with no value (`slot:`, `slot: ~`) is a
    /// mistake, never the default: YAML reads a forgotten value as null.
    public func optionalString(_ key: String) throws -> String? {
        switch value(key) {
        case nil: return nil
        case let .null(line)?: throw noValue(key, line: line)
        case let .scalar(text, _)?: return text
        case let other?: throw error(key, "expected a value, found \(other.kindName)", line: other.line)
        }
    }

    /// The error for a key written with no value; `fallback` is what leaving it out gives.
    public func noValue(_ key: String, line: Int, fallback: String? = nil) -> ConfigError {
        error(key, "has no value: write one" + (fallback.map { ", or leave the key out for the default (\($0))" } ?? ", or leave the key out"),
              line: line)
    }

    /// `optionalString`, naming `fallback` when the key is written with no value.
    private func givenText(_ key: String, fallback: String) throws -> String? {
        if case let .null(line)? = value(key) { throw noValue(key, line: line, fallback: fallback) }
        return try optionalString(key)
    }

    public func string(_ key: String) throws -> String {
        if case let .null(line)? = value(key) { throw error(key, "has no value: it is required", line: line) }
        guard let text = try optionalString(key) else {
            // A required key next to a near miss is almost always that key misspelt.
            let misspelt = entries.map(\.key).first { $0 != key && !didYouMean($0, among: [key]).isEmpty }
            throw error(key, "is required" + (misspelt.map { " (is '\($0)' meant to be '\(key)'?)" } ?? ""))
        }
        guard !text.isEmpty else { throw error(key, "must not be empty") }
        return text
    }

    /// The key's text, or `fallback` when the key is absent; written but empty (`slot: ''`) is a mistake,
    /// not the default.
    public func string(_ key: String, default fallback: String) throws -> String {
        guard let text = try givenText(key, fallback: fallback) else { return fallback }
        guard !text.isEmpty else { throw error(key, "must not be empty (leave the key out for the default, \(fallback))", line: value(key)?.line) }
        return text
    }

    /// One of `choices`.
    public func choice(_ key: String, _ choices: [String], default fallback: String) throws -> String {
        let text = try string(key, default: fallback)
        guard choices.contains(text) else {
            throw error(key, "'\(text)' is not one of: \(choices.joined(separator: ", "))", line: value(key)?.line)
        }
        return text
    }

    public func int(_ key: String, default fallback: Int, range: ClosedRange<Int> = Int.min...Int.max) throws -> Int {
        guard let text = try givenText(key, fallback: String(fallback)) else { return fallback }
        guard let number = Int(text), range.contains(number) else {
            throw error(key, "'\(text)' is not a whole number in \(range.lowerBound)...\(range.upperBound)",
                        line: value(key)?.line)
        }
        return number
    }

    public func bool(_ key: String, default fallback: Bool) throws -> Bool {
        guard let text = try givenText(key, fallback: String(fallback)) else { return fallback }
        switch text.lowercased() {
        case "true", "yes", "on": return true
        case "false", "no", "off": return false
        default: throw error(key, "'\(text)' is not true or false", line: value(key)?.line)
        }
    }

    /// A duration such as `500ms`, `10s`, `5m`, `1h` (a bare number means seconds), in milliseconds,
    /// of at least `minimum` (a zero timeout or interval makes no sense for most keys).
    public func durationMillis(_ key: String, default fallback: Int, minimum: Int = 0) throws -> Int {
        guard let text = try givenText(key, fallback: formatDuration(millis: fallback)) else { return fallback }
        guard let millis = parseDurationMillis(text) else {
            throw error(key, "'\(text)' is not a duration such as 500ms, 10s, 5m or 1h", line: value(key)?.line)
        }
        guard millis >= minimum else {
            throw error(key, "'\(text)' is too short: give at least \(formatDuration(millis: minimum)) "
                        + "(or leave the key out for the default, \(formatDuration(millis: fallback)))", line: value(key)?.line)
        }
        return millis
    }

    /// A size such as `512MB`, `10GB`, `4096` (bytes), of at least `minimum`.
    public func bytes(_ key: String, default fallback: UInt64, minimum: UInt64 = 0) throws -> UInt64 {
        guard let text = try givenText(key, fallback: formatByteSize(fallback)) else { return fallback }
        guard let size = parseByteSize(text) else {
            throw error(key, "'\(text)' is not a size such as 64MB or 10GB", line: value(key)?.line)
        }
        guard size >= minimum else {
            throw error(key, "'\(text)' is too small: give at least \(formatByteSize(minimum)) "
                        + "(or leave the key out for the default, \(formatByteSize(fallback)))", line: value(key)?.line)
        }
        return size
    }

    public func stringList(_ key: String) throws -> [String]? {
        switch value(key) {
        case nil: return nil
        case let .null(line)?: throw noValue(key, line: line)
        case let .scalar(text, _)?: return [text]
        case let .list(items, _)?:
            return try items.map { item in
                guard case let .scalar(text, _) = item else {
                    throw error(key, "expected a list of values, found \(item.kindName)", line: item.line)
                }
                return text
            }
        case let other?: throw error(key, "expected a list, found \(other.kindName)", line: other.line)
        }
    }

    /// A mapping of string values (e.g. HTTP headers).
    public func stringMap(_ key: String) throws -> [(String, String)] {
        switch value(key) {
        case nil: return []
        case let .null(line)?: throw noValue(key, line: line)
        case let .map(pairs, _)?:
            return try pairs.map { pair in
                guard case let .scalar(text, _) = pair.value else {
                    throw error("\(key).\(pair.key)", "expected a value, found \(pair.value.kindName)", line: pair.value.line)
                }
                return (pair.key, text)
            }
        case let other?: throw error(key, "expected a mapping, found \(other.kindName)", line: other.line)
        }
    }

    /// Raw access for connectors with structured settings.
    public var allEntries: [(key: String, value: ConfigValue)] { entries }

    /// Throws for every key the connector did not read, at once, suggesting the known key meant.
    public func rejectUnknownKeys() throws {
        let known = read.sorted()
        try ConfigErrors.throwIfAny(entries.filter { !read.contains($0.key) }.map { entry in
            error(entry.key, "unknown key for a '\(type)' \(path.hasPrefix("sources") ? "source" : "sink")"
                  + "\(didYouMean(entry.key, among: known)) (known: \(known.joined(separator: ", ")))", line: entry.value.line)
        })
    }

    /// Resolves a path from the file against the file's folder.
    public func resolvePath(_ path: String) -> String {
        let joined = path.hasPrefix("/") ? path : baseDirectory + "/" + path
        return URL(fileURLWithPath: joined).standardizedFileURL.path
    }
}

public func parseDurationMillis(_ text: String) -> Int? {
    let units: [(String, Double)] = [("ms", 1), ("s", 1000), ("m", 60_000), ("h", 3_600_000), ("d", 86_400_000)]
    let trimmed = text.trimmingCharacters(in: .whitespaces)
    // Past a century is a mistake, and would not fit in an Int.
    let limit = 100.0 * 365 * 86_400_000
    for (suffix, factor) in units where trimmed.hasSuffix(suffix) {
        let number = trimmed.dropLast(suffix.count).trimmingCharacters(in: .whitespaces)
        if let value = Double(number), value >= 0, value * factor <= limit { return Int(value * factor) }
        if suffix == "s" || suffix == "m" { continue }  // "ms" also ends in "s"
        return nil
    }
    if let seconds = Double(trimmed), seconds >= 0, seconds * 1000 <= limit { return Int(seconds * 1000) }
    return nil
}

/// `500ms`, `10s`, `5m`, `2h`, `7d`: the largest unit that divides `millis` exactly.
public func formatDuration(millis: Int) -> String {
    for (suffix, factor) in [("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)] where millis >= factor && millis % factor == 0 {
        return "\(millis / factor)\(suffix)"
    }
    return "\(millis)ms"
}

/// `64MB`, `1GB`, `4KB`, `1000`: the largest binary unit that divides `bytes` exactly.
public func formatByteSize(_ bytes: UInt64) -> String {
    for (suffix, shift) in [("TB", 40), ("GB", 30), ("MB", 20), ("KB", 10)] where bytes >= 1 << shift && bytes % (1 << shift) == 0 {
        return "\(bytes >> shift)\(suffix)"
    }
    return "\(bytes)"
}

public func parseByteSize(_ text: String) -> UInt64? {
    let units: [(String, UInt64)] = [("KB", 1 << 10), ("MB", 1 << 20), ("GB", 1 << 30), ("TB", 1 << 40),
                                     ("KiB", 1 << 10), ("MiB", 1 << 20), ("GiB", 1 << 30), ("TiB", 1 << 40),
                                     ("B", 1)]
    let trimmed = text.trimmingCharacters(in: .whitespaces)
    // 64MB, 64mb, 64Mb and 64MiB alike: binary multiples either way.
    for (suffix, factor) in units where trimmed.lowercased().hasSuffix(suffix.lowercased()) {
        let number = trimmed.dropLast(suffix.count).trimmingCharacters(in: .whitespaces)
        // Up to an exabyte: anything larger is a mistake, and would not fit in a UInt64.
        if let value = Double(number), value >= 0, value * Double(factor) <= 1e18 { return UInt64(value * Double(factor)) }
    }
    return UInt64(trimmed)
}


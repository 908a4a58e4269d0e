/// Why a predicate could not be parsed or bound to a table: what was wrong, and where.
///
/// `position` counts characters of the predicate's text from 1; it is nil for errors about the
/// whole predicate. ``description`` reads "at character 9: expected a value after '>', found the end".
public struct PredicateError: Error, Equatable, Sendable, CustomStringConvertible {
    public var message: String
    public var position: Int?

    public init(_ message: String, at position: Int? = nil) {
        self.message = message
        self.position = position
    }

    public var description: String {
        guard let position else { return message }
        return "at character \(position): \(message)"
    }
}

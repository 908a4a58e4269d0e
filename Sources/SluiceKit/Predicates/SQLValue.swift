/// The types the predicate language reasons in. A column's type follows from its PostgreSQL type:
/// integers, `numeric`, floats and `boolean` are themselves; every other type (text, varchar, enums,
/// uuid, json, dates and times, bytea…) is compared as its PostgreSQL text form.
public enum SQLType: String, Sendable, Equatable {
    case boolean, integer, numeric, float, text
    /// A quoted literal before context gives it a type (`amount > '10'` reads '10' as a number).
    case unknown
    /// The literal NULL, compatible with every type.
    case null

    public init(column: RelationSchema.Column) {
        switch column.typeClass {
        case .integer: self = .integer
        case .float: self = .float
        case .numeric: self = .numeric
        case .boolean: self = .boolean
        case .bytes, .json, .text: self = .text
        }
    }

    var isNumber: Bool { self == .integer || self == .numeric || self == .float }
}

/// A value during evaluation. Text is kept as UTF-8 bytes (a view of the row, not a copy).
public enum SQLValue: Sendable, Equatable {
    case null
    case boolean(Bool)
    case integer(Int64)
    case numeric(ExactDecimal)
    case float(Double)
    case text(ArraySlice<UInt8>)

    public var isNull: Bool { self == .null }

    /// Reads a column's PostgreSQL text form as `type`; nil if it is not one.
    static func parse(_ bytes: ArraySlice<UInt8>, as type: SQLType) -> SQLValue? {
        switch type {
        case .integer:
            return TextValues.int64(bytes).map(SQLValue.integer)
        case .numeric: return ExactDecimal(text: bytes).map(SQLValue.numeric)
        case .float:
            return TextValues.double(bytes).map(SQLValue.float)
        case .boolean:
            if let value = TextValues.bool(bytes) { return .boolean(value) }
            switch String(decoding: bytes, as: UTF8.self).lowercased().trimmingSpaces {
            case "true", "yes", "on", "1", "t", "y": return .boolean(true)
            case "false", "no", "off", "0", "f", "n": return .boolean(false)
            default: return nil
            }
        case .text, .unknown: return .text(bytes)
        case .null: return .null
        }
    }

    /// The value in a wider numeric type (integer → numeric → float).
    func widened(to type: SQLType) -> SQLValue {
        switch (self, type) {
        case let (.integer(value), .numeric): return .numeric(ExactDecimal(value))
        case let (.integer(value), .float): return .float(Double(value))
        case let (.numeric(value), .float): return .float(value.doubleValue)
        default: return self
        }
    }

    /// -1, 0, 1 for two non-NULL values of one type; PostgreSQL's order for floats (NaN equal to
    /// itself and above every number), code-point order for text, false before true.
    static func compare(_ left: SQLValue, _ right: SQLValue) -> Int {
        switch (left, right) {
        case let (.integer(a), .integer(b)): return a == b ? 0 : (a < b ? -1 : 1)
        case let (.numeric(a), .numeric(b)): return ExactDecimal.compare(a, b)
        case let (.float(a), .float(b)):
            if a.isNaN || b.isNaN { return a.isNaN == b.isNaN ? 0 : (a.isNaN ? 1 : -1) }
            return a == b ? 0 : (a < b ? -1 : 1)
        case let (.boolean(a), .boolean(b)): return a == b ? 0 : (a ? 1 : -1)
        case let (.text(a), .text(b)):
            if a.elementsEqual(b) { return 0 }
            return a.lexicographicallyPrecedes(b) ? -1 : 1
        default:
            preconditionFailure("compared values of different types: \(left), \(right)")
        }
    }

    /// The value written as the predicate language would (for messages and tests).
    public var literalText: String {
        switch self {
        case .null: return "NULL"
        case let .boolean(value): return value ? "TRUE" : "FALSE"
        case let .integer(value): return String(value)
        case let .numeric(value): return value.description
        case let .float(value): return String(value)
        case let .text(bytes): return "'" + String(decoding: bytes, as: UTF8.self).replacingAll("'", with: "''") + "'"
        }
    }
}

extension String {
    var trimmingSpaces: String {
        var scalars = Substring(self)
        while scalars.first?.isWhitespace == true { scalars.removeFirst() }
        while scalars.last?.isWhitespace == true { scalars.removeLast() }
        return String(scalars)
    }

    func replacingAll(_ target: Character, with replacement: String) -> String {
        var out = ""
        for character in self { if character == target { out += replacement } else { out.append(character) } }
        return out
    }
}

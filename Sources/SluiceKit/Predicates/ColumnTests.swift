/// A predicate that is an AND of tests of one column against constants (`id > 0 AND status <>
/// 'draft' AND amount >= 10.5 AND kind IN (1, 2) AND note IS NOT NULL`), decided straight from a
/// tuple's bytes: each tested column is parsed in place into the compared type (no `Value`, no
/// `String`, nothing allocated). Built once per relation schema from the bound expression; nil for
/// any other shape, which the general evaluator handles. It gives the same three-valued result.
struct ColumnTests: Sendable {
    typealias Operator = PredicateExpression.ComparisonOperator

    enum Test: Sendable {
        case integer(Operator, Int64)
        case integerIn([Int64], negated: Bool)
        /// A numeric (or integer) column against an exact constant `mantissa × 10^-scale`.
        case decimal(Operator, mantissa: Int64, scale: Int)
        case text(Operator, [UInt8])
        case textIn([[UInt8]], negated: Bool)
        case boolean(Operator, Bool)
        /// A boolean column used as the condition itself.
        case isTrue
        case isNull(negated: Bool)
    }

    /// (column, test), ascending by column.
    let tests: [(column: Int, test: Test)]

    init?(_ root: BoundExpression.Node) {
        var tests: [(column: Int, test: Test)] = []
        guard Self.collect(root, into: &tests), !tests.isEmpty else { return nil }
        self.tests = tests.enumerated().sorted { ($0.element.column, $0.offset) < ($1.element.column, $1.offset) }.map(\.element)
    }

    private static func collect(_ node: BoundExpression.Node, into tests: inout [(column: Int, test: Test)]) -> Bool {
        switch node {
        case let .and(left, right):
            return collect(left, into: &tests) && collect(right, into: &tests)
        case let .column(index, .boolean):
            tests.append((index, .isTrue))
        case let .isNull(.column(index, _), negated):
            tests.append((index, .isNull(negated: negated)))
        case let .compare(op, left, right, domain):
            if case let .column(index, type) = left, let value = constant(right), let test = comparison(op, type, value, domain) {
                tests.append((index, test))
            } else if case let .column(index, type) = right, let value = constant(left),
                      let test = comparison(op.flipped, type, value, domain) {
                tests.append((index, test))
            } else {
                return false
            }
        case let .inList(.column(index, type), items, domain, negated):
            guard type == domain, domain == .integer || domain == .text else { return false }
            var integers: [Int64] = [], texts: [[UInt8]] = []
            for item in items {
                switch constant(item) {
                case let .integer(value)? where domain == .integer: integers.append(value)
                case let .text(bytes)? where domain == .text: texts.append(Array(bytes))
                default: return false
                }
            }
            tests.append((index, domain == .integer ? Test.integerIn(integers, negated: negated) : Test.textIn(texts, negated: negated)))
        default:
            return false
        }
        return true
    }

    /// A constant operand, negated ones (`-5`, as the parser writes them) included.
    private static func constant(_ node: BoundExpression.Node) -> SQLValue? {
        switch node {
        case let .constant(value): return value
        case let .negate(.constant(.integer(value)), _) where value != .min: return .integer(-value)
        case let .negate(.constant(.numeric(value)), _): return .numeric(-value)
        default: return nil
        }
    }

    private static func comparison(_ op: Operator, _ type: SQLType, _ value: SQLValue, _ domain: SQLType) -> Test? {
        switch (domain, type, value) {
        case let (.integer, .integer, .integer(constant)): return .integer(op, constant)
        case let (.numeric, .integer, .integer(constant)), let (.numeric, .numeric, .integer(constant)):
            return .decimal(op, mantissa: constant, scale: 0)
        case let (.numeric, .integer, .numeric(constant)), let (.numeric, .numeric, .numeric(constant)):
            guard let fixed = constant.fixedPoint else { return nil }
            return .decimal(op, mantissa: fixed.0, scale: fixed.1)
        case let (.text, .text, .text(bytes)): return .text(op, Array(bytes))
        case let (.boolean, .boolean, .boolean(constant)): return .boolean(op, constant)
        default: return nil
        }
    }

    /// The predicate's result over `tuple`, or nil when the general evaluator must decide (a tested
    /// column not sent or binary, a value outside the fast forms such as `NaN` or a huge numeric).
    func evaluate(_ tuple: Tuple) -> PredicateResult? {
        let last = tests[tests.count - 1].column
        guard last < tuple.count else { return nil }
        return tuple.storage.withUnsafeBytes { raw -> PredicateResult? in
            var position = tuple.range.lowerBound + 2
            var next = 0
            var sawFalse = false, sawNull = false
            for column in 0...last {
                let kind = raw[position]
                var value = UnsafeRawBufferPointer(start: nil, count: 0)
                position += 1
                if kind == Tuple.text || kind == Tuple.binary {
                    let length = Int(UInt32(bigEndian: raw.loadUnaligned(fromByteOffset: position, as: UInt32.self)))
                    value = UnsafeRawBufferPointer(rebasing: raw[(position + 4)..<(position + 4 + length)])
                    position += 4 + length
                }
                while next < tests.count, tests[next].column == column {
                    defer { next += 1 }
                    switch kind {
                    case Tuple.text: break
                    case Tuple.null:
                        if case let .isNull(negated) = tests[next].test { if negated { sawFalse = true } } else { sawNull = true }
                        continue
                    default: return nil
                    }
                    guard let outcome = Self.test(tests[next].test, value) else { return nil }
                    if !outcome { sawFalse = true }
                }
            }
            return sawFalse ? .false : (sawNull ? .null : .true)
        }
    }

    /// One test over a non-NULL text value; nil when it cannot be decided here.
    private static func test(_ test: Test, _ value: UnsafeRawBufferPointer) -> Bool? {
        switch test {
        case let .integer(op, constant):
            guard let number = TextValues.int64(value) else { return nil }
            return op.holds(number == constant ? 0 : (number < constant ? -1 : 1))
        case let .integerIn(constants, negated):
            guard let number = TextValues.int64(value) else { return nil }
            return constants.contains(number) != negated
        case let .decimal(op, mantissa, scale):
            guard let number = fixedPoint(value), let order = compare(number.0, number.1, mantissa, scale) else { return nil }
            return op.holds(order)
        case let .text(op, constant):
            return op.holds(compare(value, constant))
        case let .textIn(constants, negated):
            return constants.contains { compare(value, $0) == 0 } != negated
        case let .boolean(op, constant):
            guard value.count == 1, value[0] == UInt8(ascii: "t") || value[0] == UInt8(ascii: "f") else { return nil }
            let flag = value[0] == UInt8(ascii: "t")
            return op.holds(flag == constant ? 0 : (flag ? 1 : -1))
        case .isTrue:
            guard value.count == 1, value[0] == UInt8(ascii: "t") || value[0] == UInt8(ascii: "f") else { return nil }
            return value[0] == UInt8(ascii: "t")
        case let .isNull(negated):
            return negated
        }
    }

    /// Code-point (byte) order, as the evaluator compares text.
    private static func compare(_ value: UnsafeRawBufferPointer, _ constant: [UInt8]) -> Int {
        constant.withUnsafeBytes { other in
            for index in 0..<min(value.count, other.count) where value[index] != other[index] {
                return value[index] < other[index] ? -1 : 1
            }
            return value.count == other.count ? 0 : (value.count < other.count ? -1 : 1)
        }
    }

    /// `-123.45` as (-12345, 2); nil for anything else (NaN, Infinity, exponents, more than 18 digits).
    static func fixedPoint(_ bytes: UnsafeRawBufferPointer) -> (Int64, Int)? {
        var index = 0
        guard !bytes.isEmpty else { return nil }
        let negative = bytes[0] == UInt8(ascii: "-")
        if negative || bytes[0] == UInt8(ascii: "+") { index = 1 }
        var mantissa: Int64 = 0
        var scale = 0, digits = 0
        var seenPoint = false
        while index < bytes.count {
            let byte = bytes[index]
            index += 1
            if byte == UInt8(ascii: "."), !seenPoint {
                seenPoint = true
                continue
            }
            let digit = byte &- UInt8(ascii: "0")
            guard digit < 10 else { return nil }
            digits += 1
            guard digits <= 18 else { return nil }
            mantissa = mantissa * 10 + Int64(digit)
            if seenPoint { scale += 1 }
        }
        guard digits > 0 else { return nil }
        return (negative ? -mantissa : mantissa, scale)
    }

    /// -1, 0, 1 for `a × 10^-scaleA` against `b × 10^-scaleB`; nil if aligning them overflows.
    static func compare(_ a: Int64, _ scaleA: Int, _ b: Int64, _ scaleB: Int) -> Int? {
        var (a, b) = (a, b)
        if scaleA < scaleB {
            guard let scaled = scaledUp(a, by: scaleB - scaleA) else { return nil }
            a = scaled
        } else if scaleB < scaleA {
            guard let scaled = scaledUp(b, by: scaleA - scaleB) else { return nil }
            b = scaled
        }
        return a == b ? 0 : (a < b ? -1 : 1)
    }

    private static func scaledUp(_ value: Int64, by digits: Int) -> Int64? {
        var value = value
        for _ in 0..<digits {
            let (next, overflow) = value.multipliedReportingOverflow(by: 10)
            if overflow { return nil }
            value = next
        }
        return value
    }
}

extension PredicateExpression.ComparisonOperator {
    /// The operator with its operands swapped (`1 < x` is `x > 1`).
    var flipped: Self {
        switch self {
        case .equal, .notEqual: return self
        case .less: return .greater
        case .lessOrEqual: return .greaterOrEqual
        case .greater: return .less
        case .greaterOrEqual: return .lessOrEqual
        }
    }

    /// Whether the operator holds for an ordering (-1, 0, 1) of its left operand against its right.
    @inline(__always)
    func holds(_ order: Int) -> Bool {
        switch self {
        case .equal: return order == 0
        case .notEqual: return order != 0
        case .less: return order < 0
        case .lessOrEqual: return order <= 0
        case .greater: return order > 0
        case .greaterOrEqual: return order >= 0
        }
    }
}

extension ExactDecimal {
    /// The value as `mantissa × 10^-scale` when it fits 18 digits; nil otherwise (and for NaN, ±Infinity).
    var fixedPoint: (Int64, Int)? {
        guard kind == .finite, digits.count <= 18, (0...18).contains(scale) else { return nil }
        var mantissa: Int64 = 0
        for digit in digits { mantissa = mantissa * 10 + Int64(digit) }
        return (negative ? -mantissa : mantissa, scale)
    }
}

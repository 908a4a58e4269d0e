/// An expression resolved against a table's columns and type-checked: what is evaluated per row.
///
/// Build one with ``RowExpression/bind(to:)`` or ``Predicate/bind(to:)`` when a table's schema is
/// known (once per relation schema), then call ``evaluate(_:)`` for each row. It holds no state
/// and is safe to share between threads.
public struct BoundExpression: Sendable {
    indirect enum Node: Sendable {
        case column(Int, SQLType)
        case constant(SQLValue)
        case not(Node)
        case and(Node, Node)
        case or(Node, Node)
        case compare(PredicateExpression.ComparisonOperator, Node, Node, domain: SQLType)
        case arithmetic(PredicateExpression.ArithmeticOperator, Node, Node, domain: SQLType)
        case negate(Node, domain: SQLType)
        case isNull(Node, negated: Bool)
        case inList(Node, [Node], domain: SQLType, negated: Bool)
        case like(Node, LikePattern, negated: Bool)
        case likeDynamic(Node, Node, negated: Bool, caseInsensitive: Bool)
    }

    let root: Node
    /// The type of the expression's value.
    public let type: SQLType
    /// Indices (into the row) of the columns the expression reads, ascending.
    public let referencedColumns: [Int]

    /// The expression's value over `row` (one value per column of the schema it was bound to), or
    /// nil when a column it reads was not sent (an unchanged TOASTed value, or a binary value).
    public func evaluate(_ row: [Value]) -> SQLValue? {
        for index in referencedColumns {
            guard index < row.count else { return nil }
            switch row[index] {
            case .unchanged, .binary: return nil
            case .null, .text: continue
            }
        }
        return Self.evaluate(root, row)
    }

    static func evaluate(_ node: Node, _ row: [Value]) -> SQLValue {
        switch node {
        case let .column(index, type):
            guard case let .text(bytes) = row[index] else { return .null }
            return SQLValue.parse(bytes, as: type) ?? .null
        case let .constant(value):
            return value
        case let .not(operand):
            guard case let .boolean(value) = evaluate(operand, row) else { return .null }
            return .boolean(!value)
        case let .and(left, right):
            let a = evaluate(left, row)
            if a == .boolean(false) { return a }
            let b = evaluate(right, row)
            if b == .boolean(false) { return b }
            return a.isNull || b.isNull ? .null : .boolean(true)
        case let .or(left, right):
            let a = evaluate(left, row)
            if a == .boolean(true) { return a }
            let b = evaluate(right, row)
            if b == .boolean(true) { return b }
            return a.isNull || b.isNull ? .null : .boolean(false)
        case let .compare(op, left, right, domain):
            let a = evaluate(left, row), b = evaluate(right, row)
            if a.isNull || b.isNull { return .null }
            let order = SQLValue.compare(a.widened(to: domain), b.widened(to: domain))
            switch op {
            case .equal: return .boolean(order == 0)
            case .notEqual: return .boolean(order != 0)
            case .less: return .boolean(order < 0)
            case .lessOrEqual: return .boolean(order <= 0)
            case .greater: return .boolean(order > 0)
            case .greaterOrEqual: return .boolean(order >= 0)
            }
        case let .arithmetic(op, left, right, domain):
            let a = evaluate(left, row), b = evaluate(right, row)
            if a.isNull || b.isNull { return .null }
            return Self.arithmetic(op, a.widened(to: domain), b.widened(to: domain))
        case let .negate(operand, domain):
            switch evaluate(operand, row).widened(to: domain) {
            case let .integer(value):
                return value == .min ? .numeric(-ExactDecimal(value)) : .integer(-value)
            case let .numeric(value): return .numeric(-value)
            case let .float(value): return .float(-value)
            default: return .null
            }
        case let .isNull(operand, negated):
            return .boolean(evaluate(operand, row).isNull != negated)
        case let .inList(operand, items, domain, negated):
            let value = evaluate(operand, row)
            if value.isNull { return .null }
            var sawNull = false
            for item in items {
                let candidate = evaluate(item, row)
                if candidate.isNull { sawNull = true; continue }
                if SQLValue.compare(value.widened(to: domain), candidate.widened(to: domain)) == 0 {
                    return .boolean(!negated)
                }
            }
            return sawNull ? .null : .boolean(negated)
        case let .like(operand, pattern, negated):
            guard case let .text(text) = evaluate(operand, row) else { return .null }
            return .boolean(pattern.matches(text) != negated)
        case let .likeDynamic(operand, patternNode, negated, caseInsensitive):
            guard case let .text(text) = evaluate(operand, row),
                  case let .text(pattern) = evaluate(patternNode, row) else { return .null }
            return .boolean(LikePattern(pattern, caseInsensitive: caseInsensitive).matches(text) != negated)
        }
    }

    /// Integer arithmetic that overflows continues exactly in numeric; integer division truncates
    /// toward zero (as PostgreSQL's); division by zero is NULL.
    static func arithmetic(_ op: PredicateExpression.ArithmeticOperator, _ a: SQLValue, _ b: SQLValue) -> SQLValue {
        switch (a, b) {
        case let (.integer(x), .integer(y)):
            let result: (Int64, Bool)
            switch op {
            case .add: result = x.addingReportingOverflow(y)
            case .subtract: result = x.subtractingReportingOverflow(y)
            case .multiply: result = x.multipliedReportingOverflow(by: y)
            case .divide:
                if y == 0 { return .null }
                result = x.dividedReportingOverflow(by: y)
            }
            if !result.1 { return .integer(result.0) }
            if op == .divide { return .numeric(-ExactDecimal(x)) }  // Int64.min / -1
            return arithmetic(op, .numeric(ExactDecimal(x)), .numeric(ExactDecimal(y)))
        case let (.numeric(x), .numeric(y)):
            switch op {
            case .add: return .numeric(x + y)
            case .subtract: return .numeric(x - y)
            case .multiply: return .numeric(x * y)
            case .divide: return (x / y).map(SQLValue.numeric) ?? .null
            }
        case let (.float(x), .float(y)):
            switch op {
            case .add: return .float(x + y)
            case .subtract: return .float(x - y)
            case .multiply: return .float(x * y)
            case .divide: return y == 0 ? .null : .float(x / y)
            }
        default: return .null
        }
    }
}

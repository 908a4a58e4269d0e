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
    public func evaluate(_ row: [Value]) -> SQLValue? { evaluate(columns: row) }

    /// The same over a tuple's bytes, without materializing its values.
    public func evaluate(_ tuple: Tuple) -> SQLValue? { tuple.withColumns { evaluate(columns: $0) } }

    func evaluate<Row: ColumnValues>(columns row: Row) -> SQLValue? {
        for index in referencedColumns {
            guard index < row.columnCount else { return nil }
            switch row[column: index] {
            case .unchanged, .binary: return nil
            case .null, .text: continue
            }
        }
        return Self.evaluate(root, row)
    }

    static func evaluate<Row: ColumnValues>(_ node: Node, _ row: Row) -> SQLValue {
        switch node {
        case let .column(index, type):
            guard case let .text(bytes) = row[column: index] else { return .null }
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

/// A row's column values as an expression reads them: an array of values, or a tuple's bytes.
protocol ColumnValues {
    var columnCount: Int { get }
    subscript(column index: Int) -> Value { get }
}

extension Array: ColumnValues where Element == Value {
    var columnCount: Int { count }
    subscript(column index: Int) -> Value { self[index] }
}

/// A tuple's columns, located once (each column's kind byte), read on demand.
struct TupleColumns: ColumnValues {
    let storage: [UInt8]
    let positions: UnsafeBufferPointer<Int>

    var columnCount: Int { positions.count }

    subscript(column index: Int) -> Value {
        let position = positions[index]
        let kind = storage[position]
        switch kind {
        case Tuple.null: return .null
        case Tuple.unchanged: return .unchanged
        default:
            let length = storage.withUnsafeBytes {
                Int(UInt32(bigEndian: $0.loadUnaligned(fromByteOffset: position + 1, as: UInt32.self)))
            }
            let bytes = storage[(position + 5)..<(position + 5 + length)]
            return kind == Tuple.text ? .text(bytes) : .binary(bytes)
        }
    }
}

extension Tuple {
    /// Calls `body` with the tuple's columns located (on the stack: nothing allocated).
    func withColumns<R>(_ body: (TupleColumns) throws -> R) rethrows -> R {
        try withUnsafeTemporaryAllocation(of: Int.self, capacity: Swift.max(count, 1)) { positions in
            storage.withUnsafeBytes { raw in
                var position = range.lowerBound + 2
                for column in 0..<count {
                    positions[column] = position
                    let kind = raw[position]
                    position += 1
                    if kind == Tuple.text || kind == Tuple.binary {
                        position += 4 + Int(UInt32(bigEndian: raw.loadUnaligned(fromByteOffset: position, as: UInt32.self)))
                    }
                }
            }
            return try body(TupleColumns(storage: storage, positions: UnsafeBufferPointer(rebasing: positions[0..<count])))
        }
    }
}

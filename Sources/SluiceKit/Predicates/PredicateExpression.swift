/// The syntax tree of a predicate or of a scalar expression, as parsed: names not yet resolved,
/// literals not yet typed. ``position`` is the character (from 1) where the node starts, for errors.
public struct PredicateExpression: Sendable, Equatable {
    public indirect enum Node: Sendable, Equatable {
        /// A column reference (folded to lower case unless it was double-quoted).
        case column(String)
        case literal(Literal)
        case not(PredicateExpression)
        case negate(PredicateExpression)
        case and(PredicateExpression, PredicateExpression)
        case or(PredicateExpression, PredicateExpression)
        case compare(ComparisonOperator, PredicateExpression, PredicateExpression)
        case arithmetic(ArithmeticOperator, PredicateExpression, PredicateExpression)
        case isNull(PredicateExpression, negated: Bool)
        case inList(PredicateExpression, [PredicateExpression], negated: Bool)
        case like(PredicateExpression, pattern: PredicateExpression, negated: Bool, caseInsensitive: Bool)
    }

    public enum Literal: Sendable, Equatable {
        case null
        case boolean(Bool)
        /// A number as written: an integer, or with a fraction or exponent (exact, `numeric`).
        case number(String)
        /// A quoted string: its type follows from what it is compared with, as in SQL.
        case string(String)
    }

    public enum ComparisonOperator: String, Sendable, Equatable {
        case equal = "=", notEqual = "<>", less = "<", lessOrEqual = "<=", greater = ">", greaterOrEqual = ">="
    }

    public enum ArithmeticOperator: String, Sendable, Equatable {
        case add = "+", subtract = "-", multiply = "*", divide = "/"
    }

    public var node: Node
    public var position: Int

    public init(_ node: Node, at position: Int) {
        self.node = node
        self.position = position
    }

    /// The column names referenced, each once, in order of first appearance.
    public var columnNames: [String] {
        var names: [String] = []
        visitColumns { name in if !names.contains(name) { names.append(name) } }
        return names
    }

    func visitColumns(_ body: (String) -> Void) {
        switch node {
        case let .column(name): body(name)
        case .literal: break
        case let .not(operand), let .negate(operand), let .isNull(operand, _): operand.visitColumns(body)
        case let .and(left, right), let .or(left, right), let .compare(_, left, right), let .arithmetic(_, left, right),
             let .like(left, right, _, _):
            left.visitColumns(body)
            right.visitColumns(body)
        case let .inList(operand, items, _):
            operand.visitColumns(body)
            for item in items { item.visitColumns(body) }
        }
    }
}

/// Resolves column names against a table's columns and types every node, with SQL's rules:
/// numbers widen integer → numeric → float; a quoted literal takes the type of what it meets
/// (`amount > '10'` compares numbers) and must be valid for it; other mixes are errors.
struct ExpressionBinder {
    let columns: [RelationSchema.Column]
    let table: String?

    func bind(_ expression: PredicateExpression) throws(PredicateError) -> (BoundExpression.Node, SQLType) {
        let at = expression.position
        switch expression.node {
        case let .column(name):
            guard let index = columns.firstIndex(where: { $0.name == name }) else {
                let known = columns.map(\.name).joined(separator: ", ")
                throw PredicateError("unknown column \(name)\(table.map { " in \($0)" } ?? "") (columns: \(known))", at: at)
            }
            let type = SQLType(column: columns[index])
            return (.column(index, type), type)
        case let .literal(literal):
            switch literal {
            case .null: return (.constant(.null), .null)
            case let .boolean(value): return (.constant(.boolean(value)), .boolean)
            case let .string(text): return (.constant(.text(Array(text.utf8)[...])), .unknown)
            case let .number(text):
                if let value = Int64(text) { return (.constant(.integer(value)), .integer) }
                guard let value = ExactDecimal(text) else { throw PredicateError("\(text) is not a number", at: at) }
                return (.constant(.numeric(value)), .numeric)
            }
        case let .not(operand):
            let bound = try condition(operand, "NOT")
            return (.not(bound), .boolean)
        case let .and(left, right), let .or(left, right):
            let word = if case .and = expression.node { "AND" } else { "OR" }
            let a = try condition(left, word), b = try condition(right, word)
            if case .and = expression.node { return (.and(a, b), .boolean) }
            return (.or(a, b), .boolean)
        case let .compare(op, left, right):
            let (a, b, domain) = try unify(left, right, for: "'\(op.rawValue)'", at: at)
            return (.compare(op, a, b, domain: domain), .boolean)
        case let .arithmetic(op, left, right):
            let (a, b, domain) = try unify(left, right, for: "'\(op.rawValue)'", at: at)
            if domain == .null || domain == .unknown {
                if domain == .unknown {
                    throw PredicateError("'\(op.rawValue)' needs numbers; it got two quoted literals", at: at)
                }
                return (.constant(.null), .null)
            }
            guard domain.isNumber else {
                throw PredicateError("'\(op.rawValue)' needs numbers, not \(domain.rawValue)", at: at)
            }
            return (.arithmetic(op, a, b, domain: domain), domain)
        case let .negate(operand):
            var (node, type) = try bind(operand)
            if type == .unknown { (node, type) = try coerce(node, to: .numeric, at: operand.position) }
            guard type.isNumber || type == .null else {
                throw PredicateError("'-' needs a number, not \(type.rawValue)", at: at)
            }
            return (.negate(node, domain: type), type)
        case let .isNull(operand, negated):
            return (.isNull(try bind(operand).0, negated: negated), .boolean)
        case let .inList(operand, items, negated):
            var (node, type) = try bind(operand)
            var bound: [(BoundExpression.Node, SQLType, Int)] = []
            for item in items {
                let (itemNode, itemType) = try bind(item)
                bound.append((itemNode, itemType, item.position))
            }
            var domain = type
            for (_, itemType, position) in bound { domain = try Self.common(domain, itemType, for: "IN", at: position) }
            if domain == .unknown { domain = .text }
            if domain != .null { (node, _) = try coerce(node, to: domain, at: operand.position) }
            var nodes: [BoundExpression.Node] = []
            for (itemNode, _, position) in bound {
                nodes.append(domain == .null ? itemNode : try coerce(itemNode, to: domain, at: position).0)
            }
            return (.inList(node, nodes, domain: domain, negated: negated), .boolean)
        case let .like(operand, pattern, negated, caseInsensitive):
            let word = caseInsensitive ? "ILIKE" : "LIKE"
            let text = try textOperand(operand, for: word)
            let patternNode = try textOperand(pattern, for: word)
            if case let .constant(.text(bytes)) = patternNode {
                return (.like(text, LikePattern(bytes, caseInsensitive: caseInsensitive), negated: negated), .boolean)
            }
            if case .constant(.null) = patternNode { return (.constant(.null), .boolean) }
            return (.likeDynamic(text, patternNode, negated: negated, caseInsensitive: caseInsensitive), .boolean)
        }
    }

    /// An operand of AND, OR, NOT: a condition, a boolean column, TRUE/FALSE/NULL or a quoted boolean.
    func condition(_ expression: PredicateExpression, _ word: String) throws(PredicateError) -> BoundExpression.Node {
        let (node, type) = try bind(expression)
        switch type {
        case .boolean, .null: return node
        case .unknown: return try coerce(node, to: .boolean, at: expression.position).0
        default:
            throw PredicateError("\(word) needs a condition (true or false), found a value of type \(type.rawValue)",
                                 at: expression.position)
        }
    }

    private func textOperand(_ expression: PredicateExpression, for word: String) throws(PredicateError) -> BoundExpression.Node {
        let (node, type) = try bind(expression)
        guard type == .text || type == .unknown || type == .null else {
            throw PredicateError("\(word) compares text, not \(type.rawValue)", at: expression.position)
        }
        return node
    }

    private func unify(_ left: PredicateExpression, _ right: PredicateExpression, for word: String, at: Int)
        throws(PredicateError) -> (BoundExpression.Node, BoundExpression.Node, SQLType) {
        var (a, typeA) = try bind(left)
        var (b, typeB) = try bind(right)
        try checkLiteral(b, against: a, at: right.position)
        try checkLiteral(a, against: b, at: left.position)
        var domain = try Self.common(typeA, typeB, for: word, at: at)
        if domain == .unknown { domain = .text }
        if domain != .null {
            (a, typeA) = try coerce(a, to: domain, at: left.position)
            (b, typeB) = try coerce(b, to: domain, at: right.position)
        }
        return (a, b, domain)
    }

    /// A quoted literal compared with a date, time, timestamp or uuid column (compared as text) must
    /// be a value of that type in PostgreSQL's text form: another spelling would never match.
    private func checkLiteral(_ node: BoundExpression.Node, against other: BoundExpression.Node, at: Int) throws(PredicateError) {
        guard case let .constant(.text(bytes)) = node, case let .column(index, _) = other else { return }
        let type = columns[index].typeName
        // Arrays of these types are compared as their own text form ('{…}'): not checked here.
        guard !type.hasSuffix("]") else { return }
        let text = String(decoding: bytes, as: UTF8.self)
        let form: String?
        if type == "uuid" {
            form = #"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"#
        } else if type == "date" {
            form = #"^\d{4,}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])( BC)?$|^-?infinity$"#
        } else if type.hasPrefix("timestamp") {
            form = #"^\d{4,}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])([ T]([01]\d|2[0-4]):[0-5]\d(:([0-5]\d|60)(\.\d{1,6})?)?(Z|[+-]\d{2}(:?\d{2})?)?)?( BC)?$|^-?infinity$"#
        } else if type.hasPrefix("time") {
            form = #"^([01]\d|2[0-4]):[0-5]\d(:([0-5]\d|60)(\.\d{1,6})?)?([+-]\d{2}(:?\d{2})?)?$"#
        } else {
            form = nil
        }
        guard let form, let pattern = try? Regex(form), text.firstMatch(of: pattern) == nil else { return }
        throw PredicateError("'\(text)' is not a valid \(type) as PostgreSQL writes it (compared as text), e.g. \(Self.example(type))", at: at)
    }

    private static func example(_ type: String) -> String {
        if type == "uuid" { return "'0b9c3c5e-5f1a-4c1e-9a57-3d2f1e6b7a10'" }
        if type == "date" { return "'2026-12-01'" }
        if type.hasPrefix("timestamp") { return type.contains("with time zone") ? "'2026-12-01 10:00:00+00'" : "'2026-12-01 10:00:00'" }
        return "'10:00:00'"
    }

    /// The type both sides are compared in, or an error naming the two types.
    static func common(_ a: SQLType, _ b: SQLType, for word: String, at: Int) throws(PredicateError) -> SQLType {
        if a == b { return a }
        if a == .null { return b }
        if b == .null { return a }
        if a == .unknown { return b }
        if b == .unknown { return a }
        if a.isNumber, b.isNumber {
            if a == .float || b == .float { return .float }
            return .numeric
        }
        throw PredicateError("\(word) cannot compare \(a.rawValue) with \(b.rawValue)", at: at)
    }

    /// Gives a quoted literal its type (checking it is a valid value of it); other nodes pass.
    private func coerce(_ node: BoundExpression.Node, to type: SQLType, at: Int) throws(PredicateError) -> (BoundExpression.Node, SQLType) {
        guard case let .constant(.text(bytes)) = node, type != .text, type != .unknown else { return (node, type) }
        guard let value = SQLValue.parse(bytes, as: type) else {
            throw PredicateError("'\(String(decoding: bytes, as: UTF8.self))' is not a valid \(type.rawValue)", at: at)
        }
        return (.constant(value), type)
    }
}

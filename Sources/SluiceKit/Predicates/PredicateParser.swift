/// A recursive-descent parser for the predicate language, lowest precedence first:
/// `OR`, `AND`, `NOT`, then one of `= <> < <= > >=`, `IS [NOT] NULL`, `[NOT] IN (…)`,
/// `[NOT] LIKE`/`ILIKE`, `[NOT] BETWEEN a AND b`; then `+ -`, `* /`, unary `-`, and values:
/// numbers, `'strings'`, `TRUE`, `FALSE`, `NULL`, column names and parentheses.
struct PredicateParser {
    private var tokens: [PredicateToken]
    private var index = 0

    static func parse(_ text: String) throws(PredicateError) -> PredicateExpression {
        var parser = PredicateParser(tokens: try PredicateLexer.tokens(text))
        guard parser.current.kind != .end else { throw PredicateError("the expression is empty", at: 1) }
        let expression = try parser.orExpression()
        guard parser.current.kind == .end else {
            throw PredicateError("expected an operator, AND, OR or the end, found \(parser.current.text)",
                                 at: parser.current.position)
        }
        return expression
    }

    private init(tokens: [PredicateToken]) { self.tokens = tokens }

    private var current: PredicateToken { tokens[index] }

    private mutating func advance() -> PredicateToken {
        let token = tokens[index]
        if index < tokens.count - 1 { index += 1 }
        return token
    }

    private mutating func take(keyword: String) -> PredicateToken? {
        guard current.keyword == keyword else { return nil }
        return advance()
    }

    private mutating func take(symbol: String) -> PredicateToken? {
        guard current.kind == .symbol(symbol) else { return nil }
        return advance()
    }

    private mutating func expect(symbol: String, after what: String) throws(PredicateError) {
        guard take(symbol: symbol) != nil else {
            throw PredicateError("expected '\(symbol)' \(what), found \(current.text)", at: current.position)
        }
    }

    private mutating func orExpression() throws(PredicateError) -> PredicateExpression {
        var left = try andExpression()
        while let token = take(keyword: "OR") {
            left = PredicateExpression(.or(left, try andExpression()), at: token.position)
        }
        return left
    }

    private mutating func andExpression() throws(PredicateError) -> PredicateExpression {
        var left = try notExpression()
        while let token = take(keyword: "AND") {
            left = PredicateExpression(.and(left, try notExpression()), at: token.position)
        }
        return left
    }

    private mutating func notExpression() throws(PredicateError) -> PredicateExpression {
        if let token = take(keyword: "NOT") {
            return PredicateExpression(.not(try notExpression()), at: token.position)
        }
        return try condition()
    }

    private mutating func condition() throws(PredicateError) -> PredicateExpression {
        let left = try additive()
        let position = current.position
        if case let .symbol(symbol) = current.kind, let op = PredicateExpression.ComparisonOperator(rawValue: symbol) {
            _ = advance()
            let right = try additive(after: "'\(symbol)'")
            if case let .symbol(next) = current.kind, PredicateExpression.ComparisonOperator(rawValue: next) != nil {
                throw PredicateError("comparisons do not chain: write a \(symbol) b AND b \(next) c", at: current.position)
            }
            return PredicateExpression(.compare(op, left, right), at: position)
        }
        if take(keyword: "IS") != nil {
            let negated = take(keyword: "NOT") != nil
            guard take(keyword: "NULL") != nil else {
                throw PredicateError("expected NULL after IS\(negated ? " NOT" : ""), found \(current.text)", at: current.position)
            }
            return PredicateExpression(.isNull(left, negated: negated), at: position)
        }
        let negated = take(keyword: "NOT") != nil
        if take(keyword: "IN") != nil {
            try expect(symbol: "(", after: "after IN")
            var items = [try additive(after: "IN (")]
            while take(symbol: ",") != nil { items.append(try additive(after: "','")) }
            try expect(symbol: ")", after: "to close the IN list")
            return PredicateExpression(.inList(left, items, negated: negated), at: position)
        }
        if let keyword = current.keyword, keyword == "LIKE" || keyword == "ILIKE" {
            _ = advance()
            let pattern = try additive(after: keyword)
            return PredicateExpression(.like(left, pattern: pattern, negated: negated, caseInsensitive: keyword == "ILIKE"),
                                       at: position)
        }
        if take(keyword: "BETWEEN") != nil {
            let low = try additive(after: "BETWEEN")
            guard take(keyword: "AND") != nil else {
                throw PredicateError("expected AND in BETWEEN … AND …, found \(current.text)", at: current.position)
            }
            let high = try additive(after: "BETWEEN … AND")
            let range = PredicateExpression(.and(PredicateExpression(.compare(.greaterOrEqual, left, low), at: position),
                                                 PredicateExpression(.compare(.lessOrEqual, left, high), at: position)),
                                            at: position)
            return negated ? PredicateExpression(.not(range), at: position) : range
        }
        if negated {
            throw PredicateError("expected IN, LIKE, ILIKE or BETWEEN after NOT, found \(current.text)", at: current.position)
        }
        return left
    }

    private mutating func additive(after what: String? = nil) throws(PredicateError) -> PredicateExpression {
        var left = try multiplicative(after: what)
        while case let .symbol(symbol) = current.kind, symbol == "+" || symbol == "-" {
            let token = advance()
            let right = try multiplicative(after: "'\(symbol)'")
            left = PredicateExpression(.arithmetic(symbol == "+" ? .add : .subtract, left, right), at: token.position)
        }
        return left
    }

    private mutating func multiplicative(after what: String?) throws(PredicateError) -> PredicateExpression {
        var left = try unary(after: what)
        while case let .symbol(symbol) = current.kind, symbol == "*" || symbol == "/" {
            let token = advance()
            let right = try unary(after: "'\(symbol)'")
            left = PredicateExpression(.arithmetic(symbol == "*" ? .multiply : .divide, left, right), at: token.position)
        }
        return left
    }

    private mutating func unary(after what: String?) throws(PredicateError) -> PredicateExpression {
        if let token = take(symbol: "-") {
            return PredicateExpression(.negate(try unary(after: "'-'")), at: token.position)
        }
        if take(symbol: "+") != nil { return try unary(after: "'+'") }
        return try primary(after: what)
    }

    private mutating func primary(after what: String?) throws(PredicateError) -> PredicateExpression {
        let token = current
        switch token.kind {
        case let .number(text):
            _ = advance()
            return PredicateExpression(.literal(.number(text)), at: token.position)
        case let .string(text):
            _ = advance()
            return PredicateExpression(.literal(.string(text)), at: token.position)
        case let .identifier(name, quoted):
            if !quoted, let keyword = token.keyword {
                switch keyword {
                case "NULL": _ = advance(); return PredicateExpression(.literal(.null), at: token.position)
                case "TRUE": _ = advance(); return PredicateExpression(.literal(.boolean(true)), at: token.position)
                case "FALSE": _ = advance(); return PredicateExpression(.literal(.boolean(false)), at: token.position)
                case "NOT", "AND", "OR", "IS", "IN", "LIKE", "ILIKE", "BETWEEN":
                    throw PredicateError("expected a value\(what.map { " after \($0)" } ?? ""), found the keyword \(keyword)"
                                         + " (double-quote a column of that name: \"\(name)\")", at: token.position)
                default: break
                }
            }
            _ = advance()
            if current.kind == .symbol("(") {
                throw PredicateError("functions are not supported (\(name)(…))", at: token.position)
            }
            return PredicateExpression(.column(name), at: token.position)
        case .symbol("("):
            _ = advance()
            let inner = try orExpression()
            try expect(symbol: ")", after: "to close the '(' at character \(token.position)")
            return inner
        default:
            throw PredicateError("expected a value\(what.map { " after \($0)" } ?? ""), found \(token.text)", at: token.position)
        }
    }
}

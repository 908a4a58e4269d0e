/// A row predicate of the `where:` keys: SQL's expression syntax over one table's columns.
///
/// The language: column names (unquoted, folded to lower case, or `"Quoted"`), literals (`42`,
/// `12.50`, `1e3`, `'text'` with `''` for a quote, `TRUE`, `FALSE`, `NULL`), `= <> != < <= > >=`,
/// `AND OR NOT`, `IN (…)`, `IS [NOT] NULL`, `[NOT] LIKE`/`ILIKE` (`%`, `_`, `\` escape),
/// `[NOT] BETWEEN … AND …`, `+ - * /` and parentheses. Values are typed by the column's PostgreSQL
/// type (see ``SQLType``); `numeric` is exact (``ExactDecimal``), never a float. NULL follows SQL's
/// three-valued logic: a row passes only when the predicate is true, not when it is NULL.
///
/// Use: parse once when the configuration is loaded (syntax errors are found there, with the
/// character position and what was expected), check ``columnNames`` against the table when its
/// columns are known, then ``bind(to:)`` once per relation schema and evaluate per row:
///
/// ```swift
/// let predicate = try Predicate("amount > 100 AND status <> 'draft'")
/// let bound = try predicate.bind(to: schema.columns, table: schema.qualifiedName)
/// if bound.evaluate(tuple.values) == .true { … }
/// ```
public struct Predicate: Sendable, Equatable, CustomStringConvertible {
    /// The text as written in the configuration.
    public let text: String
    public let expression: PredicateExpression

    /// Parses `text`; the error gives the character position and what was expected there.
    public init(_ text: String) throws(PredicateError) {
        self.text = text
        expression = try PredicateParser.parse(text)
    }

    /// The column names the predicate reads, each once, in order of first appearance.
    public var columnNames: [String] { expression.columnNames }

    public var description: String { text }

    /// Resolves the predicate against a table's columns and checks its types; `table` names the
    /// table in errors. Fails for an unknown column, incompatible types, or a predicate that is not
    /// a condition (`amount + 1`).
    public func bind(to columns: [RelationSchema.Column], table: String? = nil) throws(PredicateError) -> BoundPredicate {
        let binder = ExpressionBinder(columns: columns, table: table)
        let root = try binder.condition(expression, "a where predicate")
        return BoundPredicate(expression: BoundExpression(root: root, type: .boolean,
                                                          referencedColumns: Self.indices(of: columnNames, in: columns)))
    }

    static func indices(of names: [String], in columns: [RelationSchema.Column]) -> [Int] {
        names.compactMap { name in columns.firstIndex { $0.name == name } }.sorted()
    }
}

/// A predicate bound to one table's schema; evaluate it per row.
public struct BoundPredicate: Sendable {
    public let expression: BoundExpression
    /// The fast form when the predicate is an AND of column-against-constant tests.
    let tests: ColumnTests?

    init(expression: BoundExpression) {
        self.expression = expression
        tests = ColumnTests(expression.root)
    }

    /// Indices of the columns the predicate reads.
    public var referencedColumns: [Int] { expression.referencedColumns }

    /// The predicate's truth over `row` (one value per column of the bound schema).
    public func evaluate(_ row: [Value]) -> PredicateResult { result(expression.evaluate(row)) }

    /// The same over a tuple's bytes (the per-row hot path: no values materialized).
    public func evaluate(_ tuple: Tuple) -> PredicateResult {
        if let tests, let decided = tests.evaluate(tuple) { return decided }
        return result(expression.evaluate(tuple))
    }

    private func result(_ value: SQLValue?) -> PredicateResult {
        guard let value else { return .unavailable }
        switch value {
        case .boolean(true): return .true
        case .boolean(false): return .false
        default: return .null
        }
    }
}

/// The outcome of a predicate over a row. Only `.true` lets the row through.
public enum PredicateResult: Sendable, Equatable {
    case `true`, `false`, null
    /// A column it reads was not sent (an unchanged TOASTed value): the outcome is unknown.
    case unavailable
}

/// A scalar expression over a row (`amount * 2`, `price - discount`), in the predicate language:
/// for measures and group keys that compute a value rather than a condition.
public struct RowExpression: Sendable, Equatable {
    public let text: String
    public let expression: PredicateExpression

    public init(_ text: String) throws(PredicateError) {
        self.text = text
        expression = try PredicateParser.parse(text)
    }

    public var columnNames: [String] { expression.columnNames }

    public func bind(to columns: [RelationSchema.Column], table: String? = nil) throws(PredicateError) -> BoundExpression {
        let (root, type) = try ExpressionBinder(columns: columns, table: table).bind(expression)
        return BoundExpression(root: root, type: type == .unknown ? .text : type,
                               referencedColumns: Predicate.indices(of: columnNames, in: columns))
    }
}

import SluiceKit
import SluiceWire

/// One entry of a source's `tables:`: a table, and what of it the publication carries — PostgreSQL
/// 15's row filter (`where:`) and column list (`columns:`), pushed down so that rows and columns
/// outside them never leave the source.
///
///     tables:
///       - public.accounts
///       - {name: public.orders, where: "status <> 'draft'", columns: [id, account_id, status]}
///
/// A plain name means the whole table: no filter, every column.
struct PublishedTable: Equatable, Sendable {
    let name: TableName
    /// A boolean SQL expression over the table's columns, as written in the file.
    let rowFilter: String?
    /// The published columns as PostgreSQL names them (unquoted names folded to lower case); nil: all.
    let columns: [String]?

    init(name: TableName, rowFilter: String? = nil, columns: [String]? = nil) {
        self.name = name
        self.rowFilter = rowFilter
        self.columns = columns
    }

    var isWholeTable: Bool { rowFilter == nil && columns == nil }

    /// The table as `CREATE/ALTER PUBLICATION … TABLE` takes it: `"s"."t" ("a", "b") WHERE (expr)`.
    var publicationClause: String {
        Self.clause(name, rowFilter: rowFilter, columns: columns)
    }

    static func clause(_ name: TableName, rowFilter: String?, columns: [String]?) -> String {
        var text = name.sql
        if let columns { text += " (" + columns.map(PGConnection.quoteIdentifier).joined(separator: ", ") + ")" }
        if let rowFilter { text += " WHERE (" + rowFilter + ")" }
        return text
    }

    static let keys = ["name", "where", "columns"]

    /// Reads `tables:` (a list of names and mappings); nil when the key is absent.
    static func parseList(_ value: ConfigValue?, config: ConnectorConfig) throws -> [PublishedTable]? {
        let items: [ConfigValue]
        switch value {
        case nil: return nil
        case let .null(line)?: throw config.noValue("tables", line: line, fallback: "every table of the publication")
        case let .scalar(text, line)?: items = [.scalar(text, line: line)]
        case let .list(list, _)?: items = list
        case let .map(_, line)?:
            throw config.error("tables", "expected a list of tables, found a mapping (write tables: [{name: public.orders, where: ...}])",
                               line: line)
        }
        var seen: Set<TableName> = []
        return try items.enumerated().map { index, item in
            let entry = try parse(item, key: "tables[\(index)]", config: config)
            guard seen.insert(entry.name).inserted else {
                throw config.error("tables[\(index)]", "\(entry.name) is listed twice; list each table once", line: item.line)
            }
            return entry
        }
    }

    static func parse(_ item: ConfigValue, key: String, config: ConnectorConfig) throws -> PublishedTable {
        switch item {
        case let .scalar(text, line):
            // A plain name's mistake names `tables`, as before mappings were allowed.
            return PublishedTable(name: try tableName(text, key: "tables", line: line, config: config))
        case let .map(pairs, line):
            for pair in pairs where !keys.contains(pair.key) {
                throw config.error("\(key).\(pair.key)", "unknown key for a table (known: \(keys.joined(separator: ", ")))",
                                   line: pair.value.line)
            }
            func entry(_ name: String) -> ConfigValue? { pairs.first { $0.key == name }?.value }
            guard case let .scalar(nameText, nameLine)? = entry("name") else {
                if let other = entry("name"), !isNull(other) {
                    throw config.error("\(key).name", "expected a table name, found \(kind(other))", line: other.line)
                }
                throw config.error("\(key).name", "is required: the table, e.g. {name: public.orders, where: \"status <> 'draft'\"}",
                                   line: line)
            }
            let name = try tableName(nameText, key: "\(key).name", line: nameLine, config: config)
            var rowFilter: String?
            switch entry("where") {
            case nil, .null?: break
            case let .scalar(text, whereLine)?:
                guard !text.allSatisfy(\.isWhitespace) else {
                    throw config.error("\(key).where", "is empty: write a condition such as \"status <> 'draft'\", or leave the key out",
                                       line: whereLine)
                }
                rowFilter = text
            case let other?:
                throw config.error("\(key).where", "expected an SQL condition as one value, found \(kind(other))", line: other.line)
            }
            var columns: [String]?
            switch entry("columns") {
            case nil, .null?: break
            case let .list(list, listLine)?:
                guard !list.isEmpty else {
                    throw config.error("\(key).columns", "is empty: list the columns to publish, or leave the key out", line: listLine)
                }
                var names: [String] = []
                for element in list {
                    guard case let .scalar(text, elementLine) = element else {
                        throw config.error("\(key).columns", "expected a list of column names, found \(kind(element)) in it",
                                           line: element.line)
                    }
                    guard let column = columnName(text) else {
                        throw config.error("\(key).columns", "'\(text)' is not a column name (quote names with capitals or spaces: '\"Name\"')",
                                           line: elementLine)
                    }
                    guard !names.contains(column) else {
                        throw config.error("\(key).columns", "column \(column) is listed twice", line: elementLine)
                    }
                    names.append(column)
                }
                columns = names
            case let other?:
                throw config.error("\(key).columns", "expected a list of column names such as [id, status], found \(kind(other))",
                                   line: other.line)
            }
            return PublishedTable(name: name, rowFilter: rowFilter, columns: columns)
        case let other:
            throw config.error(key, "expected a table name or a mapping {name, where, columns}, found \(kind(other))", line: other.line)
        }
    }

    private static func isNull(_ value: ConfigValue) -> Bool {
        if case .null = value { return true }
        return false
    }

    private static func kind(_ value: ConfigValue) -> String {
        switch value {
        case .scalar: return "a value"
        case .list: return "a list"
        case .map: return "a mapping"
        case .null: return "nothing"
        }
    }

    private static func tableName(_ text: String, key: String, line: Int, config: ConnectorConfig) throws -> TableName {
        do {
            return try TableName.parse(text)
        } catch {
            throw config.error(key, """
                '\(text)' \(error). Write schema.table, e.g. public.orders; quote names with capitals, \
                spaces or dots as SQL does: "My Schema"."Order.Items"
                """, line: line)
        }
    }

    /// A column name with SQL's identifier rules: unquoted folded to lower case, or double-quoted.
    static func columnName(_ text: String) -> String? {
        if text.hasPrefix("\""), text.hasSuffix("\""), text.count >= 3 {
            let inner = String(text.dropFirst().dropLast())
            let unescaped = inner.replacingOccurrences(of: "\"\"", with: "\"")
            // A lone quote inside would end the identifier in SQL.
            guard !unescaped.replacingOccurrences(of: "\"", with: "").isEmpty,
                  inner.replacingOccurrences(of: "\"\"", with: "").contains("\"") == false else { return nil }
            return unescaped.utf8.count <= TableName.maxIdentifierBytes ? unescaped : nil
        }
        guard let first = text.first, first == "_" || first.isLetter || !first.isASCII,
              text.allSatisfy({ !$0.isASCII || $0.isLetter || $0.isNumber || $0 == "_" || $0 == "$" }),
              text.utf8.count <= TableName.maxIdentifierBytes else { return nil }
        return String(text.map { $0.isASCII ? Character($0.lowercased()) : $0 })
    }
}

import SluiceKit
import SluiceWire

/// An aggregate table as verify compares it: against the `GROUP BY` the source computes over its
/// current rows — one row per window and group, `window_start`, `window_end`, the group columns and
/// the measures — compared as a multiset of whole rows (keyless), so the source side is a query,
/// not a table.
///
/// Compared where the source can compute exactly what the sink keeps: windows over a time column
/// (tumbling or hopping, aligned to the epoch), `count`, `sum`, `min`, `max` and `avg` of exact
/// columns (the target computes `avg` as numeric sum / count, as PostgreSQL's `avg` does), at a
/// PostgreSQL target. The rest is reported as not compared (``unsupported(_:target:)``).
struct AggregateView {
    let definition: AggregateDefinition
    /// The aggregate table's compared columns, keyless.
    let shape: TableShape
    /// The source's `GROUP BY`, as a parenthesized subquery with those columns.
    let sourceRelation: String
    /// What each column is compared as at the target: sums and averages without trailing zeros
    /// (a sum kept through retractions has the widest scale it ever had, `GROUP BY` that of the rows
    /// left: 6.0000 and 6.0 are the same sum).
    let targetValues: [String]

    static func unsupported(_ definition: AggregateDefinition, target: VerifyTarget) -> String? {
        if case .sqlite = target { return "an aggregate table at an SQLite target is not compared (only at PostgreSQL targets)" }
        if case .commitTime = definition.window.time {
            return "its windows are by commit_time, which the source's rows do not hold: not compared"
        }
        if definition.retain != nil { return "it drops old windows (retain): not compared" }
        return nil
    }

    /// Throws (with the reason) when a measure reads a column whose sums the source would round differently.
    /// `source` is the source table's shape as the sink receives it, `relation` its name in SQL, `filters`
    /// the predicates (publication's, sink's) its rows pass before the aggregate's own `where`.
    init(_ definition: AggregateDefinition, from source: TableShape, relation: String, filters: [String] = []) throws(VerifyUsageError) {
        self.definition = definition
        func column(_ name: String) throws(VerifyUsageError) -> TableShape.Column {
            guard let column = source.columns.first(where: { $0.name == name }) else {
                throw VerifyUsageError(description: "column \(name) of \(definition.from) is not compared at the source (not published?)")
            }
            return column
        }
        guard case let .column(timeName) = definition.window.time else {
            throw VerifyUsageError(description: "its windows are by commit_time: not compared")
        }
        let time = PGConnection.quoteIdentifier(try column(timeName).name)
        var columns = [TableShape.Column(name: "window_start", typeOID: 1184, typeName: "timestamp with time zone"),
                       TableShape.Column(name: "window_end", typeOID: 1184, typeName: "timestamp with time zone")]
        var select = ["to_timestamp(k * \(definition.window.every) / 1000000.0) AS window_start",
                      "to_timestamp((k * \(definition.window.every) + \(definition.window.size)) / 1000000.0) AS window_end"]
        var groups = ["k"]
        for name in definition.groupBy {
            let group = try column(name)
            columns.append(group)
            let quoted = PGConnection.quoteIdentifier(name)
            select.append("r.\(quoted)")
            groups.append("r.\(quoted)")
        }
        var trimmed: Set<String> = []
        for (name, measure) in definition.measures {
            let quotedName = PGConnection.quoteIdentifier(name)
            guard let measured = measure.column else {
                columns.append(TableShape.Column(name: name, typeOID: 20, typeName: "bigint"))
                select.append("count(*) AS \(quotedName)")
                continue
            }
            let value = try column(measured)
            let argument = "r." + PGConnection.quoteIdentifier(measured)
            switch measure {
            case .countRows, .count:
                columns.append(TableShape.Column(name: name, typeOID: 20, typeName: "bigint"))
                select.append("count(\(argument)) AS \(quotedName)")
            case .sum, .avg:
                guard value.typeClass == .integer || value.typeClass == .numeric else {
                    throw VerifyUsageError(description: "measure \(name) adds \(value.typeName) values (rounded in the order they arrive): not compared")
                }
                columns.append(TableShape.Column(name: name, typeOID: 1700, typeName: "numeric"))
                select.append("trim_scale(\(measure == .sum(measured) ? "sum" : "avg")(\(argument)::numeric)) AS \(quotedName)")
                trimmed.insert(name)
            case .min, .max:
                columns.append(TableShape.Column(name: name, typeOID: value.typeOID, typeName: value.typeName))
                select.append("\(measure == .min(measured) ? "min" : "max")(\(argument)) AS \(quotedName)")
            }
        }
        let every = definition.window.every, size = definition.window.size
        let filter = (filters + (definition.predicate.map { [$0.text] } ?? [])).map { " AND (" + $0 + ")" }.joined()
        sourceRelation = """
            (SELECT \(select.joined(separator: ", "))
             FROM (SELECT *, extract(epoch FROM \(time)) * 1000000 AS _sluice_time FROM \(relation)
                   WHERE \(time) IS NOT NULL\(filter)) r,
                  LATERAL generate_series(floor((r._sluice_time - \(size)) / \(every))::bigint + 1, floor(r._sluice_time / \(every))::bigint) k
             GROUP BY \(groups.joined(separator: ", "))) _sluice_aggregate
            """
        shape = TableShape(table: definition.table, columns: columns, key: [])
        targetValues = columns.map { column in
            let quoted = PGConnection.quoteIdentifier(column.name)
            return trimmed.contains(column.name) ? "trim_scale(\(quoted))" : quoted
        }
    }
}

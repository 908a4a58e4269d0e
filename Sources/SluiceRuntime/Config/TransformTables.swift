import SluiceKit

/// Checks the tables a sink's transform keys name against the tables its sources capture, when the
/// file lists them (`tables:` of names or `{name: …}` entries): an unknown table is an error at load,
/// before any database is touched. Sources without a list (`all`, or the publication's tables) are
/// checked when their tables' schemas arrive instead.
enum TransformTables {
    static func check(_ transforms: SinkTransforms, sink: ConnectorConfig, topics: [String], sources: [ConnectorConfig]) throws {
        let named = transforms.namedTables
        var captured = Set<TableName>()
        for topic in topics {
            guard let source = sources.first(where: { $0.name == topic }), let tables = listedTables(source) else { return }
            captured.formUnion(tables)
        }
        // An aggregate reads the changes the sink receives, by the name it receives them under.
        let received = captured.filter(transforms.includes)
        for (index, aggregate) in ((try? AggregateDefinition.parseAll(sink)) ?? []).enumerated()
        where !received.contains(where: { transforms.target(of: $0) == aggregate.from }) {
            if received.contains(aggregate.from) {
                throw sink.error("aggregates[\(index)].from", """
                    the sink receives \(aggregate.from) as \(transforms.target(of: aggregate.from)) (rename:), and an aggregate reads \
                    the changes the sink receives: write from: \(transforms.target(of: aggregate.from))
                    """)
            }
            if let left = captured.sorted().first(where: { transforms.target(of: $0) == aggregate.from || $0 == aggregate.from }) {
                throw sink.error("aggregates[\(index)].from", """
                    \(aggregate.from) never reaches this sink: its tables: leaves \(left) out, and an aggregate reads the changes the sink \
                    receives; include \(left) in tables: (the sink then also mirrors it)
                    """)
            }
            throw sink.error("aggregates[\(index)].from", """
                names \(aggregate.from), which this sink does not receive (it receives: \
                \(received.map { transforms.target(of: $0).description }.sorted().joined(separator: ", ")))
                """)
        }
        // An aggregate's table that the sink also mirrors a captured table into would be written by both.
        for (index, aggregate) in ((try? AggregateDefinition.parseAll(sink)) ?? []).enumerated() {
            if let mirrored = captured.sorted().first(where: { transforms.includes($0) && transforms.target(of: $0) == aggregate.table }) {
                throw sink.error("aggregates[\(index)].table", """
                    '\(aggregate.table)' is the table the sink mirrors \(mirrored) into; name the aggregate's table otherwise \
                    (or leave \(mirrored) out with tables:, or rename: it)
                    """)
            }
        }
        for (key, table) in named where !captured.contains(table) {
            throw transforms.error(key, """
                names \(table), which the sink's topics (\(topics.joined(separator: ", "))) do not capture \
                (their tables: \(captured.sorted().map(\.description).joined(separator: ", ")))
                """)
        }
    }

    private static func listedTables(_ source: ConnectorConfig) -> [TableName]? {
        guard case let .list(items, _)? = source.allEntries.first(where: { $0.key == "tables" })?.value else { return nil }
        var tables: [TableName] = []
        for item in items {
            switch item {
            case let .scalar(text, _):
                guard let name = try? TableName.parse(text) else { return nil }
                tables.append(name)
            case let .map(pairs, _):
                guard case let .scalar(text, _)? = pairs.first(where: { $0.key == "name" })?.value,
                      let name = try? TableName.parse(text) else { return nil }
                tables.append(name)
            default: return nil
            }
        }
        return tables
    }
}

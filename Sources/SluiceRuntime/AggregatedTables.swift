import SluiceKit

/// The tables of one topic that some sink keeps an aggregate over (`aggregates: from:`, which names the
/// table as the sink receives it, after `tables:` and `rename:`). A backfill of such a table is copied
/// whole, as one transaction that replaces its rows, so aggregates recompute its contribution instead
/// of counting the re-sent rows twice; and the source table must send whole old rows.
struct AggregatedTables: Sendable {
    private struct Use: Sendable {
        let sink: String
        let transforms: SinkTransforms
        let from: TableName
        /// The aggregate's key, e.g. `sinks[0] (dashboard).aggregates[1].from`.
        let key: String
        let file: String

        func feeds(from table: TableName) -> Bool { transforms.includes(table) && transforms.target(of: table) == from }
    }

    private let uses: [Use]

    init(_ config: SluiceConfig, topic: String) {
        uses = config.sinks.filter { $0.topics.contains(topic) }.flatMap { section in
            // The sink validated the key when it was built; an unreadable one keeps no aggregate.
            let definitions = (try? AggregateDefinition.parseAll(section.config)) ?? []
            return definitions.enumerated().map { index, definition in
                Use(sink: section.config.name, transforms: section.transforms, from: definition.from,
                    key: "\(section.config.path).aggregates[\(index)].from", file: section.config.file)
            }
        }
    }

    var isEmpty: Bool { uses.isEmpty }

    func contains(_ table: TableName) -> Bool { uses.contains { $0.feeds(from: table) } }

    /// What `check` and `run` say about the aggregated tables a source cannot send whole old rows of.
    func findings(_ source: any OldRowSource, name: String) -> [CheckFinding] {
        let lacking: [(table: TableName, fix: String)]
        do { lacking = try source.tablesWithoutOldRows(among: contains) } catch {
            return [CheckFinding(.warning, "source \(name)", "cannot check the replica identity of aggregated tables: \(error)")]
        }
        return lacking.flatMap { table, fix in
            uses.filter { $0.feeds(from: table) }.map { use in
                CheckFinding(.error, "sink \(use.sink)", """
                    \(use.file): \(use.key): table \(table) lacks REPLICA IDENTITY FULL, which an aggregate needs: an update \
                    or delete retracts the old row, and the source sends the whole old row only then
                    """, fix: fix)
            }
        }
    }
}

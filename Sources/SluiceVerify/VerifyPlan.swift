import Foundation
import SluiceKit

/// A mistake in what verify was asked to do (exit 2): an unknown sink or table, a sink that is not SQL.
public struct VerifyUsageError: Error, CustomStringConvertible {
    public let description: String
}

/// Which tables of which sinks `sluice verify` compares, and which it leaves out and why.
public struct VerifyPlan {
    public struct SourceTable {
        public var source: ConnectorConfig
        public var reader: any VerifiableSource
        public var table: TableName
        /// The sink's transforms: verify compares what they make of the table.
        public var transforms: SinkTransforms
    }

    public struct SinkPlan {
        public var sink: ConnectorConfig
        public var target: VerifyTarget
        public var tables: [SourceTable]
        /// Tables left out, with the reason (shown, never silent).
        public var skipped: [(table: TableName?, reason: String)]
        /// Aggregate tables compared against the GROUP BY at their source.
        public var aggregates: [AggregateTable] = []
    }

    public struct AggregateTable {
        public var source: ConnectorConfig
        public var reader: any VerifiableSource
        public var definition: AggregateDefinition
        /// The source table of `definition.from` (which names it as the sink receives it, after `rename`).
        public var table: TableName
        /// The sink's transforms: its `where` and masks shape what the aggregate sees.
        public var transforms: SinkTransforms
    }

    public var sinks: [SinkPlan]
    /// Sinks left out (not SQL), with the reason.
    public var notes: [String]

    /// Chooses from `sinks` (with the topics each reads and its transforms, as the file `file` has them).
    public static func make(file: String, sources: [ConnectorConfig],
                            sinks: [(config: ConnectorConfig, topics: [String], transforms: SinkTransforms)],
                            registry: ConnectorRegistry, sink requested: String?, tables requestedTables: [String]) throws -> VerifyPlan {
        try make(file: file, sources: sources, sinks: sinks, registry: registry, sinks: requested.map { [$0] } ?? [], tables: requestedTables)
    }

    /// The same for several sinks (`--sink A --sink B`; none: every SQL sink).
    public static func make(file: String, sources: [ConnectorConfig],
                            sinks: [(config: ConnectorConfig, topics: [String], transforms: SinkTransforms)],
                            registry: ConnectorRegistry, sinks requestedSinks: [String], tables requestedTables: [String]) throws -> VerifyPlan {
        let wanted = try requestedTables.map { entry -> TableName in
            do { return try TableName.parse(entry) } catch {
                throw VerifyUsageError(description: "--table '\(entry)' \(error). Write schema.table, e.g. public.orders")
            }
        }
        var notes: [String] = []
        var chosen: [((config: ConnectorConfig, topics: [String], transforms: SinkTransforms), VerifyTarget)] = []
        if let unknown = requestedSinks.first(where: { requested in !sinks.contains { $0.config.name == requested } }) {
            throw VerifyUsageError(description: "\(file): there is no sink '\(unknown)'; sinks: \(sinks.map(\.config.name).joined(separator: ", "))")
        }
        for section in sinks where requestedSinks.isEmpty || requestedSinks.contains(section.config.name) {
            let sink = try registry.sinks[section.config.type]!.init(config: section.config)
            guard let verifiable = sink as? any VerifiableSink else {
                let reason = "sink \(section.config.name) (type \(section.config.type)) is not a SQL sink; verify compares postgres and sqlite sinks"
                if !requestedSinks.isEmpty { throw VerifyUsageError(description: reason) }
                notes.append(reason)
                continue
            }
            chosen.append(((section.config, section.topics, section.transforms), verifiable.verifyTarget))
        }
        guard !chosen.isEmpty else {
            throw VerifyUsageError(description: "\(file) has no SQL sink (postgres or sqlite) to verify")
        }
        var sourcesTables: [String: [TableName]] = [:]
        var plans: [SinkPlan] = []
        var matched = Set<TableName>()
        // Whether any chosen sink reads a topic whose source verify can read: else nothing can be compared.
        var comparable = false
        for (section, target) in chosen {
            var plan = SinkPlan(sink: section.config, target: target, tables: [], skipped: [])
            for topic in section.topics {
                guard let sourceConfig = sources.first(where: { $0.name == topic }),
                      let source = try registry.sources[sourceConfig.type]!.init(config: sourceConfig) as? any VerifiableSource else {
                    plan.skipped.append((table: nil, reason: "topic \(topic) has no PostgreSQL source in \(file) to compare with"))
                    continue
                }
                comparable = true
                if sourcesTables[topic] == nil {
                    do { sourcesTables[topic] = try source.capturedTables() } catch {
                        throw VerifyFailure("cannot list the tables of source \(topic): \(error)")
                    }
                }
                for table in sourcesTables[topic]! where wanted.isEmpty || wanted.contains(table) {
                    matched.insert(table)
                    if let reason = SinkView.unsupported(section.transforms, table) {
                        plan.skipped.append((table: table, reason: reason))
                    } else {
                        plan.tables.append(SourceTable(source: sourceConfig, reader: source, table: table, transforms: section.transforms))
                    }
                }
            }
            // Aggregate tables: against the GROUP BY at the source that captures their table, or listed as not compared.
            for aggregate in (try? AggregateDefinition.parseAll(section.config)) ?? [] {
                let transforms = section.transforms
                let captured = section.topics.lazy.compactMap { topic in
                    sourcesTables[topic]?.first { transforms.includes($0) && transforms.target(of: $0) == aggregate.from }.map { (topic, $0) }
                }.first
                let table = captured?.1 ?? aggregate.from
                guard wanted.isEmpty || wanted.contains(table) || wanted.contains(aggregate.from) else { continue }
                if let reason = AggregateView.unsupported(aggregate, target: target) ?? SinkView.unsupported(transforms, table) {
                    plan.skipped.append((table: aggregate.table, reason: "aggregate table of \(aggregate.from): " + reason))
                } else if let (topic, table) = captured, let sourceConfig = sources.first(where: { $0.name == topic }),
                          let reader = try registry.sources[sourceConfig.type]!.init(config: sourceConfig) as? any VerifiableSource {
                    plan.aggregates.append(AggregateTable(source: sourceConfig, reader: reader, definition: aggregate, table: table,
                                                          transforms: transforms))
                } else {
                    plan.skipped.append((table: aggregate.table, reason: "aggregate table of \(aggregate.from): no source of this sink captures it"))
                }
            }
            plans.append(plan)
        }
        guard comparable else {
            let topics = Set(chosen.flatMap { $0.0.topics }).sorted().map { topic in
                sources.first { $0.name == topic }.map { "topic \(topic) is written by source \(topic) of type \($0.type)" }
                    ?? "topic \(topic) has no source in this file"
            }
            throw VerifyUsageError(description: """
                \(file): nothing to verify: \(topics.joined(separator: "; ")). verify compares each postgres or sqlite sink \
                with the PostgreSQL source of its topics: add that source (type: postgres) to \(file), or, for a sink-only \
                file of a split deployment, run verify with a file that holds both the source and the sink.
                """)
        }
        if let unknown = wanted.first(where: { !matched.contains($0) }) {
            let captured = Set(sourcesTables.values.joined()).sorted().map(\.description).joined(separator: ", ")
            throw VerifyUsageError(description: "--table \(unknown) is not captured by the sources of the chosen sinks (captured: \(captured.isEmpty ? "none" : captured))")
        }
        return VerifyPlan(sinks: plans, notes: notes)
    }
}

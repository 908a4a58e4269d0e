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
    }

    public struct SinkPlan {
        public var sink: ConnectorConfig
        public var target: VerifyTarget
        public var tables: [SourceTable]
        /// Tables left out, with the reason (shown, never silent).
        public var skipped: [(table: TableName?, reason: String)]
    }

    public var sinks: [SinkPlan]
    /// Sinks left out (not SQL), with the reason.
    public var notes: [String]

    /// The per-sink transform keys (DESIGN.md "What reaches each target"): a table they touch is not
    /// a plain mirror of the source, and verify does not compare it yet.
    static let tableTransforms = ["rename", "where", "columns"]
    static let wholeSinkTransforms = ["deletes", "mode", "metadata"]

    /// `sinks` with the topics each reads, as the configuration file `file` has them.
    public static func make(file: String, sources: [ConnectorConfig], sinks: [(config: ConnectorConfig, topics: [String])],
                            registry: ConnectorRegistry, sink requested: String?, tables requestedTables: [String]) throws -> VerifyPlan {
        let wanted = try requestedTables.map { entry -> TableName in
            do { return try TableName.parse(entry) } catch {
                throw VerifyUsageError(description: "--table '\(entry)' \(error). Write schema.table, e.g. public.orders")
            }
        }
        var notes: [String] = []
        var chosen: [((config: ConnectorConfig, topics: [String]), VerifyTarget)] = []
        if let requested, !sinks.contains(where: { $0.config.name == requested }) {
            throw VerifyUsageError(description: "\(file): there is no sink '\(requested)'; sinks: \(sinks.map(\.config.name).joined(separator: ", "))")
        }
        for section in sinks where requested == nil || section.config.name == requested {
            let sink = try registry.sinks[section.config.type]!.init(config: section.config)
            guard let verifiable = sink as? any VerifiableSink else {
                let reason = "sink \(section.config.name) (type \(section.config.type)) is not a SQL sink; verify compares postgres and sqlite sinks"
                if requested != nil { throw VerifyUsageError(description: reason) }
                notes.append(reason)
                continue
            }
            chosen.append((section, verifiable.verifyTarget))
        }
        guard !chosen.isEmpty else {
            throw VerifyUsageError(description: "\(file) has no SQL sink (postgres or sqlite) to verify")
        }
        var sourcesTables: [String: [TableName]] = [:]
        var plans: [SinkPlan] = []
        var matched = Set<TableName>()
        for (section, target) in chosen {
            var plan = SinkPlan(sink: section.config, target: target, tables: [], skipped: [])
            for topic in section.topics {
                guard let sourceConfig = sources.first(where: { $0.name == topic }),
                      let source = try registry.sources[sourceConfig.type]!.init(config: sourceConfig) as? any VerifiableSource else {
                    plan.skipped.append((table: nil, reason: "topic \(topic) has no PostgreSQL source in \(file) to compare with"))
                    continue
                }
                if sourcesTables[topic] == nil {
                    do { sourcesTables[topic] = try source.capturedTables() } catch {
                        throw VerifyFailure("cannot list the tables of source \(topic): \(error)")
                    }
                }
                for table in sourcesTables[topic]! where wanted.isEmpty || wanted.contains(table) {
                    matched.insert(table)
                    if let reason = try transformReason(section.config, table) {
                        plan.skipped.append((table: table, reason: reason))
                    } else {
                        plan.tables.append(SourceTable(source: sourceConfig, reader: source, table: table))
                    }
                }
            }
            if section.config.value("aggregates") != nil {
                plan.skipped.append((table: nil, reason: "aggregate tables are not verified yet"))
            }
            plans.append(plan)
        }
        if let unknown = wanted.first(where: { !matched.contains($0) }) {
            let captured = Set(sourcesTables.values.joined()).sorted().map(\.description).joined(separator: ", ")
            throw VerifyUsageError(description: "--table \(unknown) is not captured by the sources of the chosen sinks (captured: \(captured.isEmpty ? "none" : captured))")
        }
        return VerifyPlan(sinks: plans, notes: notes)
    }

    /// Why a sink does not mirror `table` plainly, or nil when it does.
    static func transformReason(_ sink: ConnectorConfig, _ table: TableName) throws -> String? {
        for key in wholeSinkTransforms {
            guard let value = sink.value(key) else { continue }
            if case let .scalar(text, _) = value, (key == "deletes" && text == "apply") || (key == "mode" && text == "mirror") { continue }
            return "the sink has transform key \(key): verify compares only tables the sink mirrors plainly"
        }
        if let globs = try sink.stringList("tables") {
            let includes = globs.filter { !$0.hasPrefix("!") }
            let excludes = globs.filter { $0.hasPrefix("!") }.map { String($0.dropFirst()) }
            let name = table.schema + "." + table.table
            let included = includes.isEmpty || includes.contains { glob($0, matches: name) }
            if !included || excludes.contains(where: { glob($0, matches: name) }) {
                return "not mirrored by this sink (its tables: list leaves it out)"
            }
        }
        for key in tableTransforms {
            guard case let .map(entries, _)? = sink.value(key) else { continue }
            if entries.contains(where: { (try? TableName.parse($0.key)) == table }) {
                return "the sink transforms it (\(key)): verify compares only tables the sink mirrors plainly"
            }
        }
        return nil
    }

    /// `*` matches any run of characters.
    static func glob(_ pattern: String, matches text: String) -> Bool {
        let parts = pattern.split(separator: "*", omittingEmptySubsequences: false).map(String.init)
        guard parts.count > 1 else { return pattern == text }
        guard text.hasPrefix(parts[0]) else { return false }
        var rest = Substring(text.dropFirst(parts[0].count))
        for (index, part) in parts.enumerated().dropFirst() {
            if index == parts.count - 1 { return part.isEmpty || rest.hasSuffix(part) && rest.count >= part.count }
            guard let found = rest.range(of: part) else { return false }
            rest = rest[found.upperBound...]
        }
        return true
    }
}

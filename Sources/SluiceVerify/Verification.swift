import Foundation
import SluiceKit
import SluiceWire

/// `sluice verify`: runs the plan, table by table, sink by sink.
public final class Verification {
    public let plan: VerifyPlan
    /// Rows per chunk: what each side summarizes at once, and the most held in memory for a chunk
    /// that differs.
    public var chunkSize = 10_000
    /// How long to wait for a sink to apply what a snapshot saw before giving up (exit 1).
    public var catchUpTimeout: TimeInterval = 120
    /// The offset of a topic's last durable commit marker, nil when it is empty.
    let topicEnd: (String) -> UInt64?

    public init(plan: VerifyPlan, topicEnd: @escaping (String) -> UInt64?) {
        self.plan = plan
        self.topicEnd = topicEnd
    }

    /// Verifies the planned tables (only `only`, when given), handing each result over as it is done.
    public func run(only: Set<String>? = nil, observer: (any VerifyObserver)?,
                    tableDone: (TableVerification) -> Void) throws -> [TableVerification] {
        var results: [TableVerification] = []
        for sink in plan.sinks {
            for skipped in sink.skipped {
                guard let table = skipped.table, only.map({ $0.contains(sink.sink.name + " " + table.description) }) ?? true else { continue }
                var result = TableVerification(sink: sink.sink.name, table: table, targetTable: "", columns: [], keyColumns: [])
                result.skipped = skipped.reason
                tableDone(result)
                results.append(result)
            }
            let wanted = sink.tables.filter { entry in only.map { $0.contains(sink.sink.name + " " + entry.table.description) } ?? true }
            let aggregates = sink.aggregates.filter { entry in
                only.map { $0.contains(sink.sink.name + " " + entry.definition.table.description) } ?? true
            }
            guard !wanted.isEmpty || !aggregates.isEmpty else { continue }
            let store: TargetStore
            do { store = try TargetStore.open(sink.target) } catch let error as VerifyFailure { throw error } catch {
                throw VerifyFailure("cannot open the target of sink \(sink.sink.name): \(error)")
            }
            var connections: [String: PGConnection] = [:]
            var catchUps: [String: SinkCatchUp] = [:]
            func open(_ config: ConnectorConfig, _ reader: any VerifiableSource) throws -> (PGConnection, SinkCatchUp) {
                let topic = config.name
                if let source = connections[topic], let catchUp = catchUps[topic] { return (source, catchUp) }
                let source: PGConnection
                do { source = try PGConnection(url: reader.verifyURL, applicationName: "sluice-verify") } catch {
                    throw VerifyFailure("cannot connect to source \(topic): \(error)")
                }
                let catchUp = SinkCatchUp(sink: sink.sink.name, topic: topic, target: store, source: source, slot: reader.verifySlot,
                                          topicEnd: { [topicEnd] in topicEnd(topic) }, timeout: catchUpTimeout)
                connections[topic] = source
                catchUps[topic] = catchUp
                return (source, catchUp)
            }
            for entry in wanted {
                let (source, catchUp) = try open(entry.source, entry.reader)
                let result = try verify(entry, sink: sink.sink.name, store: store, source: source, catchUp: catchUp, observer: observer)
                tableDone(result)
                results.append(result)
            }
            for aggregate in aggregates {
                let (source, catchUp) = try open(aggregate.source, aggregate.reader)
                let result = try verify(aggregate, sink: sink.sink.name, store: store, source: source, catchUp: catchUp, observer: observer)
                tableDone(result)
                results.append(result)
            }
        }
        return results
    }

    private func verify(_ entry: VerifyPlan.SourceTable, sink: String, store: TargetStore, source: PGConnection, catchUp: SinkCatchUp,
                        observer: (any VerifyObserver)?) throws -> TableVerification {
        do {
            guard let whole = try TableShape.read(entry.table, on: source) else {
                throw VerifyFailure("table \(entry.table) no longer exists at source \(entry.source.name)")
            }
            // Compared as published (only the rows the publication's filter passes, only its columns),
            // then as the sink transforms it.
            let published = try TableShape.publication(entry.reader.verifyPublication, table: entry.table, on: source)
            let shape = published.columns.map { whole.restricted(to: $0) } ?? whole
            var result = TableVerification(sink: sink, table: entry.table, targetTable: "", columns: [], keyColumns: [])
            let view: SinkView
            do { view = try SinkView(shape, transforms: entry.transforms) } catch {
                result.skipped = error.description
                return result
            }
            result.targetTable = store.isSQLite ? view.target.sqliteName : view.target.table.description
            result.columns = view.source.columns.map(\.name)
            result.keyColumns = view.source.key.map { view.source.columns[$0].name }
            result.transforms = view.transformed
            let filter = [published.filter, view.filter].compactMap { $0.map { "(" + $0 + ")" } }.joined(separator: " AND ")
            func sourceRows() throws -> UInt64 {
                try PostgresTableReader(connection: source, shape: view.source, qualifiedName: entry.table.sql,
                                        textOrder: false, filter: filter.isEmpty ? nil : filter).rowCount()
            }
            guard let target = try store.table(view.target) else {
                result.targetTableMissing = true
                result.sourceRows = try sourceRows()
                return result
            }
            result.targetColumnsMissing = try store.missingColumns(view.target)
            guard result.targetColumnsMissing.isEmpty else {
                result.sourceRows = try sourceRows()
                return result
            }
            let verifier = Verifier(source: source, view: view, filter: filter.isEmpty ? nil : filter, target: target,
                                    textOrder: store.isSQLite, catchUp: catchUp, chunkSize: chunkSize) { chunks, rows in
                observer?.progress(sink: sink, table: entry.table, chunks: chunks, rows: rows)
            }
            if view.source.isKeyed { try verifier.verifyKeyed(into: &result) } else { try verifier.verifyKeyless(into: &result) }
            return result
        } catch let error as VerifyFailure {
            throw error
        } catch {
            throw VerifyFailure("verifying \(entry.table) at sink \(sink): \(error)")
        }
    }

    private func verify(_ aggregate: VerifyPlan.AggregateTable, sink: String, store: TargetStore, source: PGConnection, catchUp: SinkCatchUp,
                        observer: (any VerifyObserver)?) throws -> TableVerification {
        let definition = aggregate.definition
        var result = TableVerification(sink: sink, table: definition.table, targetTable: definition.table.description, columns: [], keyColumns: [])
        do {
            guard let whole = try TableShape.read(aggregate.table, on: source) else {
                throw VerifyFailure("table \(aggregate.table) no longer exists at source \(aggregate.source.name)")
            }
            // The aggregate sees the rows as published and as the sink's where passes them.
            let published = try TableShape.publication(aggregate.reader.verifyPublication, table: aggregate.table, on: source)
            let excluded = aggregate.transforms.columns[aggregate.table]?.exclude ?? []
            let from = whole.restricted(to: (published.columns ?? whole.columns.map(\.name)).filter { !excluded.contains($0) })
            let filter = [published.filter, aggregate.transforms.predicates[aggregate.table]?.text].compactMap { $0 }
            let masked = Set(aggregate.transforms.columns[aggregate.table]?.mask.map(\.column) ?? [])
            var read = definition.groupBy + definition.measures.compactMap(\.measure.column) + (definition.predicate?.columnNames ?? [])
            if case let .column(time) = definition.window.time { read.append(time) }
            let view: AggregateView
            do throws(VerifyUsageError) {
                if let column = read.first(where: masked.contains) {
                    throw VerifyUsageError(description: "it reads \(column), which the sink masks: not compared")
                }
                view = try AggregateView(definition, from: from, relation: aggregate.table.sql, filters: filter)
            } catch {
                result.skipped = "aggregate table of \(definition.from): " + error.description
                return result
            }
            result.columns = view.shape.columns.map(\.name)
            result.transforms = ["aggregate of \(definition.from)"]
            guard let target = try store.table(view.shape, values: view.targetValues) else {
                result.targetTableMissing = true
                return result
            }
            result.targetColumnsMissing = try store.missingColumns(view.shape)
            guard result.targetColumnsMissing.isEmpty else { return result }
            let verifier = Verifier(source: source, view: SinkView(plain: view.shape), filter: nil, target: target, textOrder: false,
                                    catchUp: catchUp, chunkSize: chunkSize, sourceRelation: view.sourceRelation) { chunks, rows in
                observer?.progress(sink: sink, table: definition.table, chunks: chunks, rows: rows)
            }
            try verifier.verifyKeyless(into: &result)
            return result
        } catch let error as VerifyFailure {
            throw error
        } catch {
            throw VerifyFailure("verifying aggregate table \(definition.table) at sink \(sink): \(error)")
        }
    }
}

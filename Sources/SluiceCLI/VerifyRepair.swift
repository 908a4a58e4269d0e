import Foundation
import Logging
import SluiceKit
import SluiceRuntime
import SluiceVerify

/// `sluice verify --repair`: asks each source for a backfill of exactly the differing keys (a table
/// the target lacks, or a keyless one, is copied whole). The backfill goes through the topic between watermarks, so it
/// is ordered with the live stream and applied exactly once by every sink of the source; keys the
/// source no longer has are deleted at the sinks.
struct VerifyRepair {
    let config: SluiceConfig
    let plan: VerifyPlan
    let logger: Logger
    let output: VerifyOutput

    /// Returns how many keys were re-copied or deleted.
    func run(_ results: [TableVerification]) throws -> Int {
        var keys: [String: [String: [[String]]]] = [:]
        var whole: [String: Set<String>] = [:]
        var requested = 0
        for result in results where !result.isEqual {
            let sinkPlan = plan.sinks.first(where: { $0.sink.name == result.sink })
            // An aggregate table is rebuilt by backfilling its source table whole (which replaces its contribution).
            if let aggregate = sinkPlan?.aggregates.first(where: { $0.definition.table == result.table }) {
                whole[aggregate.source.name, default: []].insert(aggregate.table.description)
                continue
            }
            guard let sourceName = sinkPlan?.tables.first(where: { $0.table == result.table })?.source.name else { continue }
            let table = result.table.description
            if result.needsWholeCopy {
                whole[sourceName, default: []].insert(table)
                continue
            }
            // A keyless table has no key to copy by: it is backfilled whole (replaced in one transaction).
            if result.keyColumns.isEmpty || result.differenceCount > result.differences.count {
                whole[sourceName, default: []].insert(table)
                continue
            }
            var list = keys[sourceName, default: [:]][table, default: []]
            for difference in result.differences { if let key = difference.key, !list.contains(key) { list.append(key) } }
            keys[sourceName, default: [:]][table] = list
        }
        for sourceName in Set(keys.keys).union(whole.keys).sorted() {
            guard let source = config.sources.first(where: { $0.name == sourceName }) else { continue }
            var byTable = keys[sourceName] ?? [:]
            for table in whole[sourceName] ?? [] { byTable.removeValue(forKey: table) }
            let tables = Array(Set(byTable.keys).union(whole[sourceName] ?? [])).sorted()
            // Wait for the pipeline this process may have started to hold the data directory.
            let deadline = Date().addingTimeInterval(30)
            while DataDirectoryLock.isHeld(dataDirectory: config.dataDirectory) == nil && Date() < deadline { usleep(50_000) }
            let job: BackfillJob
            do {
                job = try BackfillJob(config: config, registry: SluiceMain.registry, source: source, tables: tables, logger: logger,
                                      keys: byTable)
            } catch let error as ConnectorError {
                throw RuntimeFailure(message: "--repair cannot backfill source \(sourceName): \(error)")
            }
            if let resumed = try job.request() {
                output.note("a backfill is under way (\(resumed)); --repair waits for it instead")
            }
            output.note("repair: source \(sourceName) re-copies " + tables.map { table in
                byTable[table].map { "\($0.count) keys of \(table)" } ?? "all of \(table)"
            }.joined(separator: ", "))
            guard try job.run(observer: RepairObserver(output: output)) == 0 else {
                throw RuntimeFailure(message: "--repair: the backfill of source \(sourceName) did not finish")
            }
            requested += byTable.values.reduce(0) { $0 + $1.count }
        }
        return requested
    }
}

/// Follows the repair's backfill quietly; only a failure is worth a line.
final class RepairObserver: BackfillObserver {
    let output: VerifyOutput
    init(output: VerifyOutput) { self.output = output }
    func waiting() {}
    func progress(_ progress: BackfillProgress) {}
    func finished(_ progress: BackfillProgress, sinks: [String]) {}
    func stopped() { output.note("repair: the pipeline stopped before the repair was applied") }
    func failed(_ progress: BackfillProgress, reason: String) { output.note("repair: the backfill failed: \(reason)") }
}

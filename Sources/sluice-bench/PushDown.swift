import Foundation
import SluiceWire

extension Bench {
    /// Capture through a publication whose row filter keeps 10% of the rows (`id % 10 = 0`) against the
    /// same WAL captured without a filter, in this run: both slots see the same load.
    func captureFiltered() throws {
        let url = try Workload.database("capture_filtered", on: source)
        let db = try PGConnection(url: url)
        // Publications are read as of each change's WAL position: the filtered one must exist before the load.
        try db.execute("CREATE PUBLICATION bench_pub10 FOR TABLE bench WHERE (id % 10 = 0), done")
        for slot in ["plain", "filtered"] {
            try db.execute("SELECT pg_create_logical_replication_slot('\(slot)', 'pgoutput')")
        }
        try Workload.load(url: url, total: events, perTransaction: 100)
        let end = try Workload.flushedEnd(url: url)
        let plain = try captureRun("capture_plain", url: url, slot: "plain", end: end)
        let filtered = try captureRun("capture_filtered", url: url, slot: "filtered", end: end,
                                      tables: [#"{name: public.bench, where: "id % 10 = 0"}"#, "public.done"],
                                      publication: "bench_pub10")
        results.append(Result(name: "capture, row filter keeping 10% (source rows)", events: events, seconds: filtered.0,
                               reference: plain.0, referenceName: "capture without a filter",
                               peakRSSMB: mb(filtered.1), cpuSeconds: filtered.1.cpuSeconds,
                               note: String(format: "%d rows reach the topic; without the filter %.2f s, %.1f s CPU",
                                            events / 10, plain.0, plain.1.cpuSeconds)))
    }
}

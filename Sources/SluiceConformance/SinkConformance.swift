import Foundation
import Logging
import SluiceKit

/// A conformance check for a ``Sink``: it writes a fixed workload to real topics (an embedded log
/// in a temporary folder, through ``TransactionWriter`` as a source writes it), drives the sink
/// exactly as the runtime does, simulates crashes, and compares what the target holds with what it
/// must hold.
///
/// It needs no test framework: ``run()`` returns the failures as values, each naming the check,
/// the step and what differed. From XCTest:
///
///     let check = SinkConformance(name: "mine", makeSink: {
///         try MySink(config: config)                 // a new instance on the same target each time
///     }, readRows: { table in
///         try myTarget.rows(of: table)               // [[column: text form or nil]]
///     })
///     XCTAssertEqual(try check.run(), [])
///
/// The target must start empty (no stored positions, none of the workload's tables). `makeSink` is
/// called several times: every instance must use the same target, as a restarted process would.
/// `readRows` returns every row of a table in the target (`[]` if the table does not exist), as
/// column name → PostgreSQL text form, nil for NULL: integers as `42`, booleans as `t`/`f`, numerics
/// as `10.50`, text as is. Normalize what the target stores differently (an SQLite 0/1 boolean, a JSON
/// `true`) in `readRows`; rows are compared as a multiset of strings. The tables are
/// ``SinkConformance/tables``: `public.conformance_accounts` and `public.conformance_ledger` in topic
/// `conformance_a`, `conformance.items` in topic `conformance_b`.
///
/// What is checked, in this order, on one target:
/// 1. **Positions on an empty target.** `open` returns no position for the workload's topics.
/// 2. **Replay safety (crash in the first batch).** A batch gets one whole transaction and half of
///    the next, then `rollbackBatch` and `close` (an error, or a crash before `commitBatch`); `open`
///    on the same instance returns no position, and no row is visible.
/// 3. **Batches of several transactions.** One batch carries three transactions of topic
///    `conformance_a`, another one of `conformance_b`; after `close`, `readPositions` and `open` on a
///    new instance return each topic's last commit offset and its LSN (and its commit time, unless
///    the sink stores none and returns 0), and the rows are exactly those transactions' effect.
/// 4. **Replay safety (crash in a later batch).** A batch gets one whole transaction
///    (`commitTransaction` returned) and 280 of the 305 changes of the next (1.1 MB: past the points
///    where a bulk-loading sink switches to COPY and a buffering one writes out), then `rollbackBatch`
///    and `close`; a new instance's `open` returns the previous positions, and the rows are unchanged.
///    Re-applying the same transactions, one per batch, leaves no duplicate and loses nothing.
/// 5. **Ordering and content.** The remaining transactions (an empty one included) are applied, one
///    batch from each topic in turn; after `close` and `open`, the positions are each topic's last
///    commit and every table holds exactly the expected rows; a last `probe` must not throw.
///
/// Batches always hold whole transactions (the runtime never splits one), so a sink never has to
/// cope with part of a transaction.
///
/// **Not required:** applying a batch again after its `commitBatch` returned. The runtime re-delivers
/// only what follows the positions `open` returns, and those are stored atomically with the data, so
/// an acknowledgement lost after the target committed (the connection drops before the reply) is
/// followed by an `open` that already reports the batch. Demanding idempotence would also be
/// impossible to meet for keyless tables: applying "insert one more such row" twice adds two rows.
public struct SinkConformance {
    public typealias Row = [String: String?]

    /// One check that did not hold.
    public struct Failure: Error, Equatable, CustomStringConvertible, Sendable {
        public enum Check: String, Sendable {
            /// The rows after applying everything differ from the expected rows.
            case content
            /// `open` or `readPositions` did not return the last committed positions.
            case positions
            /// A batch abandoned before `commitBatch` left a trace, or re-applying it duplicated rows.
            case replay
            /// A batch of several transactions was not applied as a whole.
            case batching
            /// A call to the sink threw; the check stopped there.
            case sinkError = "sink error"
        }

        public var check: Check
        /// Where in the sequence above it happened.
        public var step: String
        public var message: String

        public var description: String { "[\(check.rawValue)] \(step): \(message)" }
    }

    /// The workload's tables, for `readRows` (and for a target that must be prepared).
    public static var tables: [RelationSchema] { Workload.tables }
    /// The workload's topics.
    public static var topics: [String] { [Workload.topicA, Workload.topicB] }

    public let name: String
    public var logger: Logger
    let makeSink: () throws -> any Sink
    let readRows: (_ table: RelationSchema) throws -> [Row]

    /// - Parameters:
    ///   - name: the sink's name, as in a configuration file (passed in ``SinkContext``).
    ///   - logger: handed to the sink; silent by default.
    ///   - makeSink: a new sink instance on the check's target.
    ///   - readRows: every row of a table in the target, as text forms.
    public init(name: String, logger: Logger = Logger(label: "sluice-conformance", factory: { _ in SwiftLogNoOpLogHandler() }),
                makeSink: @escaping () throws -> any Sink, readRows: @escaping (_ table: RelationSchema) throws -> [Row]) {
        self.name = name
        self.logger = logger
        self.makeSink = makeSink
        self.readRows = readRows
    }

    /// Runs every check; returns what failed (empty when the sink conforms). Throws only for a problem
    /// of the check itself: a temporary folder it cannot write, or an error from `makeSink` or `readRows`.
    public func run() throws -> [Failure] {
        let directory = FileManager.default.temporaryDirectory
            .appendingPathComponent("sluice-conformance-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let silent = Logger(label: "sluice-conformance-log", factory: { _ in SwiftLogNoOpLogHandler() })
        let topics = try WorkloadTopics(directory: directory, transactions: Workload.transactions, logger: silent)
        let session = ConformanceSession(check: self, topics: topics)
        do {
            try session.run()
        } catch let error as SinkCallError {
            session.fail(.sinkError, "sink \(name): \(error)")
        }
        return session.failures
    }
}

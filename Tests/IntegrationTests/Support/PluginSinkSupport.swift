import Foundation
import SluiceWire
import XCTest

// Helpers for the file, exec and http sink tests: a numbered workload whose transactions record their
// xids, parsing of JSON-lines output, and child-process lookup.

// MARK: Workload

/// Numbered transactions on one connection (so commit order is the order they are recorded in) over
/// two tables, `public.orders` and `public.events`, each recording its xid (txid_current()).
///
/// Transaction `seq` always inserts `orders(seq)`; also inserts into `events` when seq % 3 == 0,
/// updates `orders(seq - 1)` when seq % 5 == 0, deletes `orders(seq - 2)` when seq % 7 == 0 and
/// truncates `events` when seq % 50 == 0. `expectedChanges(seq)` is the number of changes it carries.
final class PluginWorkload: @unchecked Sendable {
    struct Committed {
        var xid: Int
        var seq: Int
        var changes: Int
    }

    static let schema = """
        CREATE TABLE orders (id int PRIMARY KEY, seq int NOT NULL, note text);
        CREATE TABLE events (id bigserial PRIMARY KEY, seq int NOT NULL, payload text);
        """
    static let tables = ["public.orders", "public.events"]

    let url: String
    /// The first sequence number ever used on this database (updates and deletes reach back from it).
    let firstSeq: Int
    private let lock = NSLock()
    private var list: [Committed] = []
    private var finished = false
    private var failure: String?

    init(url: String, firstSeq: Int = 1) {
        self.url = url
        self.firstSeq = firstSeq
    }

    var committed: [Committed] { lock.lock(); defer { lock.unlock() }; return list }
    var isDone: Bool { lock.lock(); defer { lock.unlock() }; return finished }
    var error: String? { lock.lock(); defer { lock.unlock() }; return failure }

    func expectedChanges(_ seq: Int) -> Int {
        1 + (seq % 3 == 0 ? 1 : 0) + (seq % 5 == 0 && seq - 1 >= firstSeq ? 1 : 0)
            + (seq % 7 == 0 && seq - 2 >= firstSeq ? 1 : 0) + (seq % 50 == 0 ? 1 : 0)
    }

    /// Runs transactions `seqs` on the calling thread, pausing `pauseMicros` between them.
    func run(_ seqs: ClosedRange<Int>, pauseMicros: UInt32 = 0) {
        defer { lock.lock(); finished = true; lock.unlock() }
        do {
            let db = try PGConnection(url: url)
            for seq in seqs {
                try db.execute("BEGIN")
                guard let xid = Int(try db.execute("SELECT txid_current()").string(0, 0) ?? "") else {
                    throw TestFailure("txid_current() returned no number")
                }
                if seq % 50 == 0 { try db.execute("TRUNCATE events") }
                try db.execute("INSERT INTO orders VALUES (\(seq), \(seq), 'order \(seq)')")
                if seq % 3 == 0 { try db.execute("INSERT INTO events (seq, payload) VALUES (\(seq), 'event \(seq)')") }
                if seq % 5 == 0 && seq - 1 >= firstSeq {
                    try db.execute("UPDATE orders SET note = 'updated by \(seq)' WHERE id = \(seq - 1)")
                }
                if seq % 7 == 0 && seq - 2 >= firstSeq { try db.execute("DELETE FROM orders WHERE id = \(seq - 2)") }
                try db.execute("COMMIT")
                lock.lock()
                list.append(Committed(xid: xid, seq: seq, changes: expectedChanges(seq)))
                lock.unlock()
                if pauseMicros > 0 { usleep(pauseMicros) }
            }
        } catch {
            lock.lock(); failure = "\(error)"; lock.unlock()
        }
    }

    /// Runs `run(seqs)` on a new thread.
    func start(_ seqs: ClosedRange<Int>, pauseMicros: UInt32 = 0) -> SinkTestWorker {
        SinkTestWorker("plugin-workload") { [self] in run(seqs, pauseMicros: pauseMicros) }
    }
}

// MARK: Checking transactions

/// Checks that `transactions` (in the order a sink delivered them; the snapshot transaction, xid 0,
/// left out) are exactly the workload's committed ones: each once, in commit order, each with its
/// own changes. Returns the number of problems found (each also reported with XCTFail).
@discardableResult
func pluginAssertExactlyOnce(_ transactions: [TopicDump.Transaction], _ expected: [PluginWorkload.Committed],
                             _ context: @autoclosure () -> String = "",
                             file: StaticString = #filePath, line: UInt = #line) -> Int {
    let streamed = transactions.filter { $0.xid != 0 }
    var problems = 0
    func fail(_ message: String) {
        problems += 1
        if problems <= 5 { XCTFail(message + (problems == 1 ? context() : ""), file: file, line: line) }
    }
    var seen: [Int: Int] = [:]
    for transaction in streamed { seen[transaction.xid, default: 0] += 1 }
    let duplicated = seen.filter { $0.value > 1 }.keys.sorted()
    if !duplicated.isEmpty { fail("\(duplicated.count) transactions delivered more than once, e.g. xids \(duplicated.prefix(10))") }
    let delivered = Set(seen.keys)
    let missing = expected.map(\.xid).filter { !delivered.contains($0) }
    if !missing.isEmpty { fail("\(missing.count) of \(expected.count) transactions missing, e.g. xids \(missing.prefix(10))") }
    let wanted = Set(expected.map(\.xid))
    let extra = delivered.subtracting(wanted).sorted()
    if !extra.isEmpty { fail("\(extra.count) transactions the workload did not commit, e.g. xids \(extra.prefix(10))") }
    if problems == 0 && streamed.map(\.xid) != expected.map(\.xid) {
        let index = Array(zip(streamed, expected)).firstIndex { $0.0.xid != $0.1.xid } ?? 0
        fail("transactions out of commit order from position \(index): got xid \(streamed[index].xid), expected \(expected[index].xid)")
    }
    if problems == 0 {
        for (transaction, wanted) in zip(streamed, expected) {
            let inserted = transaction.changes.first { $0["op"] as? String == "insert" && $0["table"] as? String == "public.orders" }
            let after = inserted?["after"] as? [String: Any]
            if transaction.changes.count != wanted.changes || after?["seq"] as? Int != wanted.seq
                || after?["note"] as? String != "order \(wanted.seq)" {
                fail("transaction seq \(wanted.seq) (xid \(wanted.xid)) carries \(transaction.changes.count) changes "
                     + "(expected \(wanted.changes)): \(transaction.changes)")
            }
        }
    }
    return problems
}

/// Splits JSON-lines text into lines, requiring it to end with a newline after a commit line.
func pluginAssertEndsOnCommit(_ text: String, _ what: String, file: StaticString = #filePath, line: UInt = #line) {
    guard !text.isEmpty else { return }
    XCTAssertTrue(text.hasSuffix("\n"), "\(what) ends in the middle of a line: …\(text.suffix(200))", file: file, line: line)
    let last = text.split(separator: "\n").last.map(String.init) ?? ""
    let object = try? JSONSerialization.jsonObject(with: Data(last.utf8)) as? [String: Any]
    XCTAssertEqual(object?["kind"] as? String, "commit", "\(what) ends on a commit line, not: \(last.prefix(300))",
                   file: file, line: line)
}

// MARK: Files written by the file sink

/// The files of `topic` in `directory` as `(sequence, path)`, in sequence order, checking their names
/// are `<topic>.<8 digits>.jsonl`.
func pluginTopicFiles(_ directory: String, topic: String) -> [(sequence: Int, path: String)] {
    let names = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
    let prefix = topic + "."
    return names.compactMap { name -> (Int, String)? in
        guard name.hasPrefix(prefix), name.hasSuffix(".jsonl") else { return nil }
        let digits = name.dropFirst(prefix.count).dropLast(".jsonl".count)
        guard digits.count == 8, digits.allSatisfy(\.isNumber), let sequence = Int(digits) else { return nil }
        return (sequence, directory + "/" + name)
    }.sorted { $0.0 < $1.0 }
}

/// Every line of the topic's files, concatenated in sequence order.
func pluginTopicText(_ directory: String, topic: String) -> String {
    pluginTopicFiles(directory, topic: topic).map { (try? String(contentsOfFile: $0.path, encoding: .utf8)) ?? "" }.joined()
}

/// The xid of the last commit line in the text, if any.
func pluginLastCommitXid(_ text: String) -> Int? {
    for line in text.split(separator: "\n").reversed() {
        guard let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else { continue }
        if object["kind"] as? String == "commit" { return object["xid"] as? Int }
    }
    return nil
}

/// True once `text` holds a commit line for every one of `xids` (without checking anything else).
func pluginHoldsAll(_ text: String, xids: [Int]) -> Bool {
    guard !xids.isEmpty else { return true }
    var committed = Set<Int>()
    for line in text.split(separator: "\n") where line.contains("\"kind\":\"commit\"") {
        if let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any], let xid = object["xid"] as? Int {
            committed.insert(xid)
        }
    }
    return xids.allSatisfy(committed.contains)
}

// MARK: Processes

/// The real Python 3 interpreter (not a pyenv shim), so plugin processes are `python3 …` themselves.
let pluginPython: String = {
    let out = (try? run(["/usr/bin/env", "python3", "-c", "import sys; print(sys.executable)"])) ?? ""
    let path = out.trimmingCharacters(in: .whitespacesAndNewlines)
    return path.isEmpty ? "python3" : path
}()

/// A fixture script under Tests/IntegrationTests/Fixtures.
func pluginFixture(_ name: String) -> String { repositoryRoot + "/Tests/IntegrationTests/Fixtures/" + name }

/// Pids of the children of `parent` whose command line contains `needle` (and that are not the shell
/// the plugin is started through).
func pluginChildren(of parent: Int32, commandContaining needle: String) -> [Int32] {
    let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
    return entries.compactMap { entry -> Int32? in
        guard let pid = Int32(entry),
              let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")") else { return nil }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        guard fields.count > 2, Int32(fields[1]) == parent else { return nil }
        guard let raw = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline") else { return nil }
        let arguments = raw.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
        guard let program = arguments.first, !program.hasSuffix("/sh"), arguments.contains(where: { $0.contains(needle) }) else {
            return nil
        }
        return pid
    }
}

// MARK: Test base

/// One source cluster with the workload's tables and a scratch directory, both torn down after.
class PluginSinkTestCase: DaemonTestCase {
    var helpers: [SluiceProcess] = []

    override var fixtureName: String { "plugin" }

    override func setUpWithError() throws {
        try super.setUpWithError()
        try source.query(PluginWorkload.schema)
    }

    override func tearDown() {
        for helper in helpers where helper.isRunning { helper.kill() }
        helpers.removeAll()
        super.tearDown()
    }

    /// Writes the config: source `app` over the workload's tables, then `sinkLines` (already indented
    /// as items of `sinks:`).
    func writeConfig(_ sinkLines: [String]) throws {
        try writeSourceConfig(tables: PluginWorkload.tables, sinks: sinkLines)
    }

    /// Waits until `status --json` says each sink applied everything topic `app` holds (and shows its
    /// live state, not `starting`), after the topic
    /// itself holds every transaction committed so far (the slot confirmed the current WAL position).
    func waitForCaughtUp(_ sinks: [String], environment: [String: String] = [:], timeout: TimeInterval = 60,
                         file: StaticString = #filePath, line: UInt = #line) throws -> StatusView {
        let end = try XCTUnwrap(source.scalar("SELECT pg_current_wal_insert_lsn()::text"))
        try eventually(timeout: timeout, "the slot to confirm \(end)" + logTail, file: file, line: line) {
            let confirmed = try source.scalar("SELECT confirmed_flush_lsn::text FROM pg_replication_slots") ?? "0/0"
            return lsnValue(confirmed) >= lsnValue(end)
        }
        var last: StatusView?
        try eventually(timeout: timeout, "sinks \(sinks) to catch up: \(last?.text ?? "no status")" + logTail,
                       file: file, line: line) {
            let status = try sluiceStatus(configPath, environment: environment)
            last = status
            // A restarted daemon reports its connectors' states within a second.
            return sinks.allSatisfy { status.caughtUp($0, "app") && status.state(sink: $0) != "starting" }
        }
        return last!
    }

    /// Starts a helper process (a receiver), killed at teardown; its output goes to `output`.
    func startHelper(_ arguments: [String], output: String) throws -> SluiceProcess {
        let helper = try SluiceProcess(program: arguments[0], Array(arguments.dropFirst()), logPath: output)
        helpers.append(helper)
        return helper
    }
}

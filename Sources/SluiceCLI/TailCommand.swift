import ArgumentParser
import Foundation
import Logging
import SluiceKit
import SluiceRuntime

struct Tail: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print a topic's records, transaction markers included.",
        discussion: """
            Prints the last transactions (see --last) up to the current end and exits, like tail(1); \
            --from-beginning prints every retained record, or with -n N the first N transactions \
            (like head(1); not with --follow). --follow keeps printing new transactions \
            until interrupted (like kcat). Only committed transactions are shown, and always whole: \
            the initial snapshot and each backfill chunk are one transaction each, so -n 1 right \
            after a snapshot prints all of its rows (pipe through head to see fewer).
            """)

    @Argument(help: "The topic (topics are named after their source).")
    var topic: String

    @OptionGroup var options: ConfigOption

    @Flag(help: "Start at the first retained record.")
    var fromBeginning = false

    // Read as text, so `-n -3` reaches validate() (not "missing value") and the error names the fix.
    @Option(name: [.customShort("n"), .long], parsing: .unconditional,
            help: ArgumentHelp("Print this many transactions (not records): the last ones (default 10), or the first ones with --from-beginning.",
                               valueName: "count"))
    var last: String?

    @Flag(name: [.short, .long], help: "Keep printing new records as they are committed.")
    var follow = false

    @Flag(help: "One JSON object per line.")
    var json = false

    @Flag(help: "Also print the schema records that precede each table's first change in a transaction.")
    var schema = false

    /// The number of transactions `-n` asks for; nil when not given.
    var count: Int? { last.flatMap { Int($0) } }

    func validate() throws {
        if let last, (Int(last) ?? -1) < 0 {
            throw ValidationError("-n/--last '\(last)' is not a count of transactions: give zero or more, e.g. -n 3 for the last three")
        }
        if last != nil && fromBeginning && follow {
            throw ValidationError("-n/--last with --from-beginning prints the first transactions and exits, so it cannot --follow: drop -n, or --from-beginning")
        }
    }

    func run() throws {
        let config = try options.load()
        LogSetup.bootstrap(format: config.logFormat, level: config.logLevel ?? "warning")
        guard config.topics.contains(topic) else {
            throw UsageError(message: "\(options.config): there is no topic '\(topic)'; topics are named after sources: \(config.topics.joined(separator: ", "))")
        }
        let store = try TopicStores.make(config, logger: Logger(label: "sluice"))
        let logTopic = store.topic(topic)
        if follow { Signals.onStop { Foundation.exit(0) } }
        // Unreachable servers are a failure to read, not an empty topic: tail exits 1 naming them, and
        // --follow says so once and keeps trying.
        var outage = StoreOutage(topic: topic, location: store.location, retries: follow)
        if logTopic.durableCommit == nil {
            // Nothing readable: an empty topic, or one whose only segment is damaged.
            if !follow, let damage = logTopic.damage { throw RuntimeFailure(message: "topic \(topic): \(damage)") }
            // Not silent when there is no topic at all (a stream never created, a wrong stream_prefix).
            let exists = try outage.attempt { try store.exists(topic) }
            if !exists {
                // With --follow, the topic appears when its source first runs.
                let then = follow ? "waiting for its first transaction" : "nothing has written it"
                Output.standardError("topic \(topic) does not exist in \(store.location) yet: \(then)\n")
            }
            if !follow { return }
        }

        var start = logTopic.firstOffset
        if !fromBeginning, let end = logTopic.durableCommit?.offset {
            start = try outage.attempt { try TransactionStarts.lastBegin(topic: logTopic, count: count ?? 10, end: end) }
        }
        var printer = RecordPrinter(json: json, schema: schema)
        var reader = try outage.attempt { try logTopic.makeReader(from: start) }
        // --from-beginning -n N: the first N transactions, like head(1).
        var commitsLeft = fromBeginning ? count : nil
        while true {
            if let end = logTopic.durableCommit?.offset {
                do {
                    while commitsLeft != 0, let record = try reader.next(limit: end + 1) {
                        try printer.print(record)
                        if record.kind == RecordKind.commit.rawValue, let left = commitsLeft { commitsLeft = left - 1 }
                    }
                } catch let error as ConnectorError where follow && error.isTransient {
                    // The servers went away: a new reader resumes at the next record once they answer.
                    printer.flush()
                    outage.failed(error)
                    let position = reader.position
                    reader = try outage.attempt { try logTopic.makeReader(from: position) }
                    continue
                } catch {
                    // What was read before a damaged record is printed, then the damage is named.
                    printer.flush()
                    throw RuntimeFailure(message: "topic \(topic): \(error)")
                }
                printer.flush()
            }
            guard follow else {
                // What was asked for is printed and readable; the damage elsewhere is still said.
                if let damage = logTopic.damage { Output.standardError("warning: topic \(topic): \(damage)\n") }
                return
            }
            if !logTopic.waitForCommit(after: reader.position == 0 ? nil : reader.position - 1, timeoutMillis: 1000) {
                // A quiet second: ask the store, so servers gone away are said, not taken for a quiet topic.
                _ = try outage.attempt { try store.exists(topic) }
            }
        }
    }
}

/// A topic store that cannot be read (JetStream's servers unreachable). Without --follow the first
/// failure ends tail (exit 1, naming the store); with it, tail says so once on stderr, tries again
/// every second, and says when the store answers again.
struct StoreOutage {
    let topic: String
    let location: String
    let retries: Bool
    private(set) var down = false

    init(topic: String, location: String, retries: Bool) {
        self.topic = topic
        self.location = location
        self.retries = retries
    }

    /// Runs `body` until it succeeds; an unreachable store is retried only with --follow.
    mutating func attempt<T>(_ body: () throws -> T) throws -> T {
        while true {
            do {
                let result = try body()
                if down {
                    down = false
                    Output.standardError("topic \(topic): \(location) answers again\n")
                }
                return result
            } catch let error as ConnectorError where error.isTransient {
                guard retries else { throw RuntimeFailure(message: "topic \(topic): cannot read \(location): \(error)") }
                failed(error)
                Thread.sleep(forTimeInterval: 1)
            } catch {
                throw RuntimeFailure(message: "topic \(topic): \(error)")
            }
        }
    }

    /// Says once (until the store answers again) that it cannot be read and that tail keeps trying.
    mutating func failed(_ error: ConnectorError) {
        guard !down else { return }
        down = true
        Output.standardError("topic \(topic): cannot read \(location): \(error); tail --follow keeps trying and prints new transactions once it answers\n")
    }
}

extension ConnectorError {
    var isTransient: Bool { if case .transient = self { true } else { false } }
}

/// Finds where the last N transactions of a topic begin, reading only the newest segments' worth.
enum TransactionStarts {
    static func lastBegin(topic: any Topic, count: Int, end: UInt64) throws -> UInt64 {
        guard count > 0 else { return end + 1 }
        // Walk back from the end in growing windows until enough begin records are seen.
        var window: UInt64 = UInt64(count) * 64
        let first = topic.firstOffset
        while true {
            let from = end >= window ? max(first, end - window) : first
            let reader = try topic.makeReader(from: from)
            var begins: [UInt64] = []
            while let record = try reader.next(limit: end + 1) {
                if record.kind == RecordKind.begin.rawValue { begins.append(record.offset) }
            }
            if begins.count >= count { return begins[begins.count - count] }
            if from == first { return begins.first ?? first }
            window *= 8
        }
    }
}

/// Prints records as JSON lines or readable text, tracking the schema records it passes.
struct RecordPrinter {
    let json: Bool
    let schema: Bool
    private var relations: [UInt32: RelationSchema] = [:]
    private var buffer = ""
    private let renderer = RecordJSON()

    init(json: Bool, schema: Bool) {
        self.json = json
        self.schema = schema
    }

    /// The table as `tables:` and `--table` write it (a part quoted when it needs it), so `"a.b".c`
    /// and `a."b.c"` read apart.
    static func name(_ relation: RelationSchema) -> String {
        TableName(schema: relation.schema, table: relation.table).description
    }

    mutating func print(_ raw: RawRecord) throws {
        let line: String?
        switch try raw.decode() {
        case let .begin(begin):
            line = json ? renderer.begin(begin, offset: raw.offset)
                : "\(raw.offset)\tBEGIN\txid=\(begin.xid) lsn=\(begin.commitLSN) time=\(formatMicros(begin.commitTime))"
        case let .relation(relation):
            relations[relation.id] = relation
            line = !schema ? nil : json ? renderer.relation(relation, offset: raw.offset)
                : "\(raw.offset)\tSCHEMA\t\(Self.name(relation)) (\(relation.columns.map { "\($0.name) \($0.typeName)" }.joined(separator: ", ")))"
        case let .change(change):
            guard let relation = relations[change.relationID] else {
                line = json ? "{\"offset\":\(raw.offset),\"kind\":\"change\",\"op\":\"\(change.operation.name)\",\"table\":null}"
                    : "\(raw.offset)\t\(change.operation.name.uppercased())\t(unknown table \(change.relationID))"
                break
            }
            line = json ? renderer.change(change, relation: relation, offset: raw.offset)
                : "\(raw.offset)\t\(change.operation.name.uppercased())\t\(Self.name(relation))\t\(renderer.text(change, relation: relation))"
        case let .commit(commit):
            line = json ? renderer.commit(commit, offset: raw.offset)
                : "\(raw.offset)\tCOMMIT\txid=\(commit.xid) lsn=\(commit.commitLSN) events=\(commit.eventCount)"
        }
        if let line {
            buffer += line
            buffer += "\n"
            if buffer.utf8.count >= 1 << 16 { flush() }
        }
    }

    mutating func flush() {
        guard !buffer.isEmpty else { return }
        Output.rawStandardOutput(buffer)
        buffer.removeAll(keepingCapacity: true)
    }
}

import CSluiceSupport
import Foundation

/// Named fault-injection points: `SLUICE_FAILPOINTS=name[@N][:action],…` in the environment of a
/// `sluice` process crashes it (or stalls it) at that point in the code, so a test can prove what a
/// crash *there* leaves behind — the deterministic complement of random SIGKILL loops.
///
/// ```
/// SLUICE_FAILPOINTS=log.before_fsync                  # SIGKILL itself at the first hit
/// SLUICE_FAILPOINTS=sink.postgres.after_commit@3      # …at the third hit
/// SLUICE_FAILPOINTS=source.before_confirm:exit(42),sink.sqlite.before_commit:sleep(500)
/// ```
///
/// Actions: `abort` (the default) sends the process SIGKILL — no cleanup runs, nothing is flushed,
/// indistinguishable from `kill -9`; `exit(CODE)` leaves at once with `_exit(CODE)` (0–255, no
/// cleanup either); `sleep(MILLIS)` pauses the hitting thread, then goes on. `@N` (N ≥ 1) acts on
/// the N-th hit of that point only; without it, on every hit. Each firing first writes one line to
/// stderr: `sluice: failpoint NAME fired at hit N: ACTION`.
///
/// Compiled into every build. Whether the variable is set is decided once, when the binary loads
/// (`sluice_failpoints_armed`, a C global set by a load-time constructor); a hit then costs one load and a predicted branch. The
/// variable is parsed once, at the first hit or at `validateEnvironment()` (which `sluice` calls
/// first thing); a bad value is never ignored: the process exits 2 naming SLUICE_FAILPOINTS.
/// Every point is listed in ``catalog`` and documented in docs/failpoints.md; other names are errors.
public enum Failpoint {
    /// The environment variable read.
    public static let variable = "SLUICE_FAILPOINTS"

    /// Every point compiled in, with where it sits. Keep docs/failpoints.md in step (a test compares).
    public static let catalog: [String: String] = [
        "log.before_fsync": "embedded log flusher: commit markers are written to the segment, before their fdatasync",
        "log.after_fsync": "embedded log flusher: after the fdatasync, before the durable position is published",
        "source.before_confirm": "PostgreSQL source: before a standby status update that confirms an LSN is sent",
        "source.mid_stream_commit": "PostgreSQL source: a streamed transaction's staged changes are partly appended to the topic, before its commit marker",
        "source.catch_up.before_advance": "PostgreSQL source, catching up: a batch is durable in the topic, before the slot is advanced past it",
        "backfill.after_low_watermark": "backfill: the chunk's low watermark is emitted, before its SELECT",
        "backfill.before_high_watermark": "backfill: the chunk's SELECT is done, before its high watermark",
        "backfill.before_save_progress": "backfill: a chunk is durable in the topic, before backfill.json records it",
        "sink.postgres.mid_copy": "PostgreSQL sink: a COPY run of inserts has sent rows and is still open",
        "sink.postgres.mid_change_copy": "PostgreSQL sink: a run of updates and deletes is partly copied into its staging table",
        "sink.postgres.before_commit": "PostgreSQL sink: a batch and its offset are sent, before COMMIT",
        "sink.postgres.after_commit": "PostgreSQL sink: the target acknowledged COMMIT, before the runtime knows",
        "sink.sqlite.before_commit": "SQLite sink: a batch and its offset are written, before COMMIT",
        "sink.sqlite.after_commit": "SQLite sink: after COMMIT, before the runtime knows",
        "sink.file.rotate": "file sink: the next file is created, before the sink switches to it",
        "sink.nats.between_events": "NATS sink: a change published as two messages has its first sent, before its second",
    ]

    /// What a point does when it fires.
    public enum Action: Equatable, Sendable, CustomStringConvertible {
        /// SIGKILL to itself.
        case abort
        /// `_exit(code)`.
        case exit(Int32)
        /// Pauses the thread that hit the point, then goes on.
        case sleep(milliseconds: UInt32)

        public var description: String {
            switch self {
            case .abort: "abort"
            case let .exit(code): "exit(\(code))"
            case let .sleep(milliseconds): "sleep(\(milliseconds))"
            }
        }
    }

    /// One `name[@N][:action]` of the variable.
    public struct Rule: Equatable, Sendable {
        public var name: String
        /// Acts only on this hit (1-based); nil: on every hit.
        public var onHit: Int?
        public var action: Action

        public init(name: String, onHit: Int? = nil, action: Action = .abort) {
            self.name = name
            self.onHit = onHit
            self.action = action
        }
    }

    /// A value of SLUICE_FAILPOINTS that cannot be used; the message names the variable.
    public struct ParseError: Error, Equatable, CustomStringConvertible {
        public let message: String
        public var description: String { message }
    }

    // MARK: Hitting

    /// Marks the point `name` (one of ``catalog``): fires its rule when SLUICE_FAILPOINTS names it.
    @inlinable @inline(__always)
    public static func hit(_ name: StaticString) {
        if _slowPath(sluice_failpoints_are_armed() != 0) { reached(name) }
    }

    @usableFromInline @inline(never)
    static func reached(_ name: StaticString) {
        let name = name.description
        guard let rule = table.rules[name] else { return }
        let count = table.count(name)
        if let onHit = rule.onHit, onHit != count { return }
        let line = "sluice: failpoint \(name) fired at hit \(count): \(rule.action)\n"
        _ = line.withCString { write(2, $0, strlen($0)) }
        switch rule.action {
        case .abort:
            kill(getpid(), SIGKILL)
            _exit(128 + SIGKILL)
        case let .exit(code):
            _exit(code)
        case let .sleep(milliseconds):
            var time = timespec(tv_sec: Int(milliseconds / 1000), tv_nsec: Int(milliseconds % 1000) * 1_000_000)
            var left = timespec()
            while nanosleep(&time, &left) != 0 && errno == EINTR { time = left }
        }
    }

    /// Parses SLUICE_FAILPOINTS now if it is set; a bad value prints why to stderr and exits 2.
    public static func validateEnvironment() {
        if sluice_failpoints_are_armed() != 0 { _ = table }
    }

    /// The parsed variable, with hit counts. Built once; exits 2 on a bad value.
    private static let table: Table = {
        let text = ProcessInfo.processInfo.environment[variable] ?? ""
        do {
            return Table(rules: try parse(text))
        } catch {
            FileHandle.standardError.write(Data("error: \(error)\n".utf8))
            exit(2)
        }
    }()

    private final class Table: @unchecked Sendable {
        let rules: [String: Rule]
        private let lock = NSLock()
        private var hits: [String: Int] = [:]

        init(rules: [Rule]) {
            self.rules = Dictionary(rules.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
        }

        /// Counts a hit of `name`; returns its number (1 for the first).
        func count(_ name: String) -> Int {
            lock.lock()
            defer { lock.unlock() }
            hits[name, default: 0] += 1
            return hits[name]!
        }
    }

    // MARK: Parsing

    /// Parses `name[@N][:action],…`; blank means no rules. Names must be in `known`; a name may
    /// appear once.
    public static func parse(_ text: String, known: Set<String> = Set(catalog.keys)) throws(ParseError) -> [Rule] {
        func fail(_ problem: String) -> ParseError {
            ParseError(message: "\(variable)=\(text): \(problem); see docs/failpoints.md")
        }
        guard !text.allSatisfy(\.isWhitespace) else { return [] }
        var rules: [Rule] = []
        for item in text.split(separator: ",", omittingEmptySubsequences: false) {
            let spec = item.trimmingCharacters(in: .whitespaces)
            guard !spec.isEmpty else { throw fail("an empty entry (two commas, or one at an end)") }
            var head = Substring(spec)
            var action = Action.abort
            if let colon = spec.firstIndex(of: ":") {
                head = spec[..<colon]
                action = try parseAction(String(spec[spec.index(after: colon)...]), fail: fail)
            }
            var onHit: Int?
            if let at = head.firstIndex(of: "@") {
                let count = head[head.index(after: at)...]
                guard count.allSatisfy({ $0.isASCII && $0.isNumber }), let value = Int(count), value >= 1 else {
                    throw fail("'@\(count)' in '\(spec)' is not a hit number (1 or more)")
                }
                onHit = value
                head = head[..<at]
            }
            let name = String(head)
            guard known.contains(name) else {
                throw fail("unknown failpoint '\(name)' (known: \(known.sorted().joined(separator: ", ")))")
            }
            guard !rules.contains(where: { $0.name == name }) else { throw fail("failpoint '\(name)' is named twice") }
            rules.append(Rule(name: name, onHit: onHit, action: action))
        }
        return rules
    }

    private static func parseAction(_ text: String, fail: (String) -> ParseError) throws(ParseError) -> Action {
        if text == "abort" { return .abort }
        func argument(_ function: String) -> Int? {
            guard text.hasPrefix(function + "("), text.hasSuffix(")") else { return nil }
            let inner = text.dropFirst(function.count + 1).dropLast()
            guard !inner.isEmpty, inner.allSatisfy({ $0.isASCII && $0.isNumber }) else { return -1 }
            return Int(inner) ?? -1
        }
        if let code = argument("exit") {
            guard (0...255).contains(code) else { throw fail("exit code in '\(text)' must be 0 to 255") }
            return .exit(Int32(code))
        }
        if let milliseconds = argument("sleep") {
            guard (0...3_600_000).contains(milliseconds) else {
                throw fail("milliseconds in '\(text)' must be 0 to 3600000")
            }
            return .sleep(milliseconds: UInt32(milliseconds))
        }
        throw fail("unknown action '\(text)' (abort, exit(CODE) or sleep(MILLIS))")
    }
}

import Foundation
import Logging
import SluiceKit

/// The live state of every connector, shared by the runners, `/health` and the status file.
public final class ConnectorHealth: @unchecked Sendable {
    public struct Entry: Sendable {
        public var kind: String
        public var name: String
        public var state: ConnectorState
        public var since: Date
    }

    private let lock = NSLock()
    private var entries: [String: Entry] = [:]
    private var order: [String] = []
    private var observer: (@Sendable () -> Void)?
    private var changeLog = HistoryRing<StateChange>(capacity: 50)
    private var lastErrors: [String: (reason: String, at: Date)] = [:]

    /// Called after every state change, so the status file never shows a state older than the
    /// positions beside it.
    func observe(_ observer: @escaping @Sendable () -> Void) {
        lock.lock()
        self.observer = observer
        lock.unlock()
    }

    func key(_ kind: String, _ name: String) -> String { "\(kind)/\(name)" }

    /// Records a state; logs only when its kind changes (one line per state change, never per event
    /// or per retry), while the status file always shows the latest reason.
    func set(_ kind: String, _ name: String, _ state: ConnectorState, logger: Logger) {
        // Reasons are often a driver's error text; hidden here, they are hidden in /health and status too.
        // Every reader (log, /health, status) names the connector itself: the reason must not again.
        let state: ConnectorState = switch state {
        case let .retrying(reason): .retrying(withoutSubject(Secrets.redact(reason), kind: kind, name: name))
        case let .failed(reason): .failed(withoutSubject(Secrets.redact(reason), kind: kind, name: name))
        default: state
        }
        lock.lock()
        let key = key(kind, name)
        let previous = entries[key]?.state
        let changed = previous.map { !$0.sameKind(as: state) } ?? true
        let observer = previous != state ? self.observer : nil
        if previous != state {
            if entries[key] == nil { order.append(key) }
            entries[key] = Entry(kind: kind, name: name, state: state, since: changed ? Date() : entries[key]!.since)
            if let reason = state.reason { lastErrors[key] = (reason, Date()) }
        }
        if changed {
            changeLog.append(StateChange(at: Date(), kind: kind, name: name, from: previous?.label, to: state.label,
                                         reason: state.reason))
        }
        lock.unlock()
        observer?()
        guard changed else { return }
        switch state {
        case let .retrying(reason):
            logger.warning("\(kind) \(name) is retrying", metadata: ["reason": "\(reason)"])
        case .running where previous.map({ switch $0 { case .retrying, .failed: true; default: false } }) ?? false:
            logger.notice("\(kind) \(name) recovered")
        case .running, .starting:
            logger.debug("\(kind) \(name) is \(state)")
        case let .failed(reason):
            logger.error("\(kind) \(name) failed and stopped; the rest of the pipeline goes on", metadata: ["reason": "\(reason)"])
        case .stopped:
            logger.info("\(kind) \(name) stopped")
        }
    }

    public var all: [Entry] {
        lock.lock()
        defer { lock.unlock() }
        return order.compactMap { entries[$0] }
    }

    /// The last 50 state changes (of kind: a new retry reason is not a change), oldest first.
    public var changes: [StateChange] {
        lock.lock()
        defer { lock.unlock() }
        return changeLog.elements
    }

    /// Puts the state changes of a previous run before this run's, keeping the last 50.
    func restore(changes earlier: [StateChange]) {
        lock.lock()
        defer { lock.unlock() }
        var log = HistoryRing<StateChange>(capacity: changeLog.capacity)
        for change in (earlier + changeLog.elements).sorted(by: { $0.at < $1.at }) { log.append(change) }
        changeLog = log
    }

    /// The connector's last error (a retry or failure reason) and when it was reported; kept after it recovers.
    public func lastError(_ kind: String, _ name: String) -> (reason: String, at: Date)? {
        lock.lock()
        defer { lock.unlock() }
        return lastErrors[key(kind, name)]
    }

    public func state(_ kind: String, _ name: String) -> ConnectorState? {
        lock.lock()
        defer { lock.unlock() }
        return entries[key(kind, name)]?.state
    }
}

extension ConnectorState {
    /// starting, running, retrying, failed or stopped.
    var label: String {
        switch self {
        case .starting: return "starting"
        case .running: return "running"
        case .retrying: return "retrying"
        case .failed: return "failed"
        case .stopped: return "stopped"
        }
    }

    var reason: String? {
        switch self {
        case let .retrying(reason), let .failed(reason): return reason
        default: return nil
        }
    }

    func sameKind(as other: ConnectorState) -> Bool {
        switch (self, other) {
        case (.starting, .starting), (.running, .running), (.retrying, .retrying), (.failed, .failed), (.stopped, .stopped):
            return true
        default: return false
        }
    }
}

/// `reason` without the leading "sink replica: " or "sink 'replica': " a connector or a runner put in
/// front of it (any number of times), so each message names its connector exactly once.
func withoutSubject(_ reason: String, kind: String, name: String) -> String {
    var rest = Substring(reason)
    let prefixes = ["\(kind) \(name): ", "\(kind) '\(name)': "]
    while let prefix = prefixes.first(where: { rest.hasPrefix($0) }) {
        rest = rest.dropFirst(prefix.count)
    }
    return String(rest)
}

/// `reason` prefixed with its connector exactly once.
func withSubject(_ reason: String, kind: String, name: String) -> String {
    "\(kind) \(name): " + withoutSubject(reason, kind: kind, name: name)
}

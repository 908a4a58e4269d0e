import Foundation
import SluiceKit

/// The one retry and health policy for every runner, sources and sinks alike: fed the events of a
/// connector's life (with the time), it returns what the runner does next. Pure — no threads, no
/// sockets, no clock of its own — so its ladder is unit-tested.
///
/// - A transient failure is retried after a capped exponential backoff (0.2 s doubling to 10 s, with
///   jitter). The ladder starts again only after the connector was healthy for `stableMillis`: a
///   connector that connects and then fails at once keeps backing off instead of spinning.
/// - A misconfiguration stops the whole process with exit 2, whoever reports it — except a sink's
///   target that worked before and now refuses it (a rotated password): that sink shows as failed and
///   tries again every `refusedRetryMillis`.
/// - A fatal failure stops a source's whole process (exit 1: its topic cannot advance); a sink fails
///   alone, and the rest of the pipeline goes on.
/// - A topic a sink cannot read on (a damaged segment, transactions its source recorded as lost) fails
///   that sink too, but it reads again every `damagedRetryMillis` from the position stored in its target,
///   as a restart would: once the operator repaired the topic (a segment restored from a copy, the
///   stream restored) it goes on without a restart, and while the damage stays it stays failed.
/// - While draining (the process is stopping), a sink that cannot reach its target gives up once
///   `drainMillis` have passed since the drain began, and never sleeps past that deadline.
struct Supervisor {
    enum Role: String {
        case source, sink
    }

    enum Failure: Equatable {
        case transient(String)
        case misconfigured(String)
        case fatal(String)
        /// The topic cannot be read past a point (see ``TopicUnreadable``).
        case damaged(String)

        var reason: String {
            switch self {
            case let .transient(reason), let .misconfigured(reason), let .fatal(reason), let .damaged(reason): return reason
            }
        }

        init(_ error: ConnectorError) {
            switch error {
            case let .transient(reason): self = .transient(reason)
            case let .misconfigured(reason): self = .misconfigured(reason)
            case let .fatal(reason): self = .fatal(reason)
            }
        }
    }

    enum Action: Equatable {
        /// Record the state, wait `millis` (or until stopped), then try again.
        case retry(after: Int, report: ConnectorState)
        /// Record the state and end the runner; with an exit code the whole process stops with it.
        case stop(report: ConnectorState, exitCode: Int32?)
    }

    let role: Role
    var stableMillis = 30_000
    var drainMillis = 10_000
    var backoff = Backoff()
    private var healthySince: Date?
    private var drainStarted: Date?
    private var everHealthy = false
    /// How often a sink whose target refuses it (after it once worked: a rotated password) tries again.
    var refusedRetryMillis = 30_000
    /// How often a sink failed on a damaged topic reads it again (a repair is then picked up).
    var damagedRetryMillis = 10_000

    init(role: Role, random: @escaping () -> Double = { Double.random(in: 0...1) }) {
        self.role = role
        backoff.random = random
    }

    /// The connector works (a source streams, a sink applied a batch or answered a probe); returns the
    /// state to report.
    mutating func healthy(at now: Date) -> ConnectorState {
        if healthySince == nil { healthySince = now }
        everHealthy = true
        return .running
    }

    /// The process began stopping.
    mutating func draining(at now: Date) {
        if drainStarted == nil { drainStarted = now }
    }

    /// An attempt failed.
    mutating func failed(_ failure: Failure, at now: Date) -> Action {
        defer { healthySince = nil }
        switch failure {
        case let .misconfigured(reason):
            // A target that worked and now refuses (credentials rotated) is not a bad file: the sink
            // shows as failed and tries again slowly, so a fixed password recovers without a restart.
            if role == .sink && everHealthy && drainStarted == nil {
                return .retry(after: refusedRetryMillis, report: .failed(reason))
            }
            return .stop(report: .stopped, exitCode: 2)
        case let .fatal(reason):
            return role == .source ? .stop(report: .stopped, exitCode: 1) : .stop(report: .failed(reason), exitCode: nil)
        case let .damaged(reason):
            guard role == .sink else { return .stop(report: .stopped, exitCode: 1) }
            // Stopping: a repair can wait for the next start.
            if drainStarted != nil { return .stop(report: .failed(reason), exitCode: nil) }
            return .retry(after: damagedRetryMillis, report: .failed(reason))
        case let .transient(reason):
            if let since = healthySince, now.timeIntervalSince(since) * 1000 >= Double(stableMillis) { backoff.reset() }
            var wait = backoff.next()
            if let drainStarted {
                let left = Double(drainMillis) - now.timeIntervalSince(drainStarted) * 1000
                if left <= 0 { return .stop(report: .stopped, exitCode: nil) }
                wait = min(wait, Int(left))
            }
            return .retry(after: wait, report: .retrying(reason))
        }
    }
}


/// A supervisor shared between a runner's loop and the callbacks its connector calls on the same
/// thread (a source reports `running` through its context).
final class SupervisorCell: @unchecked Sendable {
    private let lock = NSLock()
    private var machine: Supervisor

    init(_ machine: Supervisor) { self.machine = machine }

    func with<T>(_ body: (inout Supervisor) -> T) -> T {
        lock.lock()
        defer { lock.unlock() }
        return body(&machine)
    }
}

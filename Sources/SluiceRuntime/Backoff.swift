import Foundation

/// Capped exponential backoff with jitter, reset after a healthy stretch.
struct Backoff {
    var initialMillis = 200
    var capMillis = 10_000
    private(set) var currentMillis = 0
    /// Uniform in 0...1: the jitter (tests pass a fixed one).
    var random: () -> Double = { Double.random(in: 0...1) }

    /// The next pause: half the current step plus up to half again, so retries of many connectors spread out.
    mutating func next() -> Int {
        currentMillis = currentMillis == 0 ? initialMillis : min(currentMillis * 2, capMillis)
        return currentMillis / 2 + Int(random() * Double(currentMillis / 2))
    }

    mutating func reset() { currentMillis = 0 }
}

/// A stop request that sleeping threads can wait on.
final class StopSignal: @unchecked Sendable {
    private let condition = NSCondition()
    private var stopped = false

    var isStopped: Bool {
        condition.lock()
        defer { condition.unlock() }
        return stopped
    }

    func stop() {
        condition.lock()
        stopped = true
        condition.broadcast()
        condition.unlock()
    }

    /// Whether `stop` was called since the last `take`, resetting it: a one-shot request.
    func take() -> Bool {
        condition.lock()
        defer { condition.unlock() }
        let was = stopped
        stopped = false
        return was
    }

    /// Sleeps up to `millis`; returns early (true) once stopped.
    @discardableResult
    func sleep(millis: Int) -> Bool {
        let deadline = Date(timeIntervalSinceNow: Double(millis) / 1000)
        condition.lock()
        defer { condition.unlock() }
        while !stopped && condition.wait(until: deadline) {}
        return stopped
    }
}

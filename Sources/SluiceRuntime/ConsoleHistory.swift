import Foundation

/// The newest `capacity` elements appended, oldest first: the console's histories, bounded whatever
/// the daemon's uptime.
public struct HistoryRing<Element> {
    public let capacity: Int
    private var storage: [Element] = []
    /// Where the next element goes once the storage is full.
    private var next = 0

    public init(capacity: Int) {
        precondition(capacity > 0, "a history keeps at least one element")
        self.capacity = capacity
        storage.reserveCapacity(capacity)
    }

    public mutating func append(_ element: Element) {
        if storage.count < capacity {
            storage.append(element)
        } else {
            storage[next] = element
            next = (next + 1) % capacity
        }
    }

    public var count: Int { storage.count }
    public var last: Element? { storage.isEmpty ? nil : storage[(next + storage.count - 1) % storage.count] }

    /// Oldest first.
    public var elements: [Element] { Array(storage[next...] + storage[..<next]) }
}

/// Events per second from a counter that only grows (a topic's event count, a sink's applied
/// events), averaged over the samples of the last `window` seconds.
public struct RateMeter {
    public let window: Double
    private var samples: [(at: Double, count: UInt64)] = []

    public init(window: Double = 5) { self.window = window }

    /// Records the counter's value at `at` (seconds); a counter that went back (a daemon that reopened
    /// a store, a retention that was applied) starts the meter over rather than show a negative rate.
    public mutating func record(_ count: UInt64, at: Double) {
        if let last = samples.last, count < last.count || at < last.at { samples.removeAll() }
        samples.append((at, count))
        // Keep one sample at or before the window's start, so a full window is always measured.
        while samples.count > 2, samples[1].at <= at - window { samples.removeFirst() }
    }

    /// Nil until two samples span some time.
    public var perSecond: Double? {
        guard let first = samples.first, let last = samples.last, last.at > first.at else { return nil }
        return Double(last.count - first.count) / (last.at - first.at)
    }
}

/// One state change of a source or sink, as the console lists it.
public struct StateChange: Codable, Sendable {
    public var at: Date
    public var kind: String
    public var name: String
    /// Nil for the connector's first state.
    public var from: String?
    public var to: String
    public var reason: String?
}

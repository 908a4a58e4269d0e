import Foundation

/// When a slot's retained WAL would reach its limit — `max_slot_wal_keep_size` (past it the server
/// invalidates the slot) or, for a server on this machine, the free space of its disk — from how fast
/// the retained WAL grows.
///
/// The growth is measured between samples of the retained bytes: the daemon records one each time it
/// reports the slot (every 10 s, kept for an hour in the source's state directory, see
/// ``WALSamples``), and `sluice status` / `check` add the one they read now. The rate is taken from the
/// oldest sample of the last hour (or, when the daemon has not run for longer, its newest) to now, so a
/// slot that advances in steps shows its net growth, and a slot left behind while the daemon is
/// down shows the WAL written since.
struct WALForecast: Equatable {
    /// Retained bytes per second; nil when there is no earlier sample to measure from.
    var growth: Double?
    /// Seconds until the limit is reached; nil when the retained WAL does not grow or there is no limit.
    var secondsToLimit: Double?
    /// What is reached: "max_slot_wal_keep_size" or "the disk".
    var limit: String?

    static let window: Double = 3600
    /// A warning when the limit is nearer than this.
    static let warnWithin: Double = 86_400
    /// Samples closer together than this measure noise, not growth.
    static let shortestSpan: Double = 10

    /// `samples` (unix seconds, retained bytes) are earlier readings, `now`/`retained` the current
    /// one; `headroom` the bytes left before each limit the server has.
    init(samples: [WALSamples.Sample], now: Double, retained: UInt64, headroom: [(limit: String, bytes: UInt64)]) {
        let earlier = samples.filter { $0.time <= now - Self.shortestSpan }
        let recent = earlier.filter { $0.time >= now - Self.window }
        guard let base = recent.min(by: { $0.time < $1.time }) ?? earlier.max(by: { $0.time < $1.time }) else { return }
        let rate = (Double(retained) - Double(base.retained)) / (now - base.time)
        growth = rate
        guard rate > 0, let nearest = headroom.min(by: { $0.bytes < $1.bytes }) else { return }
        secondsToLimit = Double(nearest.bytes) / rate
        limit = nearest.limit
    }

    var isNear: Bool { secondsToLimit.map { $0 < Self.warnWithin } ?? false }

    /// "+3.4 MB/s, max_slot_wal_keep_size in 5.2 h", "not growing", or nil when unmeasured.
    var summary: String? {
        guard let growth else { return nil }
        guard growth > 0 else { return "not growing" }
        let rate = "+" + Self.bytes(growth) + "/s"
        guard let secondsToLimit, let limit else { return rate + ", no limit set" }
        return rate + ", \(limit) in " + Self.duration(secondsToLimit)
    }

    static func duration(_ seconds: Double) -> String {
        if seconds < 120 { return String(format: "%.0f s", seconds) }
        if seconds < 7200 { return String(format: "%.0f min", seconds / 60) }
        if seconds < 172_800 { return String(format: "%.1f h", seconds / 3600) }
        return String(format: "%.0f days", seconds / 86_400)
    }

    static func bytes(_ value: Double) -> String {
        let units = ["B", "KB", "MB", "GB", "TB"]
        var value = value
        var unit = 0
        while value >= 1024 && unit < units.count - 1 {
            value /= 1024
            unit += 1
        }
        return unit == 0 ? String(format: "%.0f B", value) : String(format: "%.1f %@", value, units[unit])
    }
}

/// The daemon's readings of a slot's retained WAL, `<data_dir>/sources/<name>/wal-samples.json`:
/// one each time it reports the slot, the last hour's kept (at most ``limit``).
enum WALSamples {
    struct Sample: Codable, Equatable {
        var time: Double
        var retained: UInt64
    }

    static let limit = 400

    static func path(_ stateDirectory: String) -> String { stateDirectory + "/wal-samples.json" }

    static func read(_ stateDirectory: String) -> [Sample] {
        guard let data = FileManager.default.contents(atPath: path(stateDirectory)) else { return [] }
        return (try? JSONDecoder().decode([Sample].self, from: data)) ?? []
    }

    /// Appends a reading and drops those older than the window (written whole, then renamed).
    static func record(_ sample: Sample, _ stateDirectory: String) {
        var samples = read(stateDirectory).filter { $0.time >= sample.time - WALForecast.window && $0.time < sample.time }
        samples.append(sample)
        samples = Array(samples.suffix(limit))
        guard let data = try? JSONEncoder().encode(samples) else { return }
        let temp = path(stateDirectory) + ".tmp"
        guard FileManager.default.createFile(atPath: temp, contents: data) else { return }
        rename(temp, path(stateDirectory))
    }
}

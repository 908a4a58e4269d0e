/// The windows of an aggregate: tumbling (`every` = `size`) or hopping (windows of `size`, one
/// starting every `every`), aligned to the Unix epoch in UTC and half-open `[start, end)`.
///
/// Times are microseconds since 1970-01-01 00:00:00 UTC; negative times (before 1970) floor, so the
/// window of -1 µs under a 1 minute tumbling window is `[-60 s, 0)`.
public struct AggregateWindow: Sendable, Equatable {
    /// Length of each window, µs.
    public let size: Int64
    /// Distance between window starts, µs (equal to `size` for tumbling windows).
    public let every: Int64
    public let time: TimeSource

    /// Where a row's time comes from.
    public enum TimeSource: Sendable, Equatable {
        /// A timestamp, timestamptz or date column of the source row.
        case column(String)
        /// The commit time of the source transaction that last wrote the row.
        case commitTime
    }

    public init(size: Int64, every: Int64, time: TimeSource) {
        precondition(size > 0 && every > 0 && every <= size, "window size and step must be positive, step at most the size")
        self.size = size
        self.every = every
        self.time = time
    }

    /// Starts of the windows holding `time`, earliest first: one for tumbling windows,
    /// `ceil(size / every)` or fewer for hopping ones.
    public func starts(containing time: Int64) -> [Int64] {
        Array(stride(from: firstStart(containing: time), through: Self.floor(time, every), by: Int(every)))
    }

    /// The earliest start of a window holding `time`; the others follow every `every` up to
    /// `floor(time, every)`. Computed, not searched: the fold calls it per row.
    public func firstStart(containing time: Int64) -> Int64 {
        let last = Self.floor(time, every)
        // Windows start at last - k·every for every k ≥ 0 with last - k·every > time - size.
        return last - (last - time + size - 1) / every * every
    }

    /// The largest multiple of `step` at or below `value` (floor division, also for negatives).
    static func floor(_ value: Int64, _ step: Int64) -> Int64 {
        let remainder = value % step
        return remainder < 0 ? value - remainder - step : value - remainder
    }
}

/// PostgreSQL's text forms of times, read and written in UTC.
public enum EventTime {
    /// Reads a `timestamptz` (`2026-12-01 14:05:00.25+00`, any offset), `timestamp` (taken as UTC) or
    /// `date` text form (ISO datestyle) as µs since the epoch; nil for `infinity`, BC dates, garbage.
    public static func micros(_ bytes: ArraySlice<UInt8>) -> Int64? {
        bytes.withUnsafeBufferPointer { micros(in: $0) }  // read in place: no copy per row
    }

    /// The same over a tuple's bytes.
    static func micros(_ bytes: UnsafeRawBufferPointer) -> Int64? {
        micros(in: UnsafeBufferPointer(start: bytes.baseAddress?.assumingMemoryBound(to: UInt8.self), count: bytes.count))
    }

    private static func micros(in text: UnsafeBufferPointer<UInt8>) -> Int64? {
        if let micros = canonicalMicros(text) { return micros }
        var index = 0
        func number(_ digits: Int) -> Int64? {
            guard index + digits <= text.count else { return nil }
            var value: Int64 = 0
            for byte in text[index..<(index + digits)] {
                guard byte >= 48, byte <= 57 else { return nil }
                value = value * 10 + Int64(byte - 48)
            }
            index += digits
            return value
        }
        func expect(_ character: UInt8) -> Bool {
            guard index < text.count, text[index] == character else { return false }
            index += 1
            return true
        }
        // Years of more than four digits are written in full; find the first '-'.
        guard let dash = text.firstIndex(of: UInt8(ascii: "-")), dash >= 4,
              let year = number(dash), expect(UInt8(ascii: "-")),
              let month = number(2), expect(UInt8(ascii: "-")), let day = number(2),
              (1...12).contains(month), (1...31).contains(day) else { return nil }
        var micros = daysFromCivil(year, month, day) * 86_400_000_000
        if index == text.count { return micros }
        guard expect(UInt8(ascii: " ")) || expect(UInt8(ascii: "T")),
              let hour = number(2), expect(UInt8(ascii: ":")), let minute = number(2), expect(UInt8(ascii: ":")),
              let second = number(2) else { return nil }
        micros += ((hour * 60 + minute) * 60 + second) * 1_000_000
        if expect(UInt8(ascii: ".")) {
            var scale: Int64 = 100_000
            while index < text.count, text[index] >= 48, text[index] <= 57 {
                micros += Int64(text[index] - 48) * scale
                scale /= 10
                index += 1
            }
        }
        guard index < text.count else { return micros }
        // Offset: +HH, +HH:MM or +HH:MM:SS.
        let sign: Int64
        if expect(UInt8(ascii: "+")) { sign = 1 } else if expect(UInt8(ascii: "-")) { sign = -1 } else { return nil }
        guard let offsetHours = number(2) else { return nil }
        var offset = offsetHours * 3600
        if expect(UInt8(ascii: ":")) {
            guard let minutes = number(2) else { return nil }
            offset += minutes * 60
            if expect(UInt8(ascii: ":")) {
                guard let seconds = number(2) else { return nil }
                offset += seconds
            }
        }
        guard index == text.count else { return nil }
        return micros - sign * offset * 1_000_000
    }

    /// The form PostgreSQL sends for a timestamptz in UTC, `2026-12-01 14:05:00+00`, read at fixed
    /// positions (the common case, per row); nil for any other form, which ``micros(_:)`` reads in full.
    private static func canonicalMicros(_ text: UnsafeBufferPointer<UInt8>) -> Int64? {
        guard text.count == 22, text[4] == 45, text[7] == 45, text[10] == 32, text[13] == 58, text[16] == 58,
              text[19] == 43, text[20] == 48, text[21] == 48 else { return nil }
        func field(_ from: Int, _ count: Int) -> Int64? {
            var value: Int64 = 0
            for position in from..<(from + count) {
                let byte = text[position]
                guard byte >= 48, byte <= 57 else { return nil }
                value = value * 10 + Int64(byte - 48)
            }
            return value
        }
        guard let year = field(0, 4), let month = field(5, 2), let day = field(8, 2), let hour = field(11, 2),
              let minute = field(14, 2), let second = field(17, 2), (1...12).contains(month), (1...31).contains(day) else { return nil }
        return daysFromCivil(year, month, day) * 86_400_000_000 + ((hour * 60 + minute) * 60 + second) * 1_000_000
    }

    /// `2026-12-01 14:05:00+00` (fractional seconds only when present): PostgreSQL's timestamptz text
    /// form in UTC, which sorts as text in time order for years 1000-9999.
    public static func text(_ micros: Int64) -> String {
        let days = AggregateWindow.floor(micros, 86_400_000_000) / 86_400_000_000
        let inDay = micros - days * 86_400_000_000
        let (year, month, day) = civilFromDays(days)
        let seconds = inDay / 1_000_000
        let fraction = inDay % 1_000_000
        func two(_ value: Int64) -> String { value < 10 ? "0\(value)" : "\(value)" }
        var yearText = String(year)
        while yearText.count < 4 { yearText = "0" + yearText }
        var result = "\(yearText)-\(two(month))-\(two(day)) \(two(seconds / 3600)):\(two(seconds / 60 % 60)):\(two(seconds % 60))"
        if fraction > 0 {
            var digits = String(fraction)
            while digits.count < 6 { digits = "0" + digits }
            while digits.hasSuffix("0") { digits.removeLast() }
            result += "." + digits
        }
        return result + "+00"
    }

    /// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
    static func daysFromCivil(_ year: Int64, _ month: Int64, _ day: Int64) -> Int64 {
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yearOfEra = y - era * 400
        let dayOfYear = (153 * (month > 2 ? month - 3 : month + 9) + 2) / 5 + day - 1
        let dayOfEra = yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear
        return era * 146_097 + dayOfEra - 719_468
    }

    static func civilFromDays(_ days: Int64) -> (Int64, Int64, Int64) {
        let z = days + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let dayOfEra = z - era * 146_097
        let yearOfEra = (dayOfEra - dayOfEra / 1460 + dayOfEra / 36524 - dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let mp = (5 * dayOfYear + 2) / 153
        let day = dayOfYear - (153 * mp + 2) / 5 + 1
        let month = mp < 10 ? mp + 3 : mp - 9
        return (yearOfEra + era * 400 + (month <= 2 ? 1 : 0), month, day)
    }
}

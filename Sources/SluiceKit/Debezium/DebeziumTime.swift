/// PostgreSQL's date and time text forms (DateStyle ISO, IntervalStyle postgres: the server defaults a
/// replication session uses) as Debezium's temporal types count them. Infinite values give nil.
enum DebeziumTime {
    static let microsPerDay: Int64 = 86_400_000_000
    /// Debezium's MicroDuration counts a month as 365.25 / 12 days.
    static let microsPerMonth: Int64 = 2_629_800_000_000

    /// `io.debezium.time.Date`: days since 1970-01-01 of `2024-02-29` (or `0044-03-15 BC`).
    static func days(_ text: String) -> Int64? {
        var text = Substring(text)
        let bc = text.hasSuffix(" BC")
        if bc { text = text.dropLast(3) }
        let parts = text.split(separator: "-", omittingEmptySubsequences: false)
        guard parts.count == 3, var year = Int64(parts[0]), let month = Int64(parts[1]), let day = Int64(parts[2]),
              (1...12).contains(month), (1...31).contains(day) else { return nil }
        if bc { year = 1 - year }
        return daysFromCivil(year: year, month: month, day: day)
    }

    /// Howard Hinnant's days_from_civil (proleptic Gregorian).
    static func daysFromCivil(year: Int64, month: Int64, day: Int64) -> Int64 {
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yearOfEra = y - era * 400
        let dayOfYear = (153 * (month + (month > 2 ? -3 : 9)) + 2) / 5 + day - 1
        let dayOfEra = yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear
        return era * 146_097 + dayOfEra - 719_468
    }

    static func civilFromDays(_ days: Int64) -> (year: Int64, month: Int64, day: Int64) {
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

    /// Microseconds since midnight of `13:45:30.123456` (`24:00:00` included).
    static func timeMicros(_ text: Substring) -> Int64? {
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 3, let hours = Int64(parts[0]), let minutes = Int64(parts[1]) else { return nil }
        let secondParts = parts[2].split(separator: ".", omittingEmptySubsequences: false)
        guard let seconds = Int64(secondParts[0]), secondParts.count <= 2 else { return nil }
        var fraction: Int64 = 0
        if secondParts.count == 2 {
            let digits = secondParts[1].prefix(6)
            guard let value = Int64(digits) else { return nil }
            fraction = value * Int64(pow10(6 - digits.count))
        }
        return ((hours * 60 + minutes) * 60 + seconds) * 1_000_000 + fraction
    }

    static func timeMicros(_ text: String) -> Int64? { timeMicros(Substring(text)) }

    static func pow10(_ exponent: Int) -> Int {
        (0..<exponent).reduce(1) { value, _ in value * 10 }
    }

    /// Microseconds since the epoch of a `timestamp` (`2024-02-29 13:45:30.5`, `… BC`), read as UTC.
    static func timestampMicros(_ text: String) -> Int64? {
        var text = Substring(text)
        let bc = text.hasSuffix(" BC")
        if bc { text = text.dropLast(3) }
        guard let space = text.firstIndex(of: " "),
              let days = days(String(text[..<space]) + (bc ? " BC" : "")),
              let time = timeMicros(text[text.index(after: space)...]) else { return nil }
        return days * microsPerDay + time
    }

    /// A time zone offset `+05`, `-03:30`, `+05:30:15` in seconds; nil if malformed.
    static func offsetSeconds(_ text: Substring) -> Int64? {
        guard let sign = text.first, sign == "+" || sign == "-" else { return nil }
        let parts = text.dropFirst().split(separator: ":").map { Int64($0) }
        guard (1...3).contains(parts.count), !parts.contains(nil) else { return nil }
        let values = parts.map { $0! } + [0, 0]
        let seconds = values[0] * 3600 + values[1] * 60 + values[2]
        return sign == "-" ? -seconds : seconds
    }

    /// Splits `…+05:30` into the local part and the offset in seconds.
    static func splitOffset(_ text: Substring) -> (Substring, Int64)? {
        guard let index = text.lastIndex(where: { $0 == "+" || $0 == "-" }), index > text.startIndex,
              text[text.index(before: index)].isNumber || text[text.index(before: index)] == " ",
              let offset = offsetSeconds(text[index...]), text[index...].count <= 9 else { return nil }
        return (text[..<index], offset)
    }

    /// `io.debezium.time.ZonedTimestamp`: the instant in UTC as Java's ISO_OFFSET_DATE_TIME prints it
    /// (`2024-02-29T08:15:30.5Z`: fraction without trailing zeros, none when zero).
    static func zonedTimestamp(_ text: String) -> String? {
        var text = Substring(text)
        let bc = text.hasSuffix(" BC")
        if bc { text = text.dropLast(3) }
        guard let (local, offset) = splitOffset(text),
              let micros = timestampMicros(String(local) + (bc ? " BC" : "")) else { return nil }
        let utc = micros - offset * 1_000_000
        let day = DebeziumValue.floorDivide(utc, microsPerDay)
        let (year, month, dayOfMonth) = civilFromDays(day)
        let yearText = year < 0 ? "-" + padded(-year, 4) : year > 9999 ? "+" + String(year) : padded(year, 4)
        return yearText + "-" + padded(month, 2) + "-" + padded(dayOfMonth, 2) + "T" + clock(utc - day * microsPerDay) + "Z"
    }

    /// `io.debezium.time.ZonedTime`: the time in UTC as ISO_OFFSET_TIME prints it (`08:15:30.25Z`).
    static func zonedTime(_ text: String) -> String? {
        guard let (local, offset) = splitOffset(Substring(text)), let micros = timeMicros(local) else { return nil }
        let utc = micros - offset * 1_000_000
        return clock(((utc % microsPerDay) + microsPerDay) % microsPerDay) + "Z"
    }

    /// `HH:mm:ss` and the fraction without trailing zeros.
    static func clock(_ micros: Int64) -> String {
        let seconds = micros / 1_000_000
        var text = padded(seconds / 3600, 2) + ":" + padded(seconds / 60 % 60, 2) + ":" + padded(seconds % 60, 2)
        var fraction = micros % 1_000_000
        if fraction > 0 {
            var digits = 6
            while fraction % 10 == 0 {
                fraction /= 10
                digits -= 1
            }
            text += "." + padded(fraction, digits)
        }
        return text
    }

    static func padded(_ value: Int64, _ width: Int) -> String {
        let digits = String(value)
        return String(repeating: "0", count: max(0, width - digits.count)) + digits
    }

    /// `io.debezium.time.MicroDuration` of an interval in IntervalStyle postgres
    /// (`1 year 2 mons -3 days +04:05:06.5`): months counted as 365.25 / 12 days.
    static func intervalMicros(_ text: String) -> Int64? {
        let tokens = text.split(separator: " ")
        var months: Int64 = 0
        var days: Int64 = 0
        var micros: Int64 = 0
        var index = 0
        while index < tokens.count {
            let token = tokens[index]
            if token.contains(":") {
                let negative = token.first == "-"
                let unsigned = token.first == "-" || token.first == "+" ? token.dropFirst() : token
                guard let time = timeMicros(unsigned) else { return nil }
                micros += negative ? -time : time
                index += 1
                continue
            }
            guard let number = Int64(token), index + 1 < tokens.count else { return nil }
            switch tokens[index + 1] {
            case "year", "years": months += number * 12
            case "mon", "mons": months += number
            case "day", "days": days += number
            default: return nil
            }
            index += 2
        }
        return months * microsPerMonth + days * microsPerDay + micros
    }
}

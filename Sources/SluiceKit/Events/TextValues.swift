/// Parsing PostgreSQL's text forms without building strings, for sinks that store native values.
public enum TextValues {
    /// An integer's text form (`-42`); nil if it is not one. Inlinable, so each caller's byte collection
    /// (an array slice, a raw buffer of a tuple) gets its own specialized loop.
    @inlinable
    public static func int64<Bytes: Collection>(_ bytes: Bytes) -> Int64? where Bytes.Element == UInt8 {
        var index = bytes.startIndex
        guard index < bytes.endIndex else { return nil }
        let negative = bytes[index] == UInt8(ascii: "-")
        if negative || bytes[index] == UInt8(ascii: "+") { bytes.formIndex(after: &index) }
        guard index < bytes.endIndex else { return nil }
        var value: Int64 = 0
        while index < bytes.endIndex {
            let digit = bytes[index] &- UInt8(ascii: "0")
            guard digit < 10 else { return nil }
            let (times, o1) = value.multipliedReportingOverflow(by: 10)
            let (sum, o2) = negative ? times.subtractingReportingOverflow(Int64(digit))
                : times.addingReportingOverflow(Int64(digit))
            guard !o1, !o2 else { return nil }
            value = sum
            bytes.formIndex(after: &index)
        }
        return value
    }

    /// A float's text form, including `NaN`, `Infinity` and `-Infinity`.
    public static func double(_ bytes: ArraySlice<UInt8>) -> Double? {
        Double(String(decoding: bytes, as: UTF8.self))
    }

    /// A bool's text form: `t` or `f`.
    public static func bool(_ bytes: ArraySlice<UInt8>) -> Bool? {
        guard bytes.count == 1 else { return nil }
        switch bytes.first! {
        case UInt8(ascii: "t"): return true
        case UInt8(ascii: "f"): return false
        default: return nil
        }
    }

    /// The bytes of a bytea in hex output form (`\x0a1b…`); nil for any other form.
    public static func bytea(_ text: ArraySlice<UInt8>) -> [UInt8]? {
        guard text.count >= 2, text.first == UInt8(ascii: "\\"), text[text.startIndex + 1] == UInt8(ascii: "x"),
              text.count % 2 == 0 else { return nil }
        var out: [UInt8] = []
        out.reserveCapacity((text.count - 2) / 2)
        var index = text.startIndex + 2
        while index < text.endIndex {
            guard let high = hex(text[index]), let low = hex(text[index + 1]) else { return nil }
            out.append(high << 4 | low)
            index += 2
        }
        return out
    }

    @inline(__always)
    static func hex(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return byte - UInt8(ascii: "A") + 10
        default: return nil
        }
    }
}

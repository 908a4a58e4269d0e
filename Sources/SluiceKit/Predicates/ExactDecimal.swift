/// An exact decimal number of any size, for PostgreSQL's `numeric`: comparisons and `+ - *` are
/// exact; division keeps at least 16 significant digits and the operands' scales, rounding half
/// away from zero, as PostgreSQL does. `NaN` equals itself and sorts above every number, as in
/// PostgreSQL; `Infinity` and `-Infinity` sort at the ends.
public struct ExactDecimal: Sendable, Comparable, CustomStringConvertible {
    enum Kind: Int, Sendable { case negativeInfinity = 0, finite = 1, infinity = 2, nan = 3 }

    var kind: Kind
    var negative: Bool
    /// The coefficient's decimal digits, most significant first, no leading zeros (empty for zero).
    var digits: [UInt8]
    /// Digits after the decimal point: the value is `digits × 10^-scale`.
    var scale: Int

    /// The text form limits: PostgreSQL's numeric has at most 131072 + 16383 digits.
    static let maxDigits = 150_000

    init(kind: Kind, negative: Bool = false, digits: [UInt8] = [], scale: Int = 0) {
        self.kind = kind
        self.digits = digits
        self.scale = scale
        self.negative = negative
        normalize()
    }

    public init(_ value: Int64) {
        var digits: [UInt8] = []
        var magnitude = value.magnitude
        while magnitude > 0 {
            digits.append(UInt8(magnitude % 10))
            magnitude /= 10
        }
        self.init(kind: .finite, negative: value < 0, digits: digits.reversed(), scale: 0)
    }

    /// Parses `-12.50`, `1e3`, `.5`, `NaN`, `Infinity`, `-Infinity` (the forms PostgreSQL prints and reads).
    public init?<Bytes: Collection>(text: Bytes) where Bytes.Element == UInt8 {
        var bytes = Array(text)
        guard !bytes.isEmpty, bytes.count <= Self.maxDigits else { return nil }
        var negative = false
        if bytes[0] == UInt8(ascii: "-") || bytes[0] == UInt8(ascii: "+") {
            negative = bytes[0] == UInt8(ascii: "-")
            bytes.removeFirst()
        }
        let word = String(decoding: bytes, as: UTF8.self).lowercased()
        if word == "nan" { self.init(kind: .nan); return }
        if word == "infinity" || word == "inf" { self.init(kind: negative ? .negativeInfinity : .infinity); return }
        var digits: [UInt8] = []
        var scale = 0
        var index = 0
        var seenPoint = false
        var seenDigit = false
        while index < bytes.count {
            let byte = bytes[index]
            if byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") {
                digits.append(byte - UInt8(ascii: "0"))
                if seenPoint { scale += 1 }
                seenDigit = true
            } else if byte == UInt8(ascii: "."), !seenPoint {
                seenPoint = true
            } else {
                break
            }
            index += 1
        }
        guard seenDigit else { return nil }
        if index < bytes.count {
            guard bytes[index] == UInt8(ascii: "e") || bytes[index] == UInt8(ascii: "E"),
                  let exponent = Int(String(decoding: bytes[(index + 1)...], as: UTF8.self)),
                  abs(exponent) <= Self.maxDigits else { return nil }
            scale -= exponent
        }
        if scale < 0 {
            digits.append(contentsOf: repeatElement(0, count: -scale))
            scale = 0
        }
        self.init(kind: .finite, negative: negative, digits: digits, scale: scale)
    }

    public init?(_ text: String) { self.init(text: text.utf8) }

    private mutating func normalize() {
        if let first = digits.firstIndex(where: { $0 != 0 }) {
            if first > 0 { digits.removeFirst(first) }
        } else {
            digits = []
        }
        if digits.isEmpty || kind != .finite { negative = kind == .negativeInfinity }
    }

    public var isZero: Bool { kind == .finite && digits.isEmpty }

    /// PostgreSQL's text form, keeping the scale: `12.50`, `-0.001`, `NaN`.
    public var description: String {
        switch kind {
        case .nan: return "NaN"
        case .infinity: return "Infinity"
        case .negativeInfinity: return "-Infinity"
        case .finite: break
        }
        var padded = digits
        if padded.count <= scale { padded.insert(contentsOf: repeatElement(0, count: scale - padded.count + 1), at: 0) }
        var text = negative ? "-" : ""
        for (offset, digit) in padded.enumerated() {
            if offset == padded.count - scale { text.append(".") }
            text.append(Character(Unicode.Scalar(digit + UInt8(ascii: "0"))))
        }
        return text
    }

    public var doubleValue: Double {
        switch kind {
        case .nan: return .nan
        case .infinity: return .infinity
        case .negativeInfinity: return -.infinity
        case .finite: return Double(description) ?? .nan
        }
    }

    public static func == (left: ExactDecimal, right: ExactDecimal) -> Bool { compare(left, right) == 0 }
    public static func < (left: ExactDecimal, right: ExactDecimal) -> Bool { compare(left, right) < 0 }

    /// -1, 0 or 1.
    static func compare(_ left: ExactDecimal, _ right: ExactDecimal) -> Int {
        if left.kind != .finite || right.kind != .finite {
            return left.kind.rawValue == right.kind.rawValue ? 0 : (left.kind.rawValue < right.kind.rawValue ? -1 : 1)
        }
        if left.negative != right.negative { return left.negative ? -1 : 1 }
        let magnitude = compareMagnitudes(aligned(left, to: max(left.scale, right.scale)),
                                          aligned(right, to: max(left.scale, right.scale)))
        return left.negative ? -magnitude : magnitude
    }

    static func aligned(_ value: ExactDecimal, to scale: Int) -> [UInt8] {
        guard scale > value.scale, !value.digits.isEmpty else { return value.digits }
        return value.digits + repeatElement(0, count: scale - value.scale)
    }

    static func compareMagnitudes(_ left: [UInt8], _ right: [UInt8]) -> Int {
        if left.count != right.count { return left.count < right.count ? -1 : 1 }
        for (a, b) in zip(left, right) where a != b { return a < b ? -1 : 1 }
        return 0
    }

    static func addMagnitudes(_ left: [UInt8], _ right: [UInt8]) -> [UInt8] {
        var result = [UInt8](repeating: 0, count: max(left.count, right.count) + 1)
        var carry: UInt8 = 0
        for offset in 0..<(result.count) {
            let a = offset < left.count ? left[left.count - 1 - offset] : 0
            let b = offset < right.count ? right[right.count - 1 - offset] : 0
            let sum = a + b + carry
            result[result.count - 1 - offset] = sum % 10
            carry = sum / 10
        }
        return result
    }

    /// `left - right` for `left >= right`.
    static func subtractMagnitudes(_ left: [UInt8], _ right: [UInt8]) -> [UInt8] {
        var result = left
        var borrow: Int = 0
        for offset in 0..<left.count {
            var digit = Int(left[left.count - 1 - offset]) - borrow
            digit -= offset < right.count ? Int(right[right.count - 1 - offset]) : 0
            borrow = digit < 0 ? 1 : 0
            result[left.count - 1 - offset] = UInt8(digit + borrow * 10)
        }
        return result
    }

    static func stripped(_ digits: [UInt8]) -> [UInt8] {
        guard let first = digits.firstIndex(where: { $0 != 0 }) else { return [] }
        return first == 0 ? digits : Array(digits[first...])
    }
}

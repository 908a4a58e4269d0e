extension ExactDecimal {
    public static func + (left: ExactDecimal, right: ExactDecimal) -> ExactDecimal {
        if let special = specialSum(left, right) { return special }
        let scale = max(left.scale, right.scale)
        let a = aligned(left, to: scale), b = aligned(right, to: scale)
        if left.negative == right.negative {
            return ExactDecimal(kind: .finite, negative: left.negative, digits: addMagnitudes(a, b), scale: scale)
        }
        if compareMagnitudes(a, b) >= 0 {
            return ExactDecimal(kind: .finite, negative: left.negative, digits: subtractMagnitudes(a, b), scale: scale)
        }
        return ExactDecimal(kind: .finite, negative: right.negative, digits: subtractMagnitudes(b, a), scale: scale)
    }

    public static prefix func - (value: ExactDecimal) -> ExactDecimal {
        switch value.kind {
        case .nan: return value
        case .infinity: return ExactDecimal(kind: .negativeInfinity)
        case .negativeInfinity: return ExactDecimal(kind: .infinity)
        case .finite: return ExactDecimal(kind: .finite, negative: !value.negative, digits: value.digits, scale: value.scale)
        }
    }

    public static func - (left: ExactDecimal, right: ExactDecimal) -> ExactDecimal { left + -right }

    public static func * (left: ExactDecimal, right: ExactDecimal) -> ExactDecimal {
        if left.kind == .nan || right.kind == .nan { return ExactDecimal(kind: .nan) }
        let negative = left.negative != right.negative
        if left.kind != .finite || right.kind != .finite {
            if left.isZero || right.isZero { return ExactDecimal(kind: .nan) }
            return ExactDecimal(kind: negative ? .negativeInfinity : .infinity)
        }
        var product = [Int](repeating: 0, count: left.digits.count + right.digits.count)
        for (i, a) in left.digits.reversed().enumerated() where a != 0 {
            for (j, b) in right.digits.reversed().enumerated() { product[i + j] += Int(a) * Int(b) }
        }
        var carry = 0
        for index in product.indices {
            let total = product[index] + carry
            product[index] = total % 10
            carry = total / 10
        }
        return ExactDecimal(kind: .finite, negative: negative, digits: product.reversed().map { UInt8($0) },
                            scale: left.scale + right.scale)
    }

    /// nil when dividing by zero (the predicate's value is then NULL).
    public static func / (left: ExactDecimal, right: ExactDecimal) -> ExactDecimal? {
        if left.kind == .nan || right.kind == .nan { return ExactDecimal(kind: .nan) }
        if right.isZero { return nil }
        let negative = left.negative != right.negative
        if left.kind != .finite {
            if right.kind != .finite { return ExactDecimal(kind: .nan) }
            return ExactDecimal(kind: negative ? .negativeInfinity : .infinity)
        }
        if right.kind != .finite { return ExactDecimal(0) }
        // PostgreSQL's select_div_scale: at least 16 significant digits, counted in its base-10000
        // digits, and never fewer fractional digits than an operand.
        let (weight1, first1) = left.baseTenThousandLead, (weight2, first2) = right.baseTenThousandLead
        var quotientWeight = weight1 - weight2
        if first1 <= first2 { quotientWeight -= 1 }
        let scale = min(1000, max(16 - quotientWeight * 4, left.scale, right.scale, 0))
        // q = A × 10^(scale + s2 - s1 + 1) / B, then round away the extra digit.
        let shift = scale + right.scale - left.scale + 1
        let numerator = left.digits + repeatElement(0, count: max(0, shift))
        var quotient: [UInt8] = []
        var remainder: [UInt8] = []
        for digit in numerator {
            remainder = stripped(remainder + [digit])
            var count: UInt8 = 0
            while compareMagnitudes(remainder, right.digits) >= 0 {
                remainder = stripped(subtractMagnitudes(remainder, right.digits))
                count += 1
            }
            quotient.append(count)
        }
        let roundUp = (quotient.last ?? 0) >= 5
        quotient.removeLast()
        if roundUp { quotient = addMagnitudes(quotient, [1]) }
        return ExactDecimal(kind: .finite, negative: negative, digits: quotient, scale: scale)
    }

    /// The weight and value of the leading digit of the number written in base 10000 (as PostgreSQL
    /// stores numerics), for a non-zero finite value.
    var baseTenThousandLead: (weight: Int, digit: Int) {
        let exponent = digits.count - scale - 1
        let weight = exponent >= 0 ? exponent / 4 : -((-exponent + 3) / 4)
        var digit = 0
        for position in 0..<(exponent - 4 * weight + 1) { digit = digit * 10 + (position < digits.count ? Int(digits[position]) : 0) }
        return (weight, digit)
    }

    private static func specialSum(_ left: ExactDecimal, _ right: ExactDecimal) -> ExactDecimal? {
        if left.kind == .finite, right.kind == .finite { return nil }
        if left.kind == .nan || right.kind == .nan { return ExactDecimal(kind: .nan) }
        if left.kind == .finite { return right }
        if right.kind == .finite || right.kind == left.kind { return left }
        return ExactDecimal(kind: .nan)  // Infinity + -Infinity
    }
}

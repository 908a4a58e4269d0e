/// One token of the predicate language, with the character position (from 1) where it starts.
struct PredicateToken: Equatable {
    enum Kind: Equatable {
        /// An identifier, folded to lower case unless it was double-quoted; `quoted` keeps keywords apart.
        case identifier(String, quoted: Bool)
        case number(String)
        case string(String)
        /// `= <> != < <= > >= + - * / ( ) ,`
        case symbol(String)
        case end
    }

    var kind: Kind
    var position: Int

    /// The keyword this token spells (upper case), if it is an unquoted identifier.
    var keyword: String? {
        if case let .identifier(name, false) = kind { return name.uppercased() }
        return nil
    }

    var text: String {
        switch kind {
        case let .identifier(name, quoted): return quoted ? "\"\(name)\"" : name
        case let .number(text): return text
        case let .string(text): return "'\(text)'"
        case let .symbol(symbol): return "'\(symbol)'"
        case .end: return "the end"
        }
    }
}

/// Splits a predicate into tokens with SQL's lexical rules: `'it''s'` strings, `"Quoted"` identifiers,
/// unquoted identifiers folded to lower case, numbers with an optional fraction and exponent.
enum PredicateLexer {
    static func tokens(_ text: String) throws(PredicateError) -> [PredicateToken] {
        let scalars = Array(text.unicodeScalars)
        var tokens: [PredicateToken] = []
        var index = 0
        func at(_ offset: Int) -> Unicode.Scalar? { index + offset < scalars.count ? scalars[index + offset] : nil }
        while index < scalars.count {
            let scalar = scalars[index]
            let position = index + 1
            if scalar.properties.isWhitespace { index += 1; continue }
            if scalar == "'" || scalar == "\"" {
                var value = ""
                index += 1
                var closed = false
                while index < scalars.count {
                    if scalars[index] == scalar {
                        if at(1) == scalar { value.unicodeScalars.append(scalar); index += 2; continue }
                        index += 1
                        closed = true
                        break
                    }
                    value.unicodeScalars.append(scalars[index])
                    index += 1
                }
                guard closed else {
                    throw PredicateError(scalar == "'" ? "string literal is never closed (a quote inside is written '')"
                                         : "quoted column name is never closed", at: position)
                }
                if scalar == "\"" {
                    guard !value.isEmpty else { throw PredicateError("empty quoted column name", at: position) }
                    tokens.append(PredicateToken(kind: .identifier(value, quoted: true), position: position))
                } else {
                    tokens.append(PredicateToken(kind: .string(value), position: position))
                }
                continue
            }
            if isDigit(scalar) || (scalar == "." && at(1).map(isDigit) == true) {
                var number = ""
                while let next = at(0), isDigit(next) { number.unicodeScalars.append(next); index += 1 }
                if at(0) == "." {
                    number.append(".")
                    index += 1
                    while let next = at(0), isDigit(next) { number.unicodeScalars.append(next); index += 1 }
                }
                if let e = at(0), e == "e" || e == "E" {
                    var lookahead = 1
                    if let sign = at(1), sign == "+" || sign == "-" { lookahead = 2 }
                    if let digit = at(lookahead), isDigit(digit) {
                        for _ in 0..<lookahead { number.unicodeScalars.append(scalars[index]); index += 1 }
                        while let next = at(0), isDigit(next) { number.unicodeScalars.append(next); index += 1 }
                    } else {
                        throw PredicateError("number \(number) has an exponent without digits", at: position)
                    }
                }
                if let next = at(0), isIdentifierStart(next) {
                    throw PredicateError("unexpected '\(next)' right after the number \(number)", at: index + 1)
                }
                tokens.append(PredicateToken(kind: .number(number), position: position))
                continue
            }
            if isIdentifierStart(scalar) {
                var name = ""
                while let next = at(0), isIdentifierStart(next) || isDigit(next) || next == "$" {
                    name.unicodeScalars.append(next)
                    index += 1
                }
                tokens.append(PredicateToken(kind: .identifier(name.lowercased(), quoted: false), position: position))
                continue
            }
            let pair = at(1).map { String(scalar) + String($0) }
            if let pair, ["<>", "!=", "<=", ">="].contains(pair) {
                tokens.append(PredicateToken(kind: .symbol(pair == "!=" ? "<>" : pair), position: position))
                index += 2
                continue
            }
            if "=<>+-*/(),".unicodeScalars.contains(scalar) {
                tokens.append(PredicateToken(kind: .symbol(String(scalar)), position: position))
                index += 1
                continue
            }
            throw PredicateError("unexpected '\(scalar)'", at: position)
        }
        tokens.append(PredicateToken(kind: .end, position: scalars.count + 1))
        return tokens
    }

    static func isDigit(_ scalar: Unicode.Scalar) -> Bool { ("0"..."9").contains(scalar) }

    static func isIdentifierStart(_ scalar: Unicode.Scalar) -> Bool {
        scalar == "_" || ("a"..."z").contains(scalar) || ("A"..."Z").contains(scalar) || scalar.value >= 0x80
    }
}

/// A compiled SQL LIKE pattern: `%` any run of characters, `_` one character, `\` escapes the next
/// character (PostgreSQL's default escape). Matches UTF-8 bytes; `_` takes one whole character.
struct LikePattern: Sendable {
    enum Element: Sendable, Equatable { case byte(UInt8), one, run }

    let elements: [Element]
    let caseInsensitive: Bool

    init(_ pattern: ArraySlice<UInt8>, caseInsensitive: Bool) {
        self.caseInsensitive = caseInsensitive
        let bytes = caseInsensitive ? Array(String(decoding: pattern, as: UTF8.self).lowercased().utf8) : Array(pattern)
        var elements: [Element] = []
        var index = 0
        while index < bytes.count {
            let byte = bytes[index]
            if byte == UInt8(ascii: "\\"), index + 1 < bytes.count {
                elements.append(.byte(bytes[index + 1]))
                index += 2
                continue
            }
            switch byte {
            case UInt8(ascii: "%"): if elements.last != .run { elements.append(.run) }
            case UInt8(ascii: "_"): elements.append(.one)
            default: elements.append(.byte(byte))
            }
            index += 1
        }
        self.elements = elements
    }

    func matches(_ text: ArraySlice<UInt8>) -> Bool {
        if caseInsensitive { return matchBytes(Array(String(decoding: text, as: UTF8.self).lowercased().utf8)[...]) }
        return matchBytes(text)
    }

    /// Wildcard matching with one backtrack point (the last `%`): linear for typical patterns.
    private func matchBytes(_ text: ArraySlice<UInt8>) -> Bool {
        var t = text.startIndex
        var p = 0
        var runPattern = -1
        var runText = t
        while t < text.endIndex {
            if p < elements.count {
                switch elements[p] {
                case .run:
                    runPattern = p
                    runText = t
                    p += 1
                    continue
                case .one:
                    t = Self.nextCharacter(text, after: t)
                    p += 1
                    continue
                case let .byte(byte) where byte == text[t]:
                    t += 1
                    p += 1
                    continue
                default: break
                }
            }
            guard runPattern >= 0 else { return false }
            runText = Self.nextCharacter(text, after: runText)
            t = runText
            p = runPattern + 1
        }
        while p < elements.count, elements[p] == .run { p += 1 }
        return p == elements.count
    }

    private static func nextCharacter(_ text: ArraySlice<UInt8>, after index: Int) -> Int {
        var next = index + 1
        while next < text.endIndex, text[next] & 0xC0 == 0x80 { next += 1 }
        return next
    }
}

import Foundation

/// One column value as Debezium's PostgreSQL connector writes it in JSON with its default settings
/// (`decimal.handling.mode=precise`, `time.precision.mode=adaptive`, `binary.handling.mode=bytes`,
/// `interval.handling.mode=numeric`), from PostgreSQL's text form. docs/debezium.md lists each mapping.
public enum DebeziumValue {
    /// What Debezium writes for an unchanged TOASTed value PostgreSQL did not send.
    public static let unavailablePlaceholder = "__debezium_unavailable_value"

    /// The JSON for `value`, a value of `column`.
    public static func json(_ value: Value, column: RelationSchema.Column) -> String {
        switch value {
        case .null: return "null"
        case .unchanged: return unavailable(column)
        case let .text(bytes), let .binary(bytes):
            let text = String(decoding: bytes, as: UTF8.self)
            if let element = arrayElements[column.typeOID] ?? (column.typeName.hasSuffix("[]") ? 25 : nil) {
                guard let items = PostgresArray.parse(text) else { return jsonString(text) }
                return array(items, element: element, modifier: column.typeModifier)
            }
            return scalar(text, oid: column.typeOID, modifier: column.typeModifier)
        }
    }

    static func unavailable(_ column: RelationSchema.Column) -> String {
        if column.typeOID == 17 { return jsonString(Data(unavailablePlaceholder.utf8).base64EncodedString()) }
        if arrayElements[column.typeOID] != nil || column.typeName.hasSuffix("[]") {
            return "[" + jsonString(unavailablePlaceholder) + "]"
        }
        switch TypeClass(oid: column.typeOID) {
        case .text, .json: return jsonString(unavailablePlaceholder)
        default: return "null"
        }
    }

    /// A value of the built-in type `oid` (typmod `modifier`); types without a mapping of their own are strings.
    static func scalar(_ text: String, oid: UInt32, modifier: Int32) -> String {
        switch oid {
        case 16: return text == "t" ? "true" : text == "f" ? "false" : jsonString(text)
        case 20, 21, 23, 26: return Int64(text) != nil ? text : jsonString(text)
        case 700, 701:
            guard let number = Double(text) else { return jsonString(text) }
            return number.isFinite ? text : jsonString(number.isNaN ? "NaN" : number > 0 ? "Infinity" : "-Infinity")
        case 1700: return numeric(text, modifier: modifier)
        case 790: return money(text)
        case 17:
            guard let bytes = TextValues.bytea(Array(text.utf8)[...]) else { return jsonString(text) }
            return jsonString(Data(bytes).base64EncodedString())
        case 1082: return DebeziumTime.days(text).map(String.init) ?? "null"
        case 1083:
            guard let micros = DebeziumTime.timeMicros(text) else { return "null" }
            return precision(modifier) <= 3 ? String(micros / 1000) : String(micros)
        case 1114:
            guard let micros = DebeziumTime.timestampMicros(text) else { return "null" }
            return precision(modifier) <= 3 ? String(floorDivide(micros, 1000)) : String(micros)
        case 1184: return DebeziumTime.zonedTimestamp(text).map(jsonString) ?? "null"
        case 1266: return DebeziumTime.zonedTime(text).map(jsonString) ?? "null"
        case 1186: return DebeziumTime.intervalMicros(text).map(String.init) ?? jsonString(text)
        case 1560 where modifier == 1: return text == "1" ? "true" : "false"
        case 1560, 1562: return jsonString(Data(bits(text)).base64EncodedString())
        case 600: return point(text) ?? jsonString(text)
        default: return jsonString(text)
        }
    }

    /// Fractional digits of a time or timestamp column: its typmod, 6 when unconstrained.
    static func precision(_ modifier: Int32) -> Int32 { modifier < 0 ? 6 : modifier }

    static func floorDivide(_ value: Int64, _ divisor: Int64) -> Int64 {
        value >= 0 ? value / divisor : -((-value + divisor - 1) / divisor)
    }

    /// `numeric(p, s)`: Kafka Connect's Decimal, the unscaled value's two's-complement bytes (big-endian) in
    /// base64. Unconstrained `numeric`: Debezium's VariableScaleDecimal `{"scale": s, "value": bytes}`. NaN
    /// and infinities have no precise form: null.
    static func numeric(_ text: String, modifier: Int32) -> String {
        guard let decimal = DecimalText(text) else { return "null" }
        if modifier >= 4 {
            let scale = Int((modifier - 4) & 0xFFFF)
            return jsonString(Data(decimal.unscaledBytes(scale: scale)).base64EncodedString())
        }
        return "{\"scale\":\(decimal.scale),\"value\":"
            + jsonString(Data(decimal.unscaledBytes(scale: decimal.scale)).base64EncodedString()) + "}"
    }

    /// `money`: a Decimal of scale 2 (`money.fraction.digits`), from the locale's text (`$1,234.56`, `-$1.00`).
    static func money(_ text: String) -> String {
        let negative = text.contains("-") || text.contains("(")
        let digits = text.filter { $0.isASCII && ($0.isNumber || $0 == ".") }
        guard let decimal = DecimalText((negative ? "-" : "") + digits) else { return jsonString(text) }
        return jsonString(Data(decimal.unscaledBytes(scale: 2)).base64EncodedString())
    }

    /// `bit(n)`, `bit varying`: Debezium's Bits, the bits as an integer in little-endian bytes, ⌈n/8⌉ of them.
    static func bits(_ text: String) -> [UInt8] {
        let count = (text.count + 7) / 8
        var bytes = [UInt8](repeating: 0, count: count)
        for (index, character) in text.reversed().enumerated() where character == "1" {
            bytes[index / 8] |= 1 << UInt8(index % 8)
        }
        return bytes
    }

    /// `point` `(x,y)`: Debezium's Point `{"x", "y", "wkb", "srid"}`, wkb the little-endian WKB of the point.
    static func point(_ text: String) -> String? {
        let inner = text.trimmingCharacters(in: CharacterSet(charactersIn: "() "))
        let parts = inner.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
        guard parts.count == 2, let x = Double(parts[0]), let y = Double(parts[1]) else { return nil }
        var wkb: [UInt8] = [1]
        withUnsafeBytes(of: UInt32(1).littleEndian) { wkb += $0 }
        withUnsafeBytes(of: x.bitPattern.littleEndian) { wkb += $0 }
        withUnsafeBytes(of: y.bitPattern.littleEndian) { wkb += $0 }
        return "{\"x\":\(parts[0]),\"y\":\(parts[1]),\"wkb\":" + jsonString(Data(wkb).base64EncodedString()) + ",\"srid\":null}"
    }

    static func array(_ items: [PostgresArray.Item], element: UInt32, modifier: Int32) -> String {
        "[" + items.map { item -> String in
            switch item {
            case .null: return "null"
            case let .value(text): return scalar(text, oid: element, modifier: modifier)
            case let .nested(inner): return array(inner, element: element, modifier: modifier)
            }
        }.joined(separator: ",") + "]"
    }

    /// Array types → their element types, for the built-in types with a mapping of their own.
    static let arrayElements: [UInt32: UInt32] = [
        1000: 16, 1001: 17, 1005: 21, 1007: 23, 1016: 20, 1028: 26, 1021: 700, 1022: 701, 1231: 1700, 791: 790,
        1182: 1082, 1183: 1083, 1115: 1114, 1185: 1184, 1270: 1266, 1187: 1186, 1561: 1560, 1563: 1562, 1017: 600,
        1009: 25, 1015: 1043, 1014: 1042, 2951: 2950, 199: 114, 3807: 3802,
    ]
}

/// A decimal number's text form (`-12.340`), as sign, digits and scale.
struct DecimalText {
    var negative: Bool
    /// Every digit, integer part then fraction, without the point.
    var digits: [UInt8]
    /// Digits after the point.
    var scale: Int

    init?(_ text: String) {
        var characters = Substring(text.trimmingCharacters(in: .whitespaces))
        negative = characters.first == "-"
        if characters.first == "-" || characters.first == "+" { characters = characters.dropFirst() }
        let parts = characters.split(separator: ".", omittingEmptySubsequences: false)
        guard !characters.isEmpty, parts.count <= 2, parts.allSatisfy({ $0.allSatisfy { $0.isASCII && $0.isNumber } }),
              parts.contains(where: { !$0.isEmpty }) else { return nil }
        digits = parts.joined().utf8.map { $0 - UInt8(ascii: "0") }
        scale = parts.count == 2 ? parts[1].count : 0
    }

    /// The value times 10^`scale` (rounded half up if the text has more digits), as Java's
    /// `BigInteger.toByteArray()`: minimal big-endian two's complement.
    func unscaledBytes(scale target: Int) -> [UInt8] {
        var decimal = digits
        var roundUp = false
        if target >= scale {
            decimal += [UInt8](repeating: 0, count: target - scale)
        } else {
            let cut = decimal.count - (scale - target)
            roundUp = cut < decimal.count && decimal[max(cut, 0)] >= 5 && cut >= 0
            decimal = Array(decimal.prefix(max(cut, 0)))
        }
        var magnitude = Self.bytes(ofDecimal: decimal)
        if roundUp { magnitude = Self.increment(magnitude) }
        if magnitude.isEmpty { return [0] }
        guard negative else { return magnitude[0] & 0x80 != 0 ? [0] + magnitude : magnitude }
        var complement = Self.increment(magnitude.map { ~$0 }, keepWidth: true)
        if complement[0] & 0x80 == 0 { complement.insert(0xFF, at: 0) }
        return complement
    }

    /// Big-endian bytes of a decimal digit string, without leading zero bytes (empty for zero).
    static func bytes(ofDecimal digits: [UInt8]) -> [UInt8] {
        var number = Array(digits.drop(while: { $0 == 0 }))
        var out: [UInt8] = []
        while !number.isEmpty {
            var remainder = 0
            var quotient: [UInt8] = []
            quotient.reserveCapacity(number.count)
            for digit in number {
                let value = remainder * 10 + Int(digit)
                let q = value / 256
                remainder = value % 256
                if !quotient.isEmpty || q != 0 { quotient.append(UInt8(q)) }
            }
            out.append(UInt8(remainder))
            number = quotient
        }
        return out.reversed()
    }

    /// `bytes` + 1 (big-endian); grows by a byte on carry unless `keepWidth`.
    static func increment(_ bytes: [UInt8], keepWidth: Bool = false) -> [UInt8] {
        var out = bytes
        for index in out.indices.reversed() {
            let (sum, carry) = out[index].addingReportingOverflow(1)
            out[index] = sum
            if !carry { return out }
        }
        return keepWidth ? out : [1] + out
    }
}

/// PostgreSQL's array text form (`{1,2,NULL}`, `{"a b","c\"d"}`, `{{1,2},{3,4}}`, `[0:1]={1,2}`).
enum PostgresArray {
    enum Item: Equatable {
        case null
        case value(String)
        case nested([Item])
    }

    static func parse(_ text: String) -> [Item]? {
        var characters = Array(text)
        if characters.first == "[", let equals = characters.firstIndex(of: "=") { characters = Array(characters[(equals + 1)...]) }
        var index = 0
        guard let items = parseList(characters, &index), index == characters.count else { return nil }
        return items
    }

    private static func parseList(_ characters: [Character], _ index: inout Int) -> [Item]? {
        guard index < characters.count, characters[index] == "{" else { return nil }
        index += 1
        var items: [Item] = []
        if index < characters.count, characters[index] == "}" {
            index += 1
            return items
        }
        while index < characters.count {
            if characters[index] == "{" {
                guard let inner = parseList(characters, &index) else { return nil }
                items.append(.nested(inner))
            } else if characters[index] == "\"" {
                index += 1
                var value = ""
                while index < characters.count, characters[index] != "\"" {
                    if characters[index] == "\\", index + 1 < characters.count { index += 1 }
                    value.append(characters[index])
                    index += 1
                }
                guard index < characters.count else { return nil }
                index += 1
                items.append(.value(value))
            } else {
                var value = ""
                while index < characters.count, characters[index] != ",", characters[index] != "}" {
                    value.append(characters[index])
                    index += 1
                }
                let trimmed = value.trimmingCharacters(in: .whitespaces)
                items.append(trimmed.uppercased() == "NULL" ? .null : .value(trimmed))
            }
            guard index < characters.count else { return nil }
            if characters[index] == "," {
                index += 1
                continue
            }
            guard characters[index] == "}" else { return nil }
            index += 1
            return items
        }
        return nil
    }
}

import Foundation
import SluiceKit
import SluiceWire

/// PostgreSQL's text form of what the SQLite sink stored: it kept integers as INTEGER, floats as
/// REAL, bool as 0/1, bytea as BLOB and everything else as the text itself.
enum CanonicalText {
    static func value(_ statement: SQLiteStatement, _ column: Int, typeClass: TypeClass, isFloat4: Bool) -> String? {
        withBytes(statement, column, typeClass: typeClass, isFloat4: isFloat4) { $0.map { String(decoding: $0, as: UTF8.self) } }
    }

    /// Hands the value's text form to `body` as UTF-8 bytes (nil for NULL); text is passed straight
    /// from SQLite's buffer, so digesting a row builds no strings.
    static func withBytes<T>(_ statement: SQLiteStatement, _ column: Int, typeClass: TypeClass, isFloat4: Bool,
                             _ body: (UnsafeRawBufferPointer?) -> T) -> T {
        switch statement.storageClass(column) {
        case .null: return body(nil)
        case .integer:
            let number = statement.int64(column)
            if typeClass == .boolean { return ascii(number == 0 ? "f" : "t", body) }
            if typeClass == .float { return ascii(float(Double(number), isFloat4: isFloat4), body) }
            return decimal(number, body)
        case .real: return ascii(float(statement.double(column), isFloat4: isFloat4), body)
        case .blob:
            return statement.withBytes(column) { blob in
                withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 2 + 2 * blob.count) { text in
                    text[0] = UInt8(ascii: "\\")
                    text[1] = UInt8(ascii: "x")
                    for (index, byte) in blob.enumerated() {
                        text[2 + 2 * index] = hexDigits[Int(byte >> 4)]
                        text[3 + 2 * index] = hexDigits[Int(byte & 15)]
                    }
                    return body(UnsafeRawBufferPointer(text))
                }
            }
        case .text: return statement.withBytes(column) { body($0) }
        }
    }

    private static let hexDigits = Array("0123456789abcdef".utf8)

    private static func ascii<T>(_ text: String, _ body: (UnsafeRawBufferPointer?) -> T) -> T {
        var text = text
        return text.withUTF8 { body(UnsafeRawBufferPointer($0)) }
    }

    /// int8out without a String.
    private static func decimal<T>(_ number: Int64, _ body: (UnsafeRawBufferPointer?) -> T) -> T {
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 20) { buffer in
            var magnitude = number.magnitude
            var start = 20
            repeat {
                start -= 1
                buffer[start] = UInt8(ascii: "0") + UInt8(magnitude % 10)
                magnitude /= 10
            } while magnitude > 0
            if number < 0 { start -= 1; buffer[start] = UInt8(ascii: "-") }
            return body(UnsafeRawBufferPointer(rebasing: UnsafeMutableRawBufferPointer(buffer)[start...]))
        }
    }

    /// float8out/float4out with extra_float_digits > 0: the shortest digits that read back exactly,
    /// in exponent form below 1e-4 and from 1e15 (float4: 1e6).
    static func float(_ value: Double, isFloat4: Bool) -> String {
        if value.isNaN { return "NaN" }
        if value.isInfinite { return value < 0 ? "-Infinity" : "Infinity" }
        let shortest = isFloat4 ? Float(value).description : value.description
        var text = Substring(shortest)
        let negative = text.hasPrefix("-")
        if negative { text = text.dropFirst() }
        var exponent = 0
        if let e = text.firstIndex(where: { $0 == "e" || $0 == "E" }) {
            exponent = Int(text[text.index(after: e)...]) ?? 0
            text = text[..<e]
        }
        let point = text.firstIndex(of: ".")
        let integerPart = point.map { text[..<$0] } ?? text
        let fraction = point.map { text[text.index(after: $0)...] } ?? ""
        var digits = Array(integerPart + fraction)
        // The value is 0.d1d2… × 10^(decimalPoint).
        var decimalPoint = integerPart.count + exponent
        while digits.first == "0" && digits.count > 1 { digits.removeFirst(); decimalPoint -= 1 }
        while digits.last == "0" && digits.count > 1 { digits.removeLast() }
        let sign = negative ? "-" : ""
        if digits == ["0"] { return sign + "0" }
        let scientific = decimalPoint - 1
        if scientific < -4 || scientific >= (isFloat4 ? 6 : 15) {
            let mantissa = digits.count == 1 ? String(digits) : String(digits[0]) + "." + String(digits[1...])
            let magnitude = abs(scientific)
            return sign + mantissa + "e" + (scientific < 0 ? "-" : "+") + (magnitude < 10 ? "0" : "") + String(magnitude)
        }
        if decimalPoint <= 0 { return sign + "0." + String(repeating: "0", count: -decimalPoint) + String(digits) }
        if decimalPoint >= digits.count { return sign + String(digits) + String(repeating: "0", count: decimalPoint - digits.count) }
        return sign + String(digits[..<decimalPoint]) + "." + String(digits[decimalPoint...])
    }
}

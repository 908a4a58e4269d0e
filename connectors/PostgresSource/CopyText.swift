import SluiceKit

/// Turns a row of `COPY … TO STDOUT` text output into the tuple layout of a change record.
enum CopyText {
    struct Malformed: Error, CustomStringConvertible {
        let description: String
    }

    /// Appends the tuple for `line` (one COPY text row, with or without its newline) to `body`.
    /// Fields are tab-separated, `\N` is NULL, and backslash escapes are decoded.
    static func appendTuple(_ line: UnsafeRawBufferPointer, columns: Int, into body: inout RecordBody) throws {
        var end = line.count
        if end > 0 && line[end - 1] == UInt8(ascii: "\n") { end -= 1 }
        body.u16(UInt16(columns))
        var position = 0
        var fields = 0
        while true {
            fields += 1
            guard fields <= columns else { throw Malformed(description: "COPY row has more than \(columns) fields") }
            var fieldEnd = position
            while fieldEnd < end && line[fieldEnd] != UInt8(ascii: "\t") { fieldEnd += 1 }
            appendField(UnsafeRawBufferPointer(rebasing: line[position..<fieldEnd]), into: &body)
            if fieldEnd >= end { break }
            position = fieldEnd + 1
        }
        guard fields == columns else { throw Malformed(description: "COPY row has \(fields) fields, expected \(columns)") }
    }

    static func appendField(_ field: UnsafeRawBufferPointer, into body: inout RecordBody) {
        if field.count == 2 && field[0] == UInt8(ascii: "\\") && field[1] == UInt8(ascii: "N") {
            body.u8(UInt8(ascii: "n"))
            return
        }
        body.u8(UInt8(ascii: "t"))
        guard field.contains(UInt8(ascii: "\\")) else {
            body.u32(UInt32(field.count))
            body.raw(field)
            return
        }
        let lengthAt = body.bytes.count
        body.u32(0)
        var i = 0
        while i < field.count {
            let byte = field[i]
            guard byte == UInt8(ascii: "\\"), i + 1 < field.count else {
                body.u8(byte)
                i += 1
                continue
            }
            let code = field[i + 1]
            i += 2
            switch code {
            case UInt8(ascii: "b"): body.u8(8)
            case UInt8(ascii: "f"): body.u8(12)
            case UInt8(ascii: "n"): body.u8(10)
            case UInt8(ascii: "r"): body.u8(13)
            case UInt8(ascii: "t"): body.u8(9)
            case UInt8(ascii: "v"): body.u8(11)
            case UInt8(ascii: "0")...UInt8(ascii: "7"):
                var value = Int(code - UInt8(ascii: "0"))
                var digits = 1
                while digits < 3, i < field.count, (UInt8(ascii: "0")...UInt8(ascii: "7")).contains(field[i]) {
                    value = value * 8 + Int(field[i] - UInt8(ascii: "0"))
                    i += 1
                    digits += 1
                }
                body.u8(UInt8(truncatingIfNeeded: value))
            case UInt8(ascii: "x") where i < field.count && hexValue(field[i]) != nil:
                var value = hexValue(field[i])!
                i += 1
                if i < field.count, let low = hexValue(field[i]) {
                    value = value * 16 + low
                    i += 1
                }
                body.u8(value)
            default:
                body.u8(code)
            }
        }
        let length = UInt32(body.bytes.count - lengthAt - 4).bigEndian
        withUnsafeBytes(of: length) { raw in
            for k in 0..<4 { body.bytes[lengthAt + k] = raw[k] }
        }
    }

    static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return byte - UInt8(ascii: "A") + 10
        default: return nil
        }
    }
}

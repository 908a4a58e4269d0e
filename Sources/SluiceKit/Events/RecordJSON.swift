import Foundation

/// Renders topic records as the one-line JSON objects `sluice tail --json` prints
/// (and the file sink writes):
///
///     {"offset":0,"kind":"begin","xid":742,"lsn":"0/1A2B3C0","commit_time":"2026-11-25T10:00:00.123456Z"}
///     {"offset":2,"kind":"change","op":"insert","table":"public.accounts","table_schema":"public","table_name":"accounts",
///      "lsn":"0/1A2B2F8","before":null,"after":{"id":1,"name":"a"}}
///     {"offset":3,"kind":"commit","xid":742,"lsn":"0/1A2B3C0","end_lsn":"0/1A2B3F0","commit_time":"…","events":1}
///
/// Integers and finite floats are JSON numbers, booleans are true/false, NULL is null, json and jsonb
/// values are embedded as JSON (whitespace outside strings removed, so a line stays one line),
/// everything else is PostgreSQL's text form as a string. Unchanged TOASTed columns are left out of
/// `after` and listed in `unchanged`; json columns holding JSON `null` (not SQL NULL) show `null` and
/// are listed in `json_null`.
public struct RecordJSON {
    public var topic: String?

    public init(topic: String? = nil) { self.topic = topic }

    public func begin(_ record: BeginRecord, offset: UInt64) -> String {
        var out = JSONLine()
        out.field("offset", number: String(offset))
        if let topic { out.field("topic", string: topic) }
        out.field("kind", string: "begin")
        out.field("xid", number: String(record.xid))
        out.field("lsn", string: record.commitLSN.description)
        out.field("commit_time", string: formatMicros(record.commitTime))
        return out.finish()
    }

    public func commit(_ record: CommitRecord, offset: UInt64) -> String {
        var out = JSONLine()
        out.field("offset", number: String(offset))
        if let topic { out.field("topic", string: topic) }
        out.field("kind", string: "commit")
        out.field("xid", number: String(record.xid))
        out.field("lsn", string: record.commitLSN.description)
        out.field("end_lsn", string: record.endLSN.description)
        out.field("commit_time", string: formatMicros(record.commitTime))
        out.field("events", number: String(record.eventCount))
        return out.finish()
    }

    public func relation(_ relation: RelationSchema, offset: UInt64) -> String {
        var out = JSONLine()
        out.field("offset", number: String(offset))
        if let topic { out.field("topic", string: topic) }
        out.field("kind", string: "relation")
        tableFields(relation, into: &out)
        var columns = "["
        for (index, column) in relation.columns.enumerated() {
            if index > 0 { columns += "," }
            var item = JSONLine()
            item.field("name", string: column.name)
            item.field("type", string: column.typeName)
            if column.isPrimaryKey { item.field("primary_key", raw: "true") }
            if column.isNotNull { item.field("not_null", raw: "true") }
            columns += item.finish()
        }
        out.field("columns", raw: columns + "]")
        return out.finish()
    }

    public func change(_ change: ChangeRecord, relation: RelationSchema, offset: UInt64) -> String {
        var out = JSONLine()
        out.field("offset", number: String(offset))
        if let topic { out.field("topic", string: topic) }
        out.field("kind", string: "change")
        out.field("op", string: change.operation.name)
        tableFields(relation, into: &out)
        out.field("lsn", string: change.lsn.description)
        switch change.operation {
        case .truncate:
            out.field("before", raw: "null")
            out.field("after", raw: "null")
            if change.truncateOptions & 1 != 0 { out.field("cascade", raw: "true") }
            if change.truncateOptions & 2 != 0 { out.field("restart_identity", raw: "true") }
            if change.truncateOptions & ChangeRecord.backfillTruncate != 0 { out.field("backfill", raw: "true") }
        default:
            let before = change.old.map { row($0, relation, keyOnly: change.oldKind == .key) }
            out.field("before", raw: before?.object ?? "null")
            let after = change.new.map { row($0, relation, keyOnly: false) }
            out.field("after", raw: after?.object ?? "null")
            if let unchanged = after?.unchanged, !unchanged.isEmpty {
                out.field("unchanged", raw: "[" + unchanged.map(jsonString).joined(separator: ",") + "]")
            }
            let jsonNulls = (before?.jsonNulls ?? []).map { "before." + $0 } + (after?.jsonNulls ?? []).map { "after." + $0 }
            if !jsonNulls.isEmpty {
                out.field("json_null", raw: "[" + jsonNulls.map(jsonString).joined(separator: ",") + "]")
            }
        }
        return out.finish()
    }

    /// `table` (`schema.table`, as before: ambiguous when a name holds a dot) and the two parts apart,
    /// `table_schema` and `table_name` (as information_schema names them), which never are.
    private func tableFields(_ relation: RelationSchema, into out: inout JSONLine) {
        out.field("table", string: relation.qualifiedName)
        out.field("table_schema", string: relation.schema)
        out.field("table_name", string: relation.table)
    }

    /// A change as a sink receives it.
    public func change(_ change: Change) -> String {
        let record = ChangeRecord(operation: change.operation, relationID: change.relation.id, lsn: change.lsn,
                                  oldKind: change.oldKind, old: change.old, new: change.new,
                                  truncateOptions: change.truncateOptions)
        return self.change(record, relation: change.relation, offset: change.offset)
    }

    /// A change in one readable line for `sluice tail`: `{after}` for inserts and reads and for updates
    /// without old values, `{before} -> {after}` for updates with them, `{before}` for deletes, nothing
    /// for truncations; unchanged TOASTed columns follow as `(unchanged: a, b)`.
    public func text(_ change: ChangeRecord, relation: RelationSchema) -> String {
        let before = change.old.map { row($0, relation, keyOnly: change.oldKind == .key) }
        let after = change.new.map { row($0, relation, keyOnly: false) }
        var line: String
        switch change.operation {
        case .truncate: line = change.truncateOptions & ChangeRecord.backfillTruncate != 0 ? "(rows replaced by a backfill)" : ""
        case .delete: line = before?.object ?? "(no old values)"
        default: line = [before?.object, after?.object].compactMap { $0 }.joined(separator: " -> ")
        }
        if let unchanged = after?.unchanged, !unchanged.isEmpty { line += " (unchanged: \(unchanged.joined(separator: ", ")))" }
        return line
    }

    /// A change as a sink receives it, in one readable line.
    public func text(_ change: Change) -> String {
        text(ChangeRecord(operation: change.operation, relationID: change.relation.id, lsn: change.lsn,
                          oldKind: change.oldKind, old: change.old, new: change.new,
                          truncateOptions: change.truncateOptions), relation: change.relation)
    }

    /// A row as a JSON object; for an old key, only the identity columns.
    func row(_ tuple: Tuple, _ relation: RelationSchema, keyOnly: Bool) -> (object: String, unchanged: [String], jsonNulls: [String]) {
        var object = "{"
        var unchanged: [String] = []
        var jsonNulls: [String] = []
        var first = true
        for (index, value) in tuple.enumerated() where index < relation.columns.count {
            let column = relation.columns[index]
            if keyOnly && !column.isReplicaIdentity { continue }
            if case .unchanged = value {
                unchanged.append(column.name)
                continue
            }
            if !first { object += "," }
            first = false
            let rendered = Self.value(value, typeClass: column.typeClass, embeddingJSON: true)
            if rendered == "null", column.typeClass == .json, !value.isNull { jsonNulls.append(column.name) }
            object += jsonString(column.name) + ":" + rendered
        }
        return (object + "}", unchanged, jsonNulls)
    }

    /// One value as JSON, json and jsonb as strings of their text (the Debezium form).
    public static func value(_ value: Value, typeClass: TypeClass) -> String {
        Self.value(value, typeClass: typeClass, embeddingJSON: false)
    }

    /// One value as JSON; with `embeddingJSON`, json and jsonb text values are embedded as JSON.
    public static func value(_ value: Value, typeClass: TypeClass, embeddingJSON: Bool) -> String {
        switch value {
        case .null, .unchanged: return "null"
        case let .text(bytes), let .binary(bytes):
            let text = String(decoding: bytes, as: UTF8.self)
            switch typeClass {
            case .integer:
                return Int64(text) != nil ? text : jsonString(text)
            case .float:
                return Double(text).map { $0.isFinite } == true ? text : jsonString(text)
            case .boolean:
                return text == "t" ? "true" : text == "f" ? "false" : jsonString(text)
            case .json where embeddingJSON:
                guard case let .text(json) = value, let compact = compactJSON(json) else { return jsonString(text) }
                return compact
            default:
                return jsonString(text)
            }
        }
    }
}

/// A json or jsonb value's text (valid JSON: PostgreSQL checked it) without whitespace outside strings;
/// nil if it does not start like a JSON value.
func compactJSON(_ bytes: ArraySlice<UInt8>) -> String? {
    var out: [UInt8] = []
    out.reserveCapacity(bytes.count)
    var inString = false
    var escaped = false
    for byte in bytes {
        if inString {
            out.append(byte)
            if escaped {
                escaped = false
            } else if byte == UInt8(ascii: "\\") {
                escaped = true
            } else if byte == UInt8(ascii: "\"") {
                inString = false
            }
            continue
        }
        switch byte {
        case UInt8(ascii: " "), UInt8(ascii: "\t"), UInt8(ascii: "\n"), UInt8(ascii: "\r"):
            continue
        case UInt8(ascii: "\""):
            inString = true
        default:
            break
        }
        out.append(byte)
    }
    guard let first = out.first, !inString,
          "{[\"-0123456789tfn".utf8.contains(first) else { return nil }
    return String(decoding: out, as: UTF8.self)
}

/// Builds one JSON object, fields in the order given.
struct JSONLine {
    private var text = "{"
    private var empty = true

    mutating func field(_ key: String, raw: String) {
        if !empty { text += "," }
        empty = false
        text += jsonString(key) + ":" + raw
    }

    mutating func field(_ key: String, string: String) { field(key, raw: jsonString(string)) }
    mutating func field(_ key: String, number: String) { field(key, raw: number) }

    func finish() -> String { text + "}" }
}

/// A JSON string literal.
public func jsonString(_ text: String) -> String {
    var out = "\""
    out.reserveCapacity(text.utf8.count + 2)
    for scalar in text.unicodeScalars {
        switch scalar {
        case "\"": out += "\\\""
        case "\\": out += "\\\\"
        case "\n": out += "\\n"
        case "\r": out += "\\r"
        case "\t": out += "\\t"
        case _ where scalar.value < 0x20:
            out += "\\u" + String(repeating: "0", count: 4 - String(scalar.value, radix: 16).count)
                + String(scalar.value, radix: 16)
        default: out.unicodeScalars.append(scalar)
        }
    }
    return out + "\""
}

/// `2026-11-25T10:00:00.123456Z`.
public func formatMicros(_ micros: Micros) -> String {
    let seconds = micros >= 0 ? micros / 1_000_000 : (micros - 999_999) / 1_000_000
    let fraction = micros - seconds * 1_000_000
    var time = time_t(seconds)
    var parts = tm()
    gmtime_r(&time, &parts)
    return String(format: "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ", Int(parts.tm_year) + 1900, Int(parts.tm_mon) + 1,
                  Int(parts.tm_mday), Int(parts.tm_hour), Int(parts.tm_min), Int(parts.tm_sec), Int(fraction))
}

/// Parses `2026-11-25T10:00:00.123456Z` (as `formatMicros` writes it); nil if malformed.
public func parseMicros(_ text: String) -> Micros? {
    let bytes = Array(text.utf8)
    guard bytes.count >= 19, bytes[4] == UInt8(ascii: "-"), bytes[7] == UInt8(ascii: "-"),
          bytes[10] == UInt8(ascii: "T") || bytes[10] == UInt8(ascii: " "),
          bytes[13] == UInt8(ascii: ":"), bytes[16] == UInt8(ascii: ":") else { return nil }
    func number(_ range: Range<Int>) -> Int32? {
        var value: Int32 = 0
        for byte in bytes[range] {
            guard (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) else { return nil }
            value = value * 10 + Int32(byte - UInt8(ascii: "0"))
        }
        return value
    }
    guard let year = number(0..<4), let month = number(5..<7), let day = number(8..<10),
          let hour = number(11..<13), let minute = number(14..<16), let second = number(17..<19) else { return nil }
    var parts = tm()
    parts.tm_year = year - 1900
    parts.tm_mon = month - 1
    parts.tm_mday = day
    parts.tm_hour = hour
    parts.tm_min = minute
    parts.tm_sec = second
    var fraction: Micros = 0
    if bytes.count > 20, bytes[19] == UInt8(ascii: ".") {
        var digits = 0
        for byte in bytes[20...] where (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) && digits < 6 {
            fraction = fraction * 10 + Micros(byte - UInt8(ascii: "0"))
            digits += 1
        }
        while digits < 6 {
            fraction *= 10
            digits += 1
        }
    }
    return Micros(timegm(&parts)) * 1_000_000 + fraction
}

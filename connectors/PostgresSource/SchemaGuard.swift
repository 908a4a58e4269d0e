import PGOutput
import SluiceKit

/// Checks the rows the stream carries against what their schema record claims, so that a target
/// built from the claims accepts every row. The catalog is read when a Relation message is decoded,
/// not as it was when the change was made: a row written before `SET NOT NULL` can hold a NULL the
/// schema says is impossible, and a row may use an enum label added after the labels were read
/// (`ALTER TYPE … ADD VALUE` brings no new Relation message).
struct SchemaGuard {
    private let notNull: Set<Int>
    private let labels: [Int: Set<String>]
    private let arrays: Set<Int>
    private let last: Int

    /// nil when no column makes a claim a row could break.
    init?(_ schema: RelationSchema) {
        var notNull: Set<Int> = []
        var labels: [Int: Set<String>] = [:]
        var arrays: Set<Int> = []
        for (index, column) in schema.columns.enumerated() {
            // A primary-key column cannot hold NULL in any version of the table.
            if column.isNotNull && !column.isPrimaryKey { notNull.insert(index) }
            if let type = column.enumType {
                labels[index] = Set(type.labels)
                if column.typeName.hasSuffix("[]") { arrays.insert(index) }
            }
        }
        guard !notNull.isEmpty || !labels.isEmpty else { return nil }
        self.notNull = notNull
        self.labels = labels
        self.arrays = arrays
        last = max(notNull.max() ?? 0, labels.keys.max() ?? 0)
    }

    struct Violations {
        /// NOT NULL columns the row has a NULL in.
        var nulls: [Int] = []
        /// Enum columns and the values the row uses that their labels lack.
        var unknownLabels: [Int: Set<String>] = [:]
    }

    /// What `tuple` (a new row) contradicts; nil when nothing.
    func violations(_ tuple: TupleData) -> Violations? {
        var found = Violations()
        for (index, value) in tuple.values.enumerated() {
            if index > last { break }
            switch value {
            case .null:
                if notNull.contains(index) { found.nulls.append(index) }
            case let .text(bytes):
                guard let known = labels[index] else { continue }
                let text = String(decoding: bytes, as: UTF8.self)
                let used = arrays.contains(index) ? Self.arrayElements(text) : [text]
                for label in used where !known.contains(label) { found.unknownLabels[index, default: []].insert(label) }
            case .binary, .unchangedToast:
                continue
            }
        }
        return found.nulls.isEmpty && found.unknownLabels.isEmpty ? nil : found
    }

    /// The non-NULL elements of an array literal (`{a,"b c",NULL}`, nested ones too).
    static func arrayElements(_ literal: String) -> [String] {
        var elements: [String] = []
        var current = ""
        var quoted = false
        var wasQuoted = false
        var escaped = false
        func finish() {
            if wasQuoted || (!current.isEmpty && current != "NULL") { elements.append(current) }
            current = ""
            wasQuoted = false
        }
        for character in literal {
            if escaped {
                current.append(character)
                escaped = false
            } else if character == "\\" {
                escaped = true
            } else if quoted {
                if character == "\"" { quoted = false } else { current.append(character) }
            } else if character == "\"" {
                quoted = true
                wasQuoted = true
            } else if character == "{" {
                continue
            } else if character == "," || character == "}" {
                if !current.isEmpty || wasQuoted { finish() }
            } else if !character.isWhitespace {
                current.append(character)
            }
        }
        return elements
    }
}

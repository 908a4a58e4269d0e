import Foundation
import SluiceKit
import SluiceVerify

/// What verify prints on stdout: a line per table and the differing rows (the first few values side
/// by side), or with `--json` one object per line.
final class VerifyOutput {
    let json: Bool
    /// Differences printed per table in text form (JSON carries up to ``jsonLimit``).
    static let textLimit = 20
    static let jsonLimit = 1000

    init(json: Bool) { self.json = json }

    func note(_ text: String) {
        if json { emit("{\"type\":\"note\",\"message\":\(jsonString(text))}") } else { emit("note: " + text) }
    }

    func table(_ result: TableVerification) {
        json ? emit(tableJSON(result)) : emit(tableText(result))
    }

    func summary(_ results: [TableVerification], repaired: Int) {
        let compared = results.filter { $0.skipped == nil }
        let differing = compared.filter { !$0.isEqual }
        // A table missing at the target misses every source row.
        let rows = differing.reduce(0) { $0 + ($1.targetTableMissing ? Int($1.sourceRows) : $1.differenceCount) }
        if json {
            emit("{\"type\":\"summary\",\"tables\":\(compared.count),\"equal\":\(compared.count - differing.count),"
                 + "\"differing\":\(differing.count),\"skipped\":\(results.count - compared.count),\"differences\":\(rows),"
                 + "\"repaired\":\(repaired),\"exit\":\(differing.isEmpty ? 0 : 1)}")
        } else {
            emit("verify: \(compared.count) tables compared, \(differing.count) differ (\(rows) rows)"
                 + (results.count > compared.count ? ", \(results.count - compared.count) skipped" : "")
                 + (repaired > 0 ? ", \(repaired) rows re-copied or deleted by --repair" : ""))
        }
    }

    private func counts(_ result: TableVerification) -> String {
        "\(result.count(.missing)) missing, \(result.count(.extra)) extra, \(result.count(.different)) different"
    }

    private func tableText(_ result: TableVerification) -> String {
        let head = "sink \(result.sink)  table \(result.table)"
        if let skipped = result.skipped { return head + "  skipped: " + skipped }
        if result.targetTableMissing {
            return head + "  DIFFERS: the target has no table \(result.targetTable) (\(result.sourceRows) source rows missing)"
        }
        if !result.targetColumnsMissing.isEmpty {
            return head + "  DIFFERS: " + Self.missingColumnsAdvice(result)
        }
        let shape = "  \(result.sourceRows) rows  \(result.chunks) \(result.keyColumns.isEmpty ? "buckets (keyless)" : "chunks")"
            + (result.transforms.isEmpty ? "" : "  as transformed (\(result.transforms.joined(separator: ", ")))")
        guard !result.isEqual else { return head + shape + "  equal" }
        var lines = [head + shape + "  DIFFERS: \(result.differenceCount) rows (\(counts(result)))"]
        for difference in result.differences.prefix(Self.textLimit) {
            let key = difference.key.map { zip(result.keyColumns, $0).map { "\($0)=\($1)" }.joined(separator: ",") }
                ?? "\(difference.copies) \(difference.copies == 1 ? "copy" : "copies")"
            lines.append("  \(difference.kind.rawValue.padding(toLength: 9, withPad: " ", startingAt: 0)) \(key)"
                         + "  source: \(values(difference.source))  target: \(values(difference.target))")
        }
        if result.differenceCount > Self.textLimit { lines.append("  … and \(result.differenceCount - Self.textLimit) more (--json lists up to \(Self.jsonLimit))") }
        return lines.joined(separator: "\n")
    }

    /// Which columns the target's table lacks, and how to make it whole again.
    static func missingColumnsAdvice(_ result: TableVerification) -> String {
        let columns = result.targetColumnsMissing.map { TableName.display($0) }.joined(separator: ", ")
        let plural = result.targetColumnsMissing.count > 1
        return """
            the target table \(result.targetTable) has no column\(plural ? "s" : "") \(columns) (dropped there by hand?), so none of \
            its \(result.sourceRows) rows can equal the source's. Fix: `sluice verify --repair --table \(shellWord(result.table))` (the sink \
            adds the column\(plural ? "s" : "") back and the table is copied whole), or restart `sluice run` and then run \
            `sluice backfill --table \(shellWord(result.table))`; to keep \(plural ? "them" : "it") out of this target instead, list \
            \(plural ? "them" : "it") under the sink's columns: {\(result.table): {exclude: [...]}}
            """
    }

    /// A table name as one word of a shell command line.
    static func shellWord(_ table: TableName) -> String {
        let text = table.description
        let plain = text.unicodeScalars.allSatisfy { ($0 >= "a" && $0 <= "z") || ($0 >= "0" && $0 <= "9") || $0 == "_" || $0 == "." }
        return plain ? text : "'" + text.replacingOccurrences(of: "'", with: "'\\''") + "'"
    }

    private func values(_ row: [String?]?) -> String {
        guard let row else { return "-" }
        let shown = row.prefix(6).map { value in value.map { $0.count > 40 ? String($0.prefix(37)) + "..." : $0 } ?? "NULL" }
        return "(" + shown.joined(separator: ", ") + (row.count > 6 ? ", …" : "") + ")"
    }

    private func tableJSON(_ result: TableVerification) -> String {
        var fields = ["\"type\":\"table\"", "\"sink\":\(jsonString(result.sink))", "\"table\":\(jsonString(result.table.description))"]
        if let skipped = result.skipped {
            // Not compared: neither equal nor different.
            fields += ["\"skipped\":\(jsonString(skipped))", "\"equal\":null"]
            return "{" + fields.joined(separator: ",") + "}"
        }
        fields += ["\"target_table\":\(jsonString(result.targetTable))", "\"keyed\":\(!result.keyColumns.isEmpty)",
                   "\"rows\":\(result.sourceRows)", "\"chunks\":\(result.chunks)", "\"equal\":\(result.isEqual)",
                   "\"target_table_missing\":\(result.targetTableMissing)",
                   "\"target_columns_missing\":[" + result.targetColumnsMissing.map(jsonString).joined(separator: ",") + "]",
                   result.targetColumnsMissing.isEmpty ? nil : "\"advice\":" + jsonString(Self.missingColumnsAdvice(result)),
                   "\"transforms\":[" + result.transforms.map(jsonString).joined(separator: ",") + "]",
                   "\"missing\":\(result.count(.missing))", "\"extra\":\(result.count(.extra))", "\"different\":\(result.count(.different))",
                   "\"difference_count\":\(result.differenceCount)"].compactMap { $0 }
        func object(_ names: [String], _ values: [String?]) -> String {
            "{" + zip(names, values).map { "\(jsonString($0)):" + ($1.map(jsonString) ?? "null") }.joined(separator: ",") + "}"
        }
        let differences = result.differences.prefix(Self.jsonLimit).map { difference in
            var parts = ["\"kind\":\"\(difference.kind.rawValue)\""]
            if let key = difference.key { parts.append("\"key\":" + object(result.keyColumns, key)) }
            if difference.key == nil { parts.append("\"copies\":\(difference.copies)") }
            parts.append("\"source\":" + (difference.source.map { object(result.columns, $0) } ?? "null"))
            parts.append("\"target\":" + (difference.target.map { object(result.columns, $0) } ?? "null"))
            return "{" + parts.joined(separator: ",") + "}"
        }
        fields.append("\"differences\":[" + differences.joined(separator: ",") + "]")
        return "{" + fields.joined(separator: ",") + "}"
    }

    private func emit(_ line: String) {
        Output.rawStandardOutput(line + "\n")
    }
}

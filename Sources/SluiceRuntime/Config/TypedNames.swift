import Foundation
import SluiceKit
import Yams

/// Keys that hold a name or a path refuse a plain YAML number or boolean (`name: 5`, `slot: true`,
/// `data_dir: 1`): YAML reads those as values of another type, so they are almost always a mistake
/// (a missing word, a misplaced line). Quoted (`name: "5"`) they are names like any other.
enum TypedNames {
    struct Scalar {
        let path: String
        let line: Int
        let text: String
        /// "a number" or "a boolean".
        let kind: String
    }

    /// Key paths (as `convert` writes them) whose value must be a name or a path.
    static func holdsName(_ path: String) -> Bool {
        if ["data_dir", "topics.stream_prefix"].contains(path) { return true }
        let parts = path.split(separator: ".")
        guard parts.count == 2, parts[0].hasPrefix("sources[") || parts[0].hasPrefix("sinks[") else { return false }
        // A sink's tables: globs (`tables: 12` would be a glob matching no table: the sink silently took nothing).
        if parts[0].hasPrefix("sinks["), parts[1] == "tables" || parts[1].hasPrefix("tables[") { return true }
        return ["name", "slot", "publication", "path", "stream", "subject_prefix"].contains(String(parts[1]))
    }

    /// What YAML makes of a plain scalar other than a string, or nil for a string.
    static func kind(of node: Node) -> String? {
        switch node.tag.rawValue {
        case Tag.Name.int.rawValue, Tag.Name.float.rawValue: return "a number"
        case Tag.Name.bool.rawValue: return "a boolean"
        default: return nil
        }
    }

    static func problems(_ scalars: [Scalar], file: String) -> [ConfigError] {
        scalars.filter { holdsName($0.path) }.map { scalar in
            ConfigError(file: file, line: scalar.line, key: scalar.path,
                        message: "expected a name, found \(scalar.kind) (\(scalar.text)); quote it (\"\(scalar.text)\") if that is the name")
        }
    }
}

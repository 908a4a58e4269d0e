import Foundation
import SluiceKit

/// `${NAME}` (an environment variable) and `${file:PATH}` (a file's contents, its trailing newline
/// trimmed; PATH relative to the configuration file's directory) in configuration values.
///
/// Every value that is a secret is handed to `Secrets` as it is read, so no message can show it:
/// whatever came from `${file:…}`, a variable whose name says secret (PASSWORD, TOKEN, SECRET, API_KEY, …),
/// the value of a key that says so (`password`, `token`, an `Authorization` header) and the
/// password part of any URL.
struct Expansion {
    let file: String
    let environment: [String: String]
    let baseDirectory: String
    var warnings: [String] = []
    /// Plain YAML scalars that are numbers or booleans (`name: 5`), by key path: see `TypedNames`.
    var typedScalars: [TypedNames.Scalar] = []

    static let secretKeys: Set<String> = ["password", "token", "secret", "api_key", "apikey", "passphrase",
                                          "authorization", "proxy-authorization", "cookie", "x-api-key"]
    static let secretNameParts = ["PASSWORD", "PASSWD", "SECRET", "TOKEN", "API_KEY", "APIKEY", "CREDENTIAL"]

    init(file: String, environment: [String: String], baseDirectory: String) {
        self.file = file
        self.environment = environment
        self.baseDirectory = baseDirectory
    }

    mutating func expand(_ text: String, line: Int, key: String) throws -> String {
        let value = try substitute(text, line: line, key: key)
        let name = key.split(separator: ".").last.map { $0.lowercased() } ?? ""
        if Self.secretKeys.contains(name) || ["_password", "_token", "_secret"].contains(where: name.hasSuffix) {
            Secrets.register(value)
        }
        Secrets.registerURLPasswords(in: value)
        return value
    }

    private mutating func substitute(_ text: String, line: Int, key: String) throws -> String {
        guard text.contains("${") else { return text }
        var result = ""
        var rest = Substring(text)
        while let open = rest.range(of: "${") {
            result += rest[..<open.lowerBound]
            guard let close = rest[open.upperBound...].firstIndex(of: "}") else {
                throw ConfigError(file: file, line: line, key: key, message: "unterminated ${ in a value")
            }
            let reference = String(rest[open.upperBound..<close])
            if reference.hasPrefix("file:") {
                result += try fileSecret(String(reference.dropFirst(5)), line: line, key: key)
            } else {
                result += try variable(reference, line: line, key: key)
            }
            rest = rest[rest.index(after: close)...]
        }
        return result + rest
    }

    private func variable(_ name: String, line: Int, key: String) throws -> String {
        guard !name.isEmpty, name.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_") }) else {
            throw ConfigError(file: file, line: line, key: key,
                              message: "'${\(name)}' is not a valid variable reference (${NAME} or ${file:PATH})")
        }
        guard let value = environment[name] else {
            throw ConfigError(file: file, line: line, key: key,
                              message: "uses ${\(name)}, but the environment variable \(name) is not set")
        }
        if Self.secretNameParts.contains(where: name.uppercased().contains) { Secrets.register(value) }
        return value
    }

    private mutating func fileSecret(_ path: String, line: Int, key: String) throws -> String {
        guard !path.isEmpty else {
            throw ConfigError(file: file, line: line, key: key, message: "'${file:}' needs a path, e.g. ${file:/run/secrets/db_password}")
        }
        let full = path.hasPrefix("/") ? path : baseDirectory + "/" + path
        var info = stat()
        guard stat(full, &info) == 0 else {
            throw ConfigError(file: file, line: line, key: key,
                              message: "uses ${file:\(path)}, but \(full) \(errno == ENOENT ? "does not exist" : "cannot be read: \(String(cString: strerror(errno)))")")
        }
        guard (info.st_mode & S_IFMT) == S_IFREG, let data = FileManager.default.contents(atPath: full) else {
            throw ConfigError(file: file, line: line, key: key, message: "uses ${file:\(path)}, but \(full) is not a readable file")
        }
        guard var text = String(data: data, encoding: .utf8) else {
            throw ConfigError(file: file, line: line, key: key, message: "uses ${file:\(path)}, but \(full) is not UTF-8 text")
        }
        while text.last?.isNewline == true { text.removeLast() }
        if info.st_mode & S_IROTH != 0 {
            warnings.append("\(file):\(line): \(key): the secret file \(full) is readable by every user "
                            + "(mode \(String(info.st_mode & 0o777, radix: 8))); restrict it: chmod 600 \(full)")
        }
        Secrets.register(text)
        return text
    }
}

import Foundation
import SluiceKit

/// The keys every exec connector has: `command`, `config` and `ack_timeout`.
struct PluginSettings {
    let command: [String]
    /// The configuration file's folder: the plugin runs there.
    let workingDirectory: String
    /// The `config:` value as JSON, handed over in `hello`.
    let configJSON: String
    let timeoutMillis: Int
    /// Where `command` is written (`FILE: sinks[2] (py).command`), for messages.
    let commandKey: String

    init(config: ConnectorConfig, example: String) throws {
        guard let command = try config.stringList("command"), !command.isEmpty else {
            throw config.error("command", "is required: the plugin's program and arguments, e.g. [python3, \(example)]")
        }
        // A relative program path is relative to the configuration file, like every path in it.
        self.command = [command[0].contains("/") ? config.resolvePath(command[0]) : command[0]] + command.dropFirst()
        workingDirectory = config.baseDirectory
        commandKey = "\(config.file): \(config.path).command"
        configJSON = ExecSink.json(config.value("config") ?? .null(line: 0))
        timeoutMillis = try config.durationMillis("ack_timeout", default: 60_000, minimum: 100)
    }

    /// Throws `.misconfigured` when the program cannot be run: a mistake in the file, not an outage to retry.
    func preflight(subject: String) throws {
        for finding in check(subject: subject) where finding.severity == .error {
            throw ConnectorError.misconfigured("\(finding.subject): \(finding.message)")
        }
    }

    func launch() throws -> PluginProcess { try PluginProcess(command: command, directory: workingDirectory) }

    /// Whether the program can be run, for `sluice check` and preflight.
    func check(subject: String) -> [CheckFinding] {
        let program = command[0]
        let found = program.contains("/") ? FileManager.default.isExecutableFile(atPath: program) : PluginProcess.find(program) != nil
        return found ? [CheckFinding(.ok, subject, "runs \(command.joined(separator: " "))")]
            : [CheckFinding(.error, subject, "\(program) is not an executable program (\(commandKey): \(command.joined(separator: " ")))",
                            fix: "install it, or correct command: in the file (a relative path is relative to the file's folder)")]
    }
}

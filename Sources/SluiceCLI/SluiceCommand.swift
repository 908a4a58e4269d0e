import ArgumentParser
import Foundation
import Logging
import SluiceKit
import SluiceConnectors
import SluiceRuntime

/// The `sluice` command line. A custom build registers its own connectors and calls
/// `SluiceMain.run(registry:)` from its `main.swift`.
public enum SluiceMain {
    nonisolated(unsafe) static var registry = ConnectorRegistry.builtin

    public static func run(registry: ConnectorRegistry = .builtin) -> Never {
        self.registry = registry
        signal(SIGPIPE, SIG_IGN)
        // Files Sluice creates (data_dir, positions, spools, targets it creates) are the owner's only.
        umask(0o077)
        if ["run", "backfill", "verify"].contains(CommandLine.arguments.dropFirst().first) { Signals.install() }
        do {
            var command = try SluiceCommand.parseAsRoot()
            try command.run()
            exit(0)
        } catch let error as ConfigError {
            fail("error: \(error)", code: 2)
        } catch let errors as ConfigErrors {
            fail("error: \(errors.errors.count) mistakes in the configuration:\n"
                 + errors.errors.map { "  \($0)" }.joined(separator: "\n"), code: 2)
        } catch let error as UsageError {
            fail("error: \(error.message)", code: 2)
        } catch let error as RuntimeFailure {
            fail("error: \(error.message)", code: 1)
        } catch let code as ExitCode {
            exit(code.rawValue)
        } catch {
            let code = SluiceCommand.exitCode(for: error)
            if code == .success {
                print(SluiceCommand.fullMessage(for: error))
                exit(0)
            }
            // Bad flags and arguments: the contract's exit status for bad usage is 2.
            Output.standardError(SluiceCommand.fullMessage(for: error) + "\n")
            exit(code == .validationFailure ? 2 : (code.rawValue == 1 ? 1 : 2))
        }
    }

    static func fail(_ message: String, code: Int32) -> Never {
        Output.standardError(message + "\n")
        exit(code)
    }
}

/// A mistake on the command line (exit 2).
struct UsageError: Error {
    let message: String
}

/// Something went wrong at run time (exit 1).
struct RuntimeFailure: Error {
    let message: String
}

/// The release this binary was built from (`sluice --version`).
public let sluiceVersion = "0.8.0"

struct SluiceCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sluice",
        abstract: "Change-data-capture for PostgreSQL: logical replication into durable topics, applied exactly once to your targets.",
        discussion: """
            Exit status: 0 success, 1 runtime failure, 2 bad usage or bad configuration.
            Documentation: README.md in the source tree (every command, key and guarantee), \
            examples/sluice.yml (every configuration key), docs/ (formats, failpoints, scaling).
            """,
        version: sluiceVersion,
        subcommands: [Run.self, Backfill.self, Status.self, Tail.self, Check.self, Verify.self])
}

/// Options every command that reads a configuration file takes.
struct ConfigOption: ParsableArguments {
    @Option(name: [.short, .long], help: ArgumentHelp("The configuration file (YAML).", valueName: "file"))
    var config: String

    func load() throws -> SluiceConfig {
        let loaded = try SluiceConfig.load(path: config, registry: SluiceMain.registry)
        LogSetup.warn(loaded.warnings, format: loaded.logFormat)
        return loaded
    }
}

struct Run: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run every source and sink of the configuration file until SIGINT or SIGTERM.",
        discussion: """
            Sources capture into topics under data_dir; sinks apply them. SIGINT/SIGTERM stop gracefully \
            (sources finish, sinks apply what the topics hold) and exit 0. A second signal exits at once; \
            that too is safe: a restart resumes with nothing lost and nothing applied twice.
            """)

    @OptionGroup var options: ConfigOption

    func run() throws {
        Signals.install()
        let config = try options.load()
        LogSetup.bootstrap(format: config.logFormat, level: config.logLevel)
        let pipeline = try Pipeline(config: config, registry: SluiceMain.registry, logger: Logger(label: "sluice"))
        if let warning = DataDirectoryLock.exposure(dataDirectory: config.dataDirectory) { Logger(label: "sluice").warning("\(warning)") }
        Signals.onStop { pipeline.requestStop() }
        let code = pipeline.run()
        throw ExitCode(code)
    }
}

/// SIGINT/SIGTERM handling: the first asks for a graceful stop, the second exits at once.
/// Installed before anything else, so a signal that arrives during start-up is not lost: it stops
/// the pipeline as soon as there is one.
enum Signals {
    nonisolated(unsafe) static var sources: [DispatchSourceSignal] = []
    nonisolated(unsafe) static var count = 0
    nonisolated(unsafe) static var handler: (@Sendable () -> Void)?
    static let lock = NSLock()

    static func install() {
        guard sources.isEmpty else { return }
        for number in [SIGINT, SIGTERM] {
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
            source.setEventHandler {
                lock.lock()
                count += 1
                let first = count == 1
                let stop = handler
                lock.unlock()
                if !first { exit(130) }
                stop?()
            }
            source.resume()
            sources.append(source)
        }
    }

    /// Runs `stop` on the first signal, at once if one already arrived.
    static func onStop(_ stop: @escaping @Sendable () -> Void) {
        install()
        lock.lock()
        handler = stop
        let pending = count > 0
        lock.unlock()
        if pending { stop() }
    }
}

import ArgumentParser
import Foundation
import Logging
import SluiceKit
import SluiceRuntime

struct Check: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Validate the configuration file and every source's and sink's prerequisites.",
        discussion: """
            Checks the file (keys, types, URLs, names, topics), then connects to each database without \
            changing anything: wal_level, the replication privilege, the publication, each table's primary \
            key or replica identity, free replication slots, and that each target can be written. Prints \
            what is wrong and the SQL that fixes it. Exit status 2 if anything blocks a run.
            """)

    @OptionGroup var options: ConfigOption

    @Flag(help: "Validate the configuration file only; connect to nothing.")
    var fileOnly = false

    func run() throws {
        let config = try options.load()
        LogSetup.bootstrap(format: config.logFormat, level: "error")
        let pipeline = try Pipeline(config: config, registry: SluiceMain.registry, logger: Logger(label: "sluice"))
        var findings = [CheckFinding(.ok, "config", "\(options.config) is valid: \(config.sources.count) source(s), \(config.sinks.count) sink(s), data_dir \(config.dataDirectory)")]
        if !fileOnly { findings += pipeline.check() }
        let colors = isatty(STDOUT_FILENO) == 1
        for finding in findings {
            let label: String
            switch finding.severity {
            case .ok: label = colors ? "\u{1B}[32mok   \u{1B}[0m" : "ok   "
            case .warning: label = colors ? "\u{1B}[33mwarn \u{1B}[0m" : "warn "
            case .error: label = colors ? "\u{1B}[31mERROR\u{1B}[0m" : "ERROR"
            }
            print("\(label) \(finding.subject): \(finding.message)")
            if let fix = finding.fix { print("      fix: \(fix)") }
        }
        let blocking = findings.filter { $0.severity == .error }.count
        if blocking > 0 {
            print("\(blocking) problem\(blocking == 1 ? "" : "s") must be fixed before `sluice run`.")
            throw ExitCode(2)
        }
        print(fileOnly ? "The configuration file is valid." : "Ready to run.")
    }
}

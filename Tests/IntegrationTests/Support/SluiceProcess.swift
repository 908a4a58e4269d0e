import Foundation
import XCTest

/// The `sluice` binary built beside the test bundle.
let sluiceBinary: String = {
    let bundle = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
    for candidate in [bundle, bundle.deletingLastPathComponent()] {
        let path = candidate.appendingPathComponent("sluice").path
        if FileManager.default.isExecutableFile(atPath: path) { return path }
    }
    var url = URL(fileURLWithPath: repositoryRoot + "/.build/debug/sluice")
    url.resolveSymlinksInPath()
    return url.path
}()

/// A process a test starts: `sluice` itself, or any other program (`program:`: the custom-sink
/// example's binary, a Python receiver). Started with posix_spawn, stdin from /dev/null, stdout
/// appended to `logPath` and stderr to `errorPath` (by default the same file).
/// (Foundation's Process can miss a fast child's exit and wait forever.)
final class SluiceProcess {
    let pid: pid_t
    let logPath: String
    private(set) var status: Int32?

    /// Starts `sluice arguments…`.
    convenience init(_ arguments: [String], logPath: String, environment: [String: String] = [:]) throws {
        try self.init(program: sluiceBinary, arguments, logPath: logPath, environment: environment)
    }

    init(program: String, _ arguments: [String], logPath: String, errorPath: String? = nil,
         environment: [String: String] = [:]) throws {
        self.logPath = logPath
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, logPath, O_WRONLY | O_CREAT | O_APPEND, 0o644)
        if let errorPath {
            posix_spawn_file_actions_addopen(&actions, 2, errorPath, O_WRONLY | O_CREAT | O_APPEND, 0o644)
        } else {
            posix_spawn_file_actions_adddup2(&actions, 1, 2)
        }
        var env = ProcessInfo.processInfo.environment
        env.merge(environment) { $1 }
        let argv = ([program] + arguments).map { strdup($0) } + [nil]
        let envp = env.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            argv.forEach { free($0) }
            envp.forEach { free($0) }
        }
        var child: pid_t = 0
        let rc = posix_spawn(&child, program, &actions, nil, argv, envp)
        guard rc == 0 else { throw TestFailure("cannot start \(program): \(String(cString: strerror(rc)))") }
        pid = child
    }

    var isRunning: Bool {
        guard status == nil else { return false }
        var raw: Int32 = 0
        guard waitpid(pid, &raw, WNOHANG) == pid else { return true }
        status = Self.exitCode(raw)
        return false
    }

    func signal(_ number: Int32) { deliver(number, to: pid) }

    /// Waits for exit; returns the exit status (128 + signal when killed).
    @discardableResult
    func wait() -> Int32 {
        if let status { return status }
        var raw: Int32 = 0
        while waitpid(pid, &raw, 0) < 0 && errno == EINTR {}
        let code = Self.exitCode(raw)
        status = code
        return code
    }

    /// Waits at most `timeout` seconds for exit; the exit status, or nil while it still runs.
    func wait(timeout: TimeInterval) -> Int32? {
        let deadline = Date().addingTimeInterval(timeout)
        while isRunning && Date() < deadline { usleep(20_000) }
        return isRunning ? nil : wait()
    }

    /// SIGKILL, and waits for it.
    func kill() {
        signal(SIGKILL)
        wait()
    }

    /// SIGTERM, then waits (SIGKILL after `timeout` seconds); returns the exit status.
    @discardableResult
    func terminate(timeout: TimeInterval = 60) -> Int32 {
        signal(SIGTERM)
        if let status = wait(timeout: timeout) { return status }
        kill()
        return wait()
    }

    var log: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

    /// Peak resident memory (VmHWM) in kilobytes, read while the process runs.
    var peakRSSKilobytes: Int? {
        guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return nil }
        for line in status.split(separator: "\n") where line.hasPrefix("VmHWM:") {
            return Int(line.split(separator: " ", omittingEmptySubsequences: true)[1])
        }
        return nil
    }

    private static func exitCode(_ raw: Int32) -> Int32 { (raw & 0x7F) == 0 ? (raw >> 8) & 0xFF : 128 + (raw & 0x7F) }
}

/// `kill(2)`, out here where `SluiceProcess.kill()` does not hide it.
private func deliver(_ signal: Int32, to pid: pid_t) { kill(pid, signal) }

// MARK: Commands run to completion

/// How a command that was run to completion ended, and what it printed.
struct CommandResult {
    var status: Int32
    var out: String
    var err: String
    /// True when the command did not exit within its time limit and was killed.
    var timedOut: Bool
    var all: String { out + err }
    var describe: String { "exit \(status)\(timedOut ? " (timed out, killed)" : "")\n--- stdout ---\n\(out)\n--- stderr ---\n\(err)" }
}

/// Runs `arguments` to completion, or kills it after `timeout` seconds; stdout and stderr apart.
func execute(_ arguments: [String], environment: [String: String] = [:], timeout: TimeInterval? = nil) throws -> CommandResult {
    let base = NSTemporaryDirectory() + "sluice-out-\(UUID().uuidString)"
    defer {
        try? FileManager.default.removeItem(atPath: base + ".out")
        try? FileManager.default.removeItem(atPath: base + ".err")
    }
    let child = try SluiceProcess(program: arguments[0], Array(arguments.dropFirst()), logPath: base + ".out",
                                  errorPath: base + ".err", environment: environment)
    var timedOut = false
    if let timeout, child.wait(timeout: timeout) == nil {
        timedOut = true
        child.kill()
    }
    let status = child.wait()
    let out = (try? String(contentsOfFile: base + ".out", encoding: .utf8)) ?? ""
    let err = (try? String(contentsOfFile: base + ".err", encoding: .utf8)) ?? ""
    return CommandResult(status: status, out: out, err: err, timedOut: timedOut)
}

/// Runs `sluice arguments…` to completion (killed after `timeout` seconds).
func sluice(_ arguments: [String], environment: [String: String] = [:], timeout: TimeInterval = 60) throws -> CommandResult {
    try execute([sluiceBinary] + arguments, environment: environment, timeout: timeout)
}

/// Runs a command that must succeed; returns its stdout, throws with its output unless it exits 0.
@discardableResult
func run(_ arguments: [String], environment: [String: String] = [:], timeout: TimeInterval? = nil) throws -> String {
    let result = try execute(arguments, environment: environment, timeout: timeout)
    guard result.status == 0, !result.timedOut else {
        throw TestFailure("\(arguments.joined(separator: " ")) failed: \(result.describe)")
    }
    return result.out
}

// MARK: Waiting

/// Polls `condition` until it holds or `timeout` passes.
func eventually(timeout: TimeInterval = 60, _ message: @autoclosure () -> String = "condition",
                file: StaticString = #filePath, line: UInt = #line, _ condition: () throws -> Bool) throws {
    let deadline = Date().addingTimeInterval(timeout)
    while Date() < deadline {
        if (try? condition()) == true { return }
        usleep(100_000)
    }
    if try condition() { return }
    XCTFail("timed out waiting for \(message())", file: file, line: line)
    throw TestFailure("timed out waiting for \(message())")
}

/// A scratch directory for one test.
func scratchDirectory(_ name: String) -> String {
    let path = NSTemporaryDirectory() + "sluice-test-\(name)-\(UUID().uuidString.prefix(8))"
    try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}

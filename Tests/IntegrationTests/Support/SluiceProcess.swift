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

/// A running `sluice` subprocess whose output goes to a log file.
final class SluiceProcess {
    let child: Child
    let logPath: String

    init(_ arguments: [String], logPath: String, environment: [String: String] = [:]) throws {
        self.logPath = logPath
        child = try Child([sluiceBinary] + arguments, output: logPath, environment: environment)
    }

    var pid: Int32 { child.pid }
    var isRunning: Bool { child.isRunning }

    func kill() {
        child.signal(SIGKILL)
        child.wait()
    }

    /// SIGTERM, then waits; returns the exit status.
    @discardableResult
    func terminate(timeout: TimeInterval = 60) -> Int32 {
        child.signal(SIGTERM)
        let deadline = Date().addingTimeInterval(timeout)
        while child.isRunning && Date() < deadline { usleep(20_000) }
        if child.isRunning { kill() }
        return child.wait()
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
}

/// Runs `sluice` to completion and returns (status, stdout, stderr).
func sluice(_ arguments: [String], environment: [String: String] = [:]) throws -> (status: Int32, out: String, err: String) {
    let base = NSTemporaryDirectory() + "sluice-out-\(UUID().uuidString)"
    defer {
        try? FileManager.default.removeItem(atPath: base + ".out")
        try? FileManager.default.removeItem(atPath: base + ".err")
    }
    // stdout and stderr apart: a shell does the redirection.
    let command = ([sluiceBinary] + arguments).map { "'" + $0.replacingOccurrences(of: "'", with: "'\\''") + "'" }
        .joined(separator: " ") + " >'\(base).out' 2>'\(base).err'"
    let status = try Child(["/bin/sh", "-c", command], output: "/dev/null", environment: environment).wait()
    let out = (try? String(contentsOfFile: base + ".out", encoding: .utf8)) ?? ""
    let err = (try? String(contentsOfFile: base + ".err", encoding: .utf8)) ?? ""
    return (status, out, err)
}

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

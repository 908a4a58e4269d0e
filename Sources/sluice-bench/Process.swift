import Foundation

/// A child process started with posix_spawn; `wait` returns its exit status, peak RSS and CPU time.
final class Child: @unchecked Sendable {
    struct Usage {
        var status: Int32
        var peakRSSKilobytes: Int
        var cpuSeconds: Double
    }

    let pid: pid_t
    private(set) var usage: Usage?
    /// The child's own peak RSS (VmHWM), sampled while it runs. (`ru_maxrss` from wait4 is not used:
    /// after posix_spawn's vfork, exec charges the parent's high-water mark to the child.)
    private var peakKilobytes = 0

    /// Reads the child's VmHWM now; call it while the child runs.
    func sample() {
        guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return }
        for line in status.split(separator: "\n") where line.hasPrefix("VmHWM:") {
            let kilobytes = Int(line.split(separator: " ", omittingEmptySubsequences: true)[1]) ?? 0
            peakKilobytes = max(peakKilobytes, kilobytes)
        }
    }

    /// Waits for the child to exit by itself, sampling its memory meanwhile.
    func waitSampling() -> Usage {
        while usage == nil {
            sample()
            var raw: Int32 = 0
            var resources = rusage()
            let result = wait4(pid, &raw, WNOHANG, &resources)
            if result == pid { record(raw, resources); break }
            usleep(20_000)
        }
        return usage!
    }

    init(_ arguments: [String], output: String = "/dev/null", environment: [String: String] = [:]) throws {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, output, O_WRONLY | O_CREAT | O_APPEND, 0o644)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        var env = ProcessInfo.processInfo.environment
        env.merge(environment) { $1 }
        let argv = arguments.map { strdup($0) } + [nil]
        let envp = env.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            argv.forEach { free($0) }
            envp.forEach { free($0) }
        }
        var child: pid_t = 0
        let rc = posix_spawn(&child, arguments[0], &actions, nil, argv, envp)
        guard rc == 0 else { throw BenchError("cannot start \(arguments[0]): \(String(cString: strerror(rc)))") }
        pid = child
    }

    @discardableResult
    func wait() -> Usage {
        if let usage { return usage }
        var raw: Int32 = 0
        var resources = rusage()
        while wait4(pid, &raw, 0, &resources) < 0 && errno == EINTR {}
        record(raw, resources)
        return usage!
    }

    private func record(_ raw: Int32, _ resources: rusage) {
        let status = (raw & 0x7F) == 0 ? (raw >> 8) & 0xFF : 128 + (raw & 0x7F)
        let cpu = Double(resources.ru_utime.tv_sec) + Double(resources.ru_utime.tv_usec) / 1e6
            + Double(resources.ru_stime.tv_sec) + Double(resources.ru_stime.tv_usec) / 1e6
        usage = Usage(status: status, peakRSSKilobytes: peakKilobytes, cpuSeconds: cpu)
    }

    func stop() -> Usage {
        sample()
        kill(pid, SIGTERM)
        return wait()
    }
}

/// Runs a command to completion and returns its output; throws if it fails.
@discardableResult
func run(_ arguments: [String]) throws -> String {
    let path = NSTemporaryDirectory() + "sluice-bench-\(UUID().uuidString)"
    defer { unlink(path) }
    let usage = try Child(arguments, output: path).wait()
    let text = (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
    guard usage.status == 0 else { throw BenchError("\(arguments.joined(separator: " ")) exited \(usage.status): \(text)") }
    return text
}

struct BenchError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// Seconds on a monotonic clock.
func now() -> Double {
    Double(DispatchTime.now().uptimeNanoseconds) / 1e9
}

/// Polls `condition` every 20 ms until it holds; throws after `timeout`.
func waitUntil(timeout: Double = 600, _ what: String, _ condition: () throws -> Bool) throws {
    let deadline = now() + timeout
    while now() < deadline {
        if try condition() { return }
        usleep(20_000)
    }
    throw BenchError("timed out waiting for \(what)")
}

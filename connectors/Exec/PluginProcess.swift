import Foundation

/// A plugin subprocess with pipes to its stdin and stdout; its stderr is Sluice's.
/// Reads and writes give up after a deadline, so a hung plugin cannot hang the sink.
final class PluginProcess {
    let pid: pid_t
    private let input: Int32
    private let output: Int32
    private var readBuffer: [UInt8] = []
    private var writeBuffer: [UInt8] = []
    /// Reaped: its pid may belong to another process now, so it must never be signalled again.
    private var exited = false

    struct Failure: Error, CustomStringConvertible {
        let description: String
    }

    init(command: [String], directory: String) throws {
        var toChild: [Int32] = [0, 0]
        var fromChild: [Int32] = [0, 0]
        guard pipe(&toChild) == 0, pipe(&fromChild) == 0 else { throw Failure(description: "cannot create pipes") }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, toChild[0], 0)
        posix_spawn_file_actions_adddup2(&actions, fromChild[1], 1)
        for fd in [toChild[0], toChild[1], fromChild[0], fromChild[1]] { posix_spawn_file_actions_addclose(&actions, fd) }
        // The plugin runs in `directory` (the configuration file's folder): a shell changes there and
        // execs it, so the plugin's own pid is the one we signal.
        let executable = "/bin/sh"
        let wrapped = ["/bin/sh", "-c", "cd \"$0\" && exec \"$@\"", directory] + command
        let argv = wrapped.map { strdup($0) } + [nil]
        let envp = ProcessInfo.processInfo.environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            argv.forEach { free($0) }
            envp.forEach { free($0) }
        }
        var child: pid_t = 0
        let rc = posix_spawn(&child, executable, &actions, nil, argv, envp)
        close(toChild[0])
        close(fromChild[1])
        guard rc == 0 else {
            close(toChild[1])
            close(fromChild[0])
            throw Failure(description: "cannot start \(command[0]): \(String(cString: strerror(rc)))")
        }
        pid = child
        input = toChild[1]
        output = fromChild[0]
        _ = fcntl(input, F_SETFD, FD_CLOEXEC)
        _ = fcntl(output, F_SETFD, FD_CLOEXEC)
        // Never block in write(): a plugin that stops reading must hit the timeout, not hang us.
        _ = fcntl(input, F_SETFL, fcntl(input, F_GETFL) | O_NONBLOCK)
    }

    deinit {
        kill()
        close(input)
        close(output)
    }

    static func find(_ name: String) -> String? {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/local/bin:/usr/bin:/bin"
        return path.split(separator: ":").map { "\($0)/\(name)" }.first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    /// How long a write or a read may wait for the plugin.
    var timeoutMillis = 60_000

    /// Queues a line; `flush` sends what is queued.
    func send(_ line: String) throws {
        writeBuffer.append(contentsOf: line.utf8)
        writeBuffer.append(10)
        if writeBuffer.count >= 1 << 20 { try flush(timeoutMillis: timeoutMillis) }
    }

    func flush(timeoutMillis: Int) throws {
        var done = 0
        let deadline = DispatchTime.now().uptimeNanoseconds + UInt64(timeoutMillis) * 1_000_000
        try writeBuffer.withUnsafeBytes { raw in
            while done < raw.count {
                var pfd = pollfd(fd: input, events: Int16(POLLOUT), revents: 0)
                let left = Int(deadline > DispatchTime.now().uptimeNanoseconds ? (deadline - DispatchTime.now().uptimeNanoseconds) / 1_000_000 : 0)
                guard poll(&pfd, 1, Int32(max(1, left))) > 0 else {
                    throw Failure(description: "the plugin stopped reading its input for \(timeoutMillis / 1000) s")
                }
                let written = write(input, raw.baseAddress! + done, raw.count - done)
                if written < 0 {
                    if errno == EINTR || errno == EAGAIN { continue }
                    throw Failure(description: "the plugin closed its input (\(String(cString: strerror(errno))))")
                }
                done += written
            }
        }
        writeBuffer.removeAll(keepingCapacity: true)
    }

    /// The next line the plugin writes, or an error after `timeoutMillis` or when it exits.
    func readLine(timeoutMillis: Int) throws -> String {
        guard let line = try nextLine(waitMillis: timeoutMillis) else {
            throw Failure(description: "no answer from the plugin within \(timeoutMillis / 1000) s")
        }
        return line
    }

    /// The next line the plugin writes; nil when none came within `waitMillis`; an error when it exits.
    func nextLine(waitMillis: Int) throws -> String? {
        let deadline = DispatchTime.now().uptimeNanoseconds + UInt64(waitMillis) * 1_000_000
        while true {
            if let newline = readBuffer.firstIndex(of: 10) {
                let line = String(decoding: readBuffer[..<newline], as: UTF8.self)
                readBuffer.removeSubrange(...newline)
                return line
            }
            let now = DispatchTime.now().uptimeNanoseconds
            guard now < deadline else { return nil }
            var pfd = pollfd(fd: output, events: Int16(POLLIN), revents: 0)
            let ready = poll(&pfd, 1, Int32(max(1, (deadline - now) / 1_000_000)))
            if ready < 0 && errno == EINTR { continue }
            guard ready > 0 else { continue }
            var chunk = [UInt8](repeating: 0, count: 64 * 1024)
            let got = chunk.withUnsafeMutableBytes { read(output, $0.baseAddress, $0.count) }
            if got < 0 && errno == EINTR { continue }
            guard got > 0 else { throw Failure(description: "the plugin exited\(exitDescription)") }
            readBuffer.append(contentsOf: chunk[0..<got])
        }
    }

    private var exitDescription: String {
        for _ in 0..<50 {
            if let status = reap(blocking: false) {
                return (status & 0x7F) == 0 ? " with status \((status >> 8) & 0xFF)" : " on signal \(status & 0x7F)"
            }
            usleep(10_000)
        }
        return ""
    }

    private func reap(blocking: Bool) -> Int32? {
        guard !exited else { return 0 }
        var status: Int32 = 0
        guard waitpid(pid, &status, blocking ? 0 : WNOHANG) == pid else { return nil }
        exited = true
        return status
    }

    /// Ends the plugin: EOF on its input, a moment to exit on its own, then SIGKILL.
    func stop(graceMillis: Int = 2000) {
        close(input)
        for _ in 0..<(graceMillis / 20) where !exited {
            if reap(blocking: false) != nil { return }
            usleep(20_000)
        }
        kill()
    }

    func kill() {
        guard !exited else { return }
        Glibc.kill(pid, SIGKILL)
        _ = reap(blocking: true)
    }
}

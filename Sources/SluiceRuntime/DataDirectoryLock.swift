import Foundation
import SluiceKit

/// An exclusive lock on a data directory (`<data_dir>/sluice.lock`), held while a process captures into it.
public final class DataDirectoryLock {
    public let path: String
    private let fd: Int32

    /// Takes the lock, or returns the holder's pid when another process has it. A holder that is
    /// exiting (killed: its files are released only once its last thread is gone) is waited for, up to
    /// `exitingWait` seconds, so a restart right after a SIGKILL does not fail; a holder that runs is
    /// retried for `busyWait` seconds only.
    public static func acquire(dataDirectory: String, exitingWait: Double = 30, busyWait: Double = 1) throws
        -> Result<DataDirectoryLock, HeldBy> {
        let started = Date()
        while true {
            let attempt = try acquireOnce(dataDirectory: dataDirectory)
            guard case let .failure(holder) = attempt else { return attempt }
            let waited = Date().timeIntervalSince(started)
            let exiting = holder.pid.map(isExiting) ?? false
            guard waited < (exiting ? exitingWait : busyWait) else { return attempt }
            usleep(50_000)
        }
    }

    /// True when `pid` has a SIGKILL pending or its main thread is already a zombie: it is going away.
    static func isExiting(_ pid: Int32) -> Bool {
        guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return false }
        for line in status.split(separator: "\n") {
            if line.hasPrefix("State:") && (line.contains("Z") || line.contains("X")) { return true }
            if line.hasPrefix("SigPnd:") || line.hasPrefix("ShdPnd:"),
               let mask = UInt64(line.split(separator: "\t").last.map(String.init) ?? "", radix: 16),
               mask & (1 << (UInt64(SIGKILL) - 1)) != 0 {
                return true
            }
        }
        return false
    }

    /// The data directory cannot be created or written: a configuration to fix, not a failure to retry.
    public struct Unusable: Error, CustomStringConvertible {
        public let path: String
        public let reason: String
        public var description: String { "\(path) \(reason)" }
    }

    private static func acquireOnce(dataDirectory: String) throws -> Result<DataDirectoryLock, HeldBy> {
        // The topics hold the source's rows: for the owner only, as PostgreSQL keeps its data directory.
        do {
            try FileManager.default.createDirectory(atPath: dataDirectory, withIntermediateDirectories: true,
                                                    attributes: [.posixPermissions: 0o700])
        } catch {
            throw Unusable(path: dataDirectory, reason: "cannot be created (\(SystemReason.of(error)))")
        }
        let path = DataDirectory(dataDirectory).lockFile
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw Unusable(path: path, reason: "cannot be written (\(String(cString: strerror(errno))))") }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            var buffer = [UInt8](repeating: 0, count: 32)
            let count = read(fd, &buffer, 32)
            close(fd)
            let pid = Int32(String(decoding: buffer.prefix(max(0, count)), as: UTF8.self)
                .trimmingCharacters(in: .whitespacesAndNewlines))
            return .failure(HeldBy(pid: pid))
        }
        ftruncate(fd, 0)
        let pid = "\(getpid())\n"
        _ = pid.withCString { write(fd, $0, strlen($0)) }
        return .success(DataDirectoryLock(path: path, fd: fd))
    }

    /// A warning when others may read the data directory (its mode has group or other bits).
    public static func exposure(dataDirectory: String) -> String? {
        var info = stat()
        guard stat(dataDirectory, &info) == 0, info.st_mode & 0o077 != 0 else { return nil }
        let mode = String(info.st_mode & 0o777, radix: 8)
        return "data_dir \(dataDirectory) may be read by other users (mode \(mode))\(getuid() == 0 ? " and sluice runs as root" : ""): "
            + "its topics hold the source's rows; chmod 700 \(dataDirectory)"
    }

    /// True when some process holds the lock (a daemon is running on this data directory).
    public static func isHeld(dataDirectory: String) -> Int32? {
        let path = DataDirectory(dataDirectory).lockFile
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        if flock(fd, LOCK_SH | LOCK_NB) == 0 {
            flock(fd, LOCK_UN)
            return nil
        }
        var buffer = [UInt8](repeating: 0, count: 32)
        let count = read(fd, &buffer, 32)
        return Int32(String(decoding: buffer.prefix(max(0, count)), as: UTF8.self)
            .trimmingCharacters(in: .whitespacesAndNewlines)) ?? -1
    }

    public struct HeldBy: Error {
        public let pid: Int32?
    }

    private init(path: String, fd: Int32) {
        self.path = path
        self.fd = fd
    }

    deinit {
        flock(fd, LOCK_UN)
        close(fd)
    }
}

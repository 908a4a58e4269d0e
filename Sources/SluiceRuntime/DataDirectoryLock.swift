import Foundation
import SluiceKit

/// An exclusive lock on a data directory (`<data_dir>/sluice.lock`), held while a process captures into it.
public final class DataDirectoryLock {
    public let path: String
    private let fd: Int32

    /// Takes the lock, or returns nil with the holder's pid when another process has it.
    public static func acquire(dataDirectory: String) throws -> Result<DataDirectoryLock, HeldBy> {
        // The topics hold the source's rows: for the owner only, as PostgreSQL keeps its data directory.
        try FileManager.default.createDirectory(atPath: dataDirectory, withIntermediateDirectories: true,
                                                attributes: [.posixPermissions: 0o700])
        let path = DataDirectory(dataDirectory).lockFile
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw CocoaError(.fileWriteNoPermission, userInfo: [NSFilePathErrorKey: path]) }
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

import Foundation
import SluiceKit

/// Free space under `data_dir`, and a small reserve file that a full disk gives back, so the status
/// file and the source's state can still be written while the topic waits for room.
final class DiskSpace: @unchecked Sendable {
    let directory: String
    let reservePath: String
    static let reserveBytes = 1 << 20
    private let lock = NSLock()
    private var fullSince: Date?

    init(dataDirectory: String) {
        directory = dataDirectory
        reservePath = DataDirectory(dataDirectory).spaceReserve
    }

    /// Bytes available to this process and the filesystem's size, or nil if unknown.
    static func available(at path: String) -> (free: UInt64, size: UInt64)? {
        var stats = statvfs()
        guard statvfs(path, &stats) == 0 else { return nil }
        return (UInt64(stats.f_bavail) * UInt64(stats.f_frsize), UInt64(stats.f_blocks) * UInt64(stats.f_frsize))
    }

    /// Free space below which a paused source waits: 5 % of the filesystem, between 1 MB and 64 MB.
    func resumeThreshold(size: UInt64) -> UInt64 {
        min(64 << 20, max(1 << 20, size / 20)) + UInt64(Self.reserveBytes)
    }

    /// What a paused source waits for, for its status: how much must be free, and how much is.
    func waitingFor() -> (text: String, free: UInt64) {
        guard let space = Self.available(at: directory) else { return ("capture resumes when space returns", 0) }
        let needed = resumeThreshold(size: space.size)
        return ("capture resumes once \(Self.megabytes(needed)) are free there (\(Self.megabytes(space.free)) now; "
                + "5 % of the filesystem, 1 MB at least and 64 MB at most, plus a 1 MB reserve): free space there or grow the filesystem",
                space.free)
    }

    /// For `sluice status` when the daemon's status file went stale: what a full filesystem under
    /// `data_dir` means, or nil when it has room (at least the reserve's size free).
    static func fullNote(dataDirectory: String, statusAge: TimeInterval) -> String? {
        guard let space = available(at: dataDirectory), space.free < UInt64(reserveBytes) else { return nil }
        return "disk full: \(dataDirectory) has \(megabytes(space.free)) free, so capture cannot write and the daemon has not "
            + "updated its status file for \(Int(statusAge)) s: free space there or grow the filesystem"
    }

    /// `2.1 MB`: one decimal, binary megabytes as sizes in the configuration are.
    static func megabytes(_ bytes: UInt64) -> String {
        String(format: "%.1f MB", Double(bytes) / Double(1 << 20))
    }

    /// Whether a source paused by a full disk may write again.
    var hasRoom: Bool {
        guard let space = Self.available(at: directory) else { return true }
        return space.free >= resumeThreshold(size: space.size)
    }

    /// Why nothing can be written under data_dir (less free than the reserve's size), or nil.
    var starved: String? {
        guard let space = Self.available(at: directory), space.free < UInt64(Self.reserveBytes) else { return nil }
        return "disk full: \(directory) has less than \(Self.megabytes(UInt64(Self.reserveBytes))) free, so nothing can be captured: "
            + "free space there or grow the filesystem"
    }

    /// Less free than capture needs to resume: a write that failed here most likely failed for room.
    var isLow: Bool { !hasRoom }

    /// The disk filled: give back the reserve.
    func filled() {
        lock.lock()
        if fullSince == nil { fullSince = Date() }
        lock.unlock()
        unlink(reservePath)
    }

    var isFull: Bool {
        lock.lock()
        defer { lock.unlock() }
        return fullSince != nil
    }

    /// Called about once a second: recreates the reserve once there is room again.
    func tick() {
        if hasRoom {
            lock.lock()
            fullSince = nil
            lock.unlock()
        }
        guard !FileManager.default.fileExists(atPath: reservePath), !isFull,
              let space = Self.available(at: directory), space.free >= resumeThreshold(size: space.size) * 2
        else { return }
        let fd = open(reservePath + ".tmp", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { return }
        // Blocks really allocated (a sparse file would give nothing back).
        let ok = posix_fallocate(fd, 0, off_t(Self.reserveBytes)) == 0 && fsync(fd) == 0
        close(fd)
        if ok { rename(reservePath + ".tmp", reservePath) } else { unlink(reservePath + ".tmp") }
    }
}

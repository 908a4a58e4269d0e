import Foundation
import Logging
import SluiceKit

/// The files of one topic: `<topic>.<8-digit sequence>.jsonl`, the newest one appended to.
final class TopicFile {
    let directory: String
    let topic: String
    private var sequence: Int
    private var fd: Int32
    /// Bytes made durable by the last sync: an abandoned batch is cut back to here.
    private var syncedSize: UInt64
    private var buffer: [UInt8] = []
    /// The last transaction written (durable once synced).
    var position: SinkPosition?

    static let flushBytes = 1 << 20

    static func name(_ topic: String, _ sequence: Int) -> String {
        let digits = String(sequence)
        return "\(topic).\(String(repeating: "0", count: max(0, 8 - digits.count)))\(digits).jsonl"
    }

    /// Topic → sorted sequences of its files in `directory`.
    static func sequences(in directory: String) -> [String: [Int]] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        var result: [String: [Int]] = [:]
        for name in names where name.hasSuffix(".jsonl") {
            let stem = name.dropLast(6)
            guard let dot = stem.lastIndex(of: "."), let sequence = Int(stem[stem.index(after: dot)...]) else { continue }
            result[String(stem[..<dot]), default: []].append(sequence)
        }
        return result.mapValues { $0.sorted() }
    }

    static func topics(in directory: String) -> [String] { sequences(in: directory).keys.sorted() }

    init(directory: String, topic: String, logger: Logger) throws {
        self.directory = directory
        self.topic = topic
        var sequences = Self.sequences(in: directory)[topic] ?? []
        // Cut the newest file back to its last commit line; a newest file with none (a crash right
        // after a rotation, or mid-transaction) is emptied, and the position comes from the one before.
        var found: (SinkPosition, UInt64)?
        while let newest = sequences.last {
            let path = directory + "/" + Self.name(topic, newest)
            found = try Self.lastCommitLine(path: path, topic: topic)
            if found != nil || sequences.count == 1 { break }
            if FileManager.default.fileExists(atPath: path), (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? 0 > 0 {
                logger.warning("file sink: dropped a file without a complete transaction", metadata: ["file": "\(path)"])
            }
            unlink(path)
            sequences.removeLast()
        }
        sequence = sequences.last ?? 1
        let path = directory + "/" + Self.name(topic, sequence)
        fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw CocoaError(.fileWriteNoPermission, userInfo: [NSFilePathErrorKey: path]) }
        let keep = found?.1 ?? 0
        let size = UInt64(lseek(fd, 0, SEEK_END))
        if size > keep {
            logger.warning("file sink: dropped an unacknowledged tail", metadata: ["file": "\(path)", "bytes": "\(size - keep)"])
            ftruncate(fd, off_t(keep))
            fsync(fd)
        }
        lseek(fd, off_t(keep), SEEK_SET)
        syncedSize = keep
        // The loop above stops at the newest file with a commit line, or at the only file left.
        position = found?.0
    }

    deinit { close(fd) }

    func append(_ line: String) throws {
        buffer.append(contentsOf: line.utf8)
        buffer.append(10)
        if buffer.count >= Self.flushBytes { try writeBuffer() }
    }

    private func writeBuffer() throws {
        var done = 0
        try buffer.withUnsafeBytes { raw in
            while done < raw.count {
                let written = write(fd, raw.baseAddress! + done, raw.count - done)
                if written < 0 {
                    if errno == EINTR { continue }
                    throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO)
                }
                done += written
            }
        }
        buffer.removeAll(keepingCapacity: true)
    }

    /// Makes everything appended durable; then starts a new file if this one is past `limit`.
    func sync(rotateBeyond limit: UInt64) throws {
        try writeBuffer()
        guard fsync(fd) == 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
        syncedSize = UInt64(lseek(fd, 0, SEEK_CUR))
        guard syncedSize > limit else { return }
        let next = directory + "/" + Self.name(topic, sequence + 1)
        let newFD = open(next, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard newFD >= 0 else { return }
        Failpoint.hit("sink.file.rotate")
        let dir = open(directory, O_RDONLY)
        if dir >= 0 { fsync(dir); close(dir) }
        close(fd)
        fd = newFD
        sequence += 1
        syncedSize = 0
    }

    /// Drops what was appended since the last sync.
    func discardUnsynced() throws {
        buffer.removeAll(keepingCapacity: true)
        ftruncate(fd, off_t(syncedSize))
        lseek(fd, off_t(syncedSize), SEEK_SET)
    }

    /// The position of the last commit line of the topic's newest file that has one.
    static func lastCommit(directory: String, topic: String) throws -> SinkPosition? {
        for sequence in (sequences(in: directory)[topic] ?? []).reversed() {
            if let found = try lastCommitLine(path: directory + "/" + name(topic, sequence), topic: topic) { return found.0 }
        }
        return nil
    }

    /// The last complete commit line of a file, and the byte just after it.
    static func lastCommitLine(path: String, topic: String) throws -> (SinkPosition, UInt64)? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var end = UInt64(lseek(fd, 0, SEEK_END))
        var tail: [UInt8] = []
        let chunk = 64 * 1024
        while end > 0 || !tail.isEmpty {
            // Lines are complete only up to the last newline.
            if let newline = tail.lastIndex(of: 10) {
                let lineEnd = newline
                let lineStart = (tail[..<lineEnd].lastIndex(of: 10).map { $0 + 1 }) ?? (end == 0 ? 0 : nil)
                if let lineStart {
                    let line = tail[lineStart..<lineEnd]
                    if let position = commitPosition(line, topic: topic) {
                        return (position, end + UInt64(lineEnd) + 1)
                    }
                    tail.removeSubrange(lineStart...)
                    continue
                }
            } else if end == 0 {
                return nil
            }
            guard end > 0 else { return nil }
            let read = Int(min(UInt64(chunk), end))
            var bytes = [UInt8](repeating: 0, count: read)
            let got = bytes.withUnsafeMutableBytes { pread(fd, $0.baseAddress, read, off_t(end) - off_t(read)) }
            guard got == read else { return nil }
            end -= UInt64(read)
            tail = bytes + tail
        }
        return nil
    }

    /// A commit line: Sluice's commit object, or (format: debezium) the END transaction event with its `sluice` position.
    static func commitPosition(_ line: ArraySlice<UInt8>, topic: String) -> SinkPosition? {
        guard line.count > 20, var object = try? JSONSerialization.jsonObject(with: Data(line)) as? [String: Any] else { return nil }
        if object["status"] as? String == "END", let position = object["sluice"] as? [String: Any] {
            object = position.merging(["kind": "commit"]) { $1 }
        }
        guard object["kind"] as? String == "commit", let offset = object["offset"] as? NSNumber else { return nil }
        return SinkPosition(topic: topic, offset: offset.uint64Value,
                            lsn: (object["lsn"] as? String).flatMap { LSN($0) } ?? .zero,
                            commitTime: (object["commit_time"] as? String).flatMap(parseMicros) ?? 0)
    }
}

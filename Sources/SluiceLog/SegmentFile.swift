#if canImport(Glibc)
import Glibc
#endif

/// Segment files: `<base offset, 20 digits>.log`, each starting with a 20-byte header
/// (`SLUICELG`, format version u32, base offset u64), then frames. Beside each, a sparse
/// offset index `<base>.idx`.
enum SegmentFile {
    static let magic: [UInt8] = Array("SLUICELG".utf8)
    static let formatVersion: UInt32 = 1
    static let headerSize = 20

    static func name(base: UInt64, suffix: String) -> String {
        let digits = String(base)
        return String(repeating: "0", count: max(0, 20 - digits.count)) + digits + "." + suffix
    }

    static func header(base: UInt64) -> [UInt8] {
        var bytes = magic
        withUnsafeBytes(of: formatVersion.bigEndian) { bytes.append(contentsOf: $0) }
        withUnsafeBytes(of: base.bigEndian) { bytes.append(contentsOf: $0) }
        return bytes
    }

    /// Base offsets of the segments in `directory`, ascending.
    static func list(_ directory: String) -> [UInt64] {
        guard let dir = opendir(directory) else { return [] }
        defer { closedir(dir) }
        var bases: [UInt64] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(cString: raw.bindMemory(to: CChar.self).baseAddress!)
            }
            guard name.hasSuffix(".log"), name.count == 24, let base = UInt64(name.prefix(20)) else { continue }
            bases.append(base)
        }
        return bases.sorted()
    }

    static func validateHeader(_ fd: Int32, base: UInt64, path: String) throws {
        var bytes = [UInt8](repeating: 0, count: headerSize)
        let got = bytes.withUnsafeMutableBytes { pread(fd, $0.baseAddress, headerSize, 0) }
        guard got == headerSize, Array(bytes[0..<8]) == magic else {
            throw LogError("\(path) is not a Sluice log segment (bad header)")
        }
        let version = bytes.withUnsafeBytes { UInt32(bigEndian: $0.loadUnaligned(fromByteOffset: 8, as: UInt32.self)) }
        guard version == formatVersion else {
            throw LogError("\(path) has log format version \(version); this sluice reads version \(formatVersion)")
        }
        let stored = bytes.withUnsafeBytes { UInt64(bigEndian: $0.loadUnaligned(fromByteOffset: 12, as: UInt64.self)) }
        guard stored == base else { throw LogError("\(path) claims base offset \(stored)") }
    }

    static func size(path: String) -> UInt64 {
        var info = stat()
        return stat(path, &info) == 0 ? UInt64(info.st_size) : 0
    }

    static func size(_ fd: Int32) -> UInt64 {
        var info = stat()
        return fstat(fd, &info) == 0 ? UInt64(info.st_size) : 0
    }

    /// Writes all of `bytes`, retrying short writes.
    static func writeAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer, path: String) throws {
        var done = 0
        while done < bytes.count {
            let n = write(fd, bytes.baseAddress! + done, bytes.count - done)
            if n < 0 {
                if errno == EINTR { continue }
                throw LogError.io("cannot write", path)
            }
            done += n
        }
    }

    static func syncDirectory(_ directory: String) {
        let fd = open(directory, O_RDONLY | O_DIRECTORY)
        guard fd >= 0 else { return }
        fsync(fd)
        close(fd)
    }
}

/// Sparse offset index of a segment: 16-byte entries (offset u64, file position u64), one per
/// `SegmentIndex.interval` bytes of records. A cache: rebuilt from the segment when it disagrees.
struct SegmentIndex {
    static let interval: UInt64 = 64 * 1024
    var entries: [(offset: UInt64, position: UInt64)] = []

    static func load(_ path: String) -> SegmentIndex {
        var index = SegmentIndex()
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { return index }
        defer { close(fd) }
        let size = Int(SegmentFile.size(fd))
        var bytes = [UInt8](repeating: 0, count: size - size % 16)
        let got = bytes.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, 0) }
        guard got == bytes.count else { return index }
        bytes.withUnsafeBytes { raw in
            for at in stride(from: 0, to: raw.count, by: 16) {
                let offset = UInt64(bigEndian: raw.loadUnaligned(fromByteOffset: at, as: UInt64.self))
                let position = UInt64(bigEndian: raw.loadUnaligned(fromByteOffset: at + 8, as: UInt64.self))
                if let last = index.entries.last, offset <= last.offset || position <= last.position { break }
                index.entries.append((offset, position))
            }
        }
        return index
    }

    /// The last entry at or before `offset`.
    func floor(_ offset: UInt64) -> (offset: UInt64, position: UInt64)? {
        var low = 0, high = entries.count
        while low < high {
            let mid = (low + high) / 2
            if entries[mid].offset <= offset { low = mid + 1 } else { high = mid }
        }
        return low == 0 ? nil : entries[low - 1]
    }

    static func encode(_ entries: ArraySlice<(offset: UInt64, position: UInt64)>) -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(entries.count * 16)
        for entry in entries {
            withUnsafeBytes(of: entry.offset.bigEndian) { bytes.append(contentsOf: $0) }
            withUnsafeBytes(of: entry.position.bigEndian) { bytes.append(contentsOf: $0) }
        }
        return bytes
    }
}

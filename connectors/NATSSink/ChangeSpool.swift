import Foundation

/// The rendered changes of the open transaction, held until its commit marker arrives (only then is
/// the commit offset every message carries known). Kept in memory up to `memoryLimit` bytes; past
/// that, the rest goes to a file (`path`, truncated for each transaction), so a transaction of any
/// size is published without holding it in memory.
final class ChangeSpool {
    struct Entry {
        var offset: UInt64
        /// The event's number within its change (1, 2) when the change is several messages; 0 when one.
        var event: UInt64
        var subject: String
        var body: [UInt8]
    }

    let path: String
    let memoryLimit: Int
    private var memory: [Entry] = []
    private var memoryBytes = 0
    private var file: FileHandle?
    private var fileBuffer: [UInt8] = []
    private var fileEntries = 0

    init(path: String, memoryLimit: Int = 16 << 20) {
        self.path = path
        self.memoryLimit = memoryLimit
    }

    deinit {
        try? file?.close()
        unlink(path)
    }

    var count: Int { memory.count + fileEntries }

    func append(offset: UInt64, event: UInt64 = 0, subject: String, body: [UInt8]) throws {
        if fileEntries == 0 && memoryBytes + body.count + subject.utf8.count <= memoryLimit {
            memory.append(Entry(offset: offset, event: event, subject: subject, body: body))
            memoryBytes += body.count + subject.utf8.count + 64
            return
        }
        if file == nil {
            let directory = (path as NSString).deletingLastPathComponent
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            guard FileManager.default.createFile(atPath: path, contents: nil), let handle = FileHandle(forUpdatingAtPath: path) else {
                throw CocoaError(.fileWriteUnknown, userInfo: [NSFilePathErrorKey: path])
            }
            file = handle
        }
        Self.put(offset, into: &fileBuffer)
        Self.put(event, into: &fileBuffer)
        Self.put(UInt64(subject.utf8.count), into: &fileBuffer)
        fileBuffer.append(contentsOf: subject.utf8)
        Self.put(UInt64(body.count), into: &fileBuffer)
        fileBuffer.append(contentsOf: body)
        fileEntries += 1
        if fileBuffer.count >= 1 << 20 { try flushBuffer() }
    }

    /// Every entry in append order.
    func forEach(_ body: (Entry) throws -> Void) throws {
        for entry in memory { try body(entry) }
        guard fileEntries > 0, let file else { return }
        try flushBuffer()
        try file.seek(toOffset: 0)
        var reader = Reader(file: file)
        for _ in 0..<fileEntries {
            let offset = try reader.u64()
            let event = try reader.u64()
            let subject = String(decoding: try reader.bytes(Int(try reader.u64())), as: UTF8.self)
            let data = try reader.bytes(Int(try reader.u64()))
            try body(Entry(offset: offset, event: event, subject: subject, body: data))
        }
    }

    /// Forgets every entry (the file is truncated, not removed).
    func reset() {
        memory.removeAll(keepingCapacity: memory.count < 100_000)
        memoryBytes = 0
        fileBuffer.removeAll(keepingCapacity: false)
        if fileEntries > 0, let file {
            try? file.truncate(atOffset: 0)
            try? file.seek(toOffset: 0)
        }
        fileEntries = 0
    }

    private func flushBuffer() throws {
        guard !fileBuffer.isEmpty, let file else { return }
        try file.seekToEnd()
        try file.write(contentsOf: Data(fileBuffer))
        fileBuffer.removeAll(keepingCapacity: true)
    }

    private static func put(_ value: UInt64, into bytes: inout [UInt8]) {
        withUnsafeBytes(of: value.littleEndian) { bytes.append(contentsOf: $0) }
    }

    /// Reads the spool file back in 1 MB chunks.
    private struct Reader {
        let file: FileHandle
        var buffer: [UInt8] = []
        var position = 0

        init(file: FileHandle) { self.file = file }

        mutating func fill(_ count: Int) throws {
            while buffer.count - position < count {
                if position > 0 {
                    buffer.removeFirst(position)
                    position = 0
                }
                guard let data = try file.read(upToCount: max(1 << 20, count - buffer.count)), !data.isEmpty else {
                    throw CocoaError(.fileReadCorruptFile)
                }
                buffer.append(contentsOf: data)
            }
        }

        mutating func bytes(_ count: Int) throws -> [UInt8] {
            try fill(count)
            defer { position += count }
            return Array(buffer[position..<(position + count)])
        }

        mutating func u64() throws -> UInt64 {
            let raw = try bytes(8)
            return raw.withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self)) }
        }
    }
}

import Foundation
import SluiceKit

/// The messages of transactions PostgreSQL streams while they run (pgoutput protocol 2, `streaming
/// 'on'`), kept on local disk until their Stream Commit or Stream Abort.
///
/// One file per top-level transaction in `directory` (`<xid>.stage`), appended to through a buffer
/// of `bufferBytes`, so memory stays at one buffer per open transaction however large the
/// transactions are. Each entry is one raw pgoutput message:
///
///     u32 message length | u32 subtransaction xid (0: kept whatever aborts) | u64 LSN | message
///
/// Nothing here is durable, and nothing needs to be: the slot is confirmed only past what the topic
/// holds, so after a crash or a reconnect the walsender streams every transaction the topic lacks
/// again from its first change. A new store therefore starts empty: `init` deletes whatever a
/// previous run left.
final class StagedTransactions {
    /// One transaction's file and the subtransactions of it that aborted.
    private final class Staged {
        let path: String
        let fd: Int32
        var buffer: [UInt8] = []
        var aborted: Set<UInt32> = []
        var bytes: UInt64 = 0
        var messages = 0

        init(path: String, fd: Int32) {
            self.path = path
            self.fd = fd
        }
    }

    static let headerBytes = 16

    let directory: String
    let bufferBytes: Int
    private var staged: [UInt32: Staged] = [:]

    init(directory: String, bufferBytes: Int = 256 << 10) throws {
        precondition(bufferBytes >= Self.headerBytes)
        self.directory = directory
        self.bufferBytes = bufferBytes
        let files = FileManager.default
        if files.fileExists(atPath: directory) { try files.removeItem(atPath: directory) }
        try files.createDirectory(atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
    }

    deinit { discardAll() }

    /// Transactions staged and not yet committed or aborted.
    var transactions: [UInt32] { staged.keys.sorted() }
    /// Bytes staged on disk or in buffers, over every open transaction.
    var stagedBytes: UInt64 { staged.values.reduce(0) { $0 + $1.bytes } }

    func contains(_ xid: UInt32) -> Bool { staged[xid] != nil }

    /// The number of messages staged for `xid`.
    func messageCount(_ xid: UInt32) -> Int { staged[xid]?.messages ?? 0 }

    /// Starts staging `xid` (its first streamed block); anything staged for it before is dropped.
    func begin(xid: UInt32) throws {
        discard(xid: xid)
        let path = directory + "/\(xid).stage"
        let fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw failure("cannot create", path) }
        staged[xid] = Staged(path: path, fd: fd)
    }

    /// Appends one message of `xid`, made by `subtransaction` (0: schema, never dropped).
    func append(xid: UInt32, subtransaction: UInt32, lsn: UInt64, message: UnsafeRawBufferPointer) throws {
        guard let file = staged[xid] else { preconditionFailure("append to transaction \(xid), which is not staged") }
        if file.buffer.count + Self.headerBytes + message.count > bufferBytes { try flush(file) }
        file.buffer.appendBigEndian(UInt32(message.count))
        file.buffer.appendBigEndian(subtransaction)
        file.buffer.appendBigEndian(lsn)
        if message.count > bufferBytes - Self.headerBytes {
            // Larger than the buffer: written straight from the receive buffer.
            try flush(file)
            try write(file, message)
        } else {
            file.buffer.append(contentsOf: message)
        }
        file.bytes += UInt64(Self.headerBytes + message.count)
        file.messages += 1
    }

    /// Stream Abort: `subtransaction == xid` drops the whole transaction, any other drops the
    /// changes that subtransaction made.
    func abort(xid: UInt32, subtransaction: UInt32) {
        if subtransaction == xid {
            discard(xid: xid)
        } else {
            staged[xid]?.aborted.insert(subtransaction)
        }
    }

    /// Hands every message of `xid` that no abort dropped to `body` in the order staged (the bytes are
    /// valid only inside `body`), then deletes the transaction's file.
    func replay(xid: UInt32, _ body: (_ lsn: UInt64, _ message: UnsafeRawBufferPointer) throws -> Void) throws {
        guard let file = staged[xid] else { preconditionFailure("replay of transaction \(xid), which is not staged") }
        defer { discard(xid: xid) }
        try flush(file)
        guard lseek(file.fd, 0, SEEK_SET) == 0 else { throw failure("cannot rewind", file.path) }
        var capacity = max(1 << 20, bufferBytes)
        var storage = UnsafeMutableRawBufferPointer.allocate(byteCount: capacity, alignment: 8)
        defer { storage.deallocate() }
        var start = 0
        var end = 0
        var seen = 0
        while seen < file.messages {
            if end - start < Self.headerBytes {
                (start, end) = try refill(file, storage, start: start, end: end)
                continue
            }
            let length = Int(storage.loadBigEndianUInt32(at: start))
            let subtransaction = storage.loadBigEndianUInt32(at: start + 4)
            let lsn = UInt64(storage.loadBigEndianUInt32(at: start + 8)) << 32 | UInt64(storage.loadBigEndianUInt32(at: start + 12))
            let total = Self.headerBytes + length
            if end - start < total {
                if total > capacity {
                    // One message larger than the read buffer: the buffer grows to hold it.
                    capacity = total
                    let larger = UnsafeMutableRawBufferPointer.allocate(byteCount: capacity, alignment: 8)
                    larger.copyMemory(from: UnsafeRawBufferPointer(rebasing: storage[start..<end]))
                    storage.deallocate()
                    storage = larger
                    (start, end) = (0, end - start)
                }
                (start, end) = try refill(file, storage, start: start, end: end)
                continue
            }
            seen += 1
            let message = UnsafeRawBufferPointer(rebasing: storage[(start + Self.headerBytes)..<(start + total)])
            start += total
            if subtransaction != 0 && file.aborted.contains(subtransaction) { continue }
            try body(lsn, message)
        }
    }

    /// Forgets `xid` and deletes its file.
    func discard(xid: UInt32) {
        guard let file = staged.removeValue(forKey: xid) else { return }
        close(file.fd)
        unlink(file.path)
    }

    func discardAll() {
        for xid in Array(staged.keys) { discard(xid: xid) }
    }

    // MARK: I/O

    private func flush(_ file: Staged) throws {
        guard !file.buffer.isEmpty else { return }
        try file.buffer.withUnsafeBytes { try write(file, $0) }
        file.buffer.removeAll(keepingCapacity: true)
    }

    private func write(_ file: Staged, _ bytes: UnsafeRawBufferPointer) throws {
        var done = 0
        while done < bytes.count {
            let wrote = Glibc.write(file.fd, bytes.baseAddress! + done, bytes.count - done)
            if wrote < 0 && errno == EINTR { continue }
            guard wrote > 0 else {
                if errno == ENOSPC || errno == EDQUOT { throw TopicStorageFull(path: file.path) }
                throw failure("cannot write", file.path)
            }
            done += wrote
        }
    }

    /// Moves the unread bytes to the front of `storage` and reads more after them.
    private func refill(_ file: Staged, _ storage: UnsafeMutableRawBufferPointer, start: Int, end: Int) throws -> (Int, Int) {
        let kept = end - start
        if start > 0 && kept > 0 { memmove(storage.baseAddress!, storage.baseAddress! + start, kept) }
        var got = 0
        repeat {
            got = read(file.fd, storage.baseAddress! + kept, storage.count - kept)
        } while got < 0 && errno == EINTR
        guard got > 0 else {
            throw got == 0 ? ConnectorError.fatal("staged transaction file \(file.path) ends early: \(kept) bytes of an entry")
                : failure("cannot read", file.path)
        }
        return (0, kept + got)
    }

    private func failure(_ what: String, _ path: String) -> ConnectorError {
        ConnectorError.transient("\(what) \(path): \(String(cString: strerror(errno)))")
    }
}

private extension Array where Element == UInt8 {
    mutating func appendBigEndian<T: FixedWidthInteger>(_ value: T) {
        Swift.withUnsafeBytes(of: value.bigEndian) { append(contentsOf: $0) }
    }
}

private extension UnsafeMutableRawBufferPointer {
    func loadBigEndianUInt32(at offset: Int) -> UInt32 {
        UInt32(bigEndian: loadUnaligned(fromByteOffset: offset, as: UInt32.self))
    }
}

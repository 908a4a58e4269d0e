#if canImport(Glibc)
import Glibc
#endif
import Logging
import SluiceKit

/// What recovery leaves for the writer: the active segment and the last commit marker.
struct RecoveredState {
    var activeBase: UInt64
    /// Bytes of the active segment, ending just after its last commit marker.
    var activeSize: UInt64
    var nextOffset: UInt64
    var lastCommit: CommittedPosition?
    var index: [(offset: UInt64, position: UInt64)]
}

/// Brings a topic directory to a clean state before writing: trusts nothing it did not verify.
///
/// From the newest segment backwards, finds the last valid commit marker; truncates whatever follows
/// it (a torn record, a transaction without its commit marker) and deletes newer segments that hold
/// no commit marker. Logs what it dropped.
enum Recovery {
    static func recover(directory: String, logger: Logger) throws -> RecoveredState {
        var bases = SegmentFile.list(directory)
        if bases.isEmpty {
            try createSegment(directory: directory, base: 0)
            return RecoveredState(activeBase: 0, activeSize: UInt64(SegmentFile.headerSize), nextOffset: 0,
                                  lastCommit: nil, index: [])
        }
        while let base = bases.last {
            let path = directory + "/" + SegmentFile.name(base: base, suffix: "log")
            let scan = try scanSegment(path: path, base: base)
            let isOnly = bases.count == 1
            if scan.lastCommit == nil && !isOnly {
                if scan.records > 0 || scan.fileSize > UInt64(SegmentFile.headerSize) {
                    logger.warning("topic recovery: deleted segment without a commit marker",
                                   metadata: ["segment": "\(path)", "records": "\(scan.records)",
                                              "bytes": "\(scan.fileSize)"])
                }
                unlink(path)
                unlink(directory + "/" + SegmentFile.name(base: base, suffix: "idx"))
                bases.removeLast()
                continue
            }
            let keep = scan.commitEnd
            if scan.fileSize > keep {
                let dropped = scan.records - scan.recordsThroughCommit
                logger.warning("topic recovery: truncated records after the last commit marker",
                               metadata: ["segment": "\(path)", "records": "\(dropped)",
                                          "bytes": "\(scan.fileSize - keep)",
                                          "reason": "\(scan.stopReason ?? "transaction without commit marker")"])
                guard truncate(path, off_t(keep)) == 0 else { throw LogError.errno("cannot truncate", path) }
            }
            let fd = open(path, O_RDWR | O_CLOEXEC)
            if fd >= 0 { fdatasync(fd); close(fd) }
            let index = scan.index.filter { $0.position < keep }
            writeIndex(directory: directory, base: base, entries: index)
            SegmentFile.syncDirectory(directory)
            return RecoveredState(activeBase: base, activeSize: keep,
                                  nextOffset: scan.lastCommit.map { $0.offset + 1 } ?? base,
                                  lastCommit: scan.lastCommit, index: index)
        }
        preconditionFailure("unreachable: the only segment is always kept")
    }

    struct SegmentScan {
        var fileSize: UInt64 = 0
        var records: UInt64 = 0
        var recordsThroughCommit: UInt64 = 0
        var lastCommit: CommittedPosition?
        var commitEnd = UInt64(SegmentFile.headerSize)
        var stopReason: String?
        var index: [(offset: UInt64, position: UInt64)] = []
    }

    static func scanSegment(path: String, base: UInt64) throws -> SegmentScan {
        var scan = SegmentScan()
        scan.fileSize = SegmentFile.size(path: path)
        if scan.fileSize < UInt64(SegmentFile.headerSize) {
            // Created but never written whole (a crash while creating it): start it again.
            scan.stopReason = "segment header torn"
            try createSegment(directory: String(path.prefix(upTo: path.lastIndex(of: "/")!)), base: base)
            scan.fileSize = UInt64(SegmentFile.headerSize)
            return scan
        }
        // Any other header problem (another format version, corruption) is refused, never "repaired".
        let reader = try SegmentReader(path: path, base: base)
        var expected = base
        var lastIndexed: UInt64 = 0
        scanning: while true {
            switch try reader.next() {
            case let .frame(kind, offset, body, position, length):
                guard offset == expected else {
                    scan.stopReason = "offset \(offset) where \(expected) was expected"
                    break scanning
                }
                expected += 1
                scan.records += 1
                if position - lastIndexed >= SegmentIndex.interval || scan.index.isEmpty {
                    scan.index.append((offset, position))
                    lastIndexed = position
                }
                if kind == RecordKind.commit.rawValue {
                    guard case let .commit(commit) = try TopicRecord.decode(kind: kind, storage: reader.buffer, body: body)
                    else { break scanning }
                    scan.lastCommit = CommittedPosition(offset: offset, commit: commit)
                    scan.commitEnd = position + UInt64(length)
                    scan.recordsThroughCommit = scan.records
                }
            case .end:
                break scanning
            case let .invalid(position, reason):
                scan.stopReason = "\(reason) at byte \(position)"
                break scanning
            }
        }
        return scan
    }

    static func createSegment(directory: String, base: UInt64) throws {
        let path = directory + "/" + SegmentFile.name(base: base, suffix: "log")
        let fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw LogError.io("cannot create", path) }
        defer { close(fd) }
        do {
            try SegmentFile.header(base: base).withUnsafeBytes { try SegmentFile.writeAll(fd, $0, path: path) }
        } catch {
            // A segment without its whole header is not left behind for recovery to puzzle over.
            unlink(path)
            throw error
        }
        fdatasync(fd)
        SegmentFile.syncDirectory(directory)
    }

    static func writeIndex(directory: String, base: UInt64, entries: [(offset: UInt64, position: UInt64)]) {
        let path = directory + "/" + SegmentFile.name(base: base, suffix: "idx")
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { return }
        defer { close(fd) }
        _ = SegmentIndex.encode(entries[...]).withUnsafeBytes { try? SegmentFile.writeAll(fd, $0, path: path) }
    }
}

import CSluiceSupport
import Foundation
import SluiceKit
@testable import SluiceLog
import XCTest

final class FrameTests: XCTestCase {
    /// A sealed frame of `body` (header zeroes, then the body, then `Frame.seal`).
    private func frame(kind: UInt8 = RecordKind.change.rawValue, offset: UInt64 = 0x0102_0304_0506_0708,
                       body: [UInt8] = Array("hello, frame".utf8)) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: Frame.headerSize) + body
        Frame.seal(&bytes, at: 0, kind: kind, offset: offset)
        return bytes
    }

    private func check(_ bytes: [UInt8]) -> Frame.Check {
        bytes.withUnsafeBytes { Frame.check($0) }
    }

    private func recomputeCRC(_ bytes: inout [UInt8]) {
        let size = Int(Files.u32(bytes, 0))
        let crc = bytes.withUnsafeBytes { sluice_crc32c(0, $0.baseAddress! + 8, size - 4) }
        bytes[4] = UInt8(crc >> 24); bytes[5] = UInt8(crc >> 16 & 0xFF)
        bytes[6] = UInt8(crc >> 8 & 0xFF); bytes[7] = UInt8(crc & 0xFF)
    }

    func testCRC32CKnownAnswer() {
        let input = Array("123456789".utf8)
        let crc = input.withUnsafeBytes { sluice_crc32c(0, $0.baseAddress!, 9) }
        XCTAssertEqual(crc, 0xE306_9283)
        XCTAssertEqual(ReferenceCRC32C.checksum(input), 0xE306_9283, "the test's own reference agrees")
        // Empty input leaves the seed unchanged.
        XCTAssertEqual(input.withUnsafeBytes { sluice_crc32c(0, $0.baseAddress!, 0) }, 0)
        // 32 bytes of zeroes: the iSCSI (RFC 3720 B.4) test vector.
        let zeroes = [UInt8](repeating: 0, count: 32)
        XCTAssertEqual(zeroes.withUnsafeBytes { sluice_crc32c(0, $0.baseAddress!, 32) }, 0x8A91_36AA)
        let ones = [UInt8](repeating: 0xFF, count: 32)
        XCTAssertEqual(ones.withUnsafeBytes { sluice_crc32c(0, $0.baseAddress!, 32) }, 0x62A8_AB43)
    }

    func testCRC32CContinuesFromAPreviousValue() {
        let input = Array("123456789".utf8)
        let first = input.withUnsafeBytes { sluice_crc32c(0, $0.baseAddress!, 4) }
        let whole = input.withUnsafeBytes { sluice_crc32c(first, $0.baseAddress! + 4, 5) }
        XCTAssertEqual(whole, 0xE306_9283)
    }

    /// The hardware path (SSE4.2, 8 bytes at a time) agrees with the bitwise reference for every
    /// length and alignment around the 8-byte boundary.
    func testCRC32CMatchesReferenceForManyLengthsAndAlignments() {
        var generator = SystemRandomNumberGenerator()
        let data = (0..<600).map { _ in UInt8.random(in: 0...255, using: &generator) }
        for start in 0..<9 {
            for length in [0, 1, 2, 3, 7, 8, 9, 15, 16, 17, 63, 64, 65, 255, 256, 511, 590] {
                let got = data.withUnsafeBytes { sluice_crc32c(0, $0.baseAddress! + start, length) }
                XCTAssertEqual(got, ReferenceCRC32C.checksum(data[start..<(start + length)]),
                               "start \(start) length \(length)")
            }
        }
    }

    func testSealedFrameLayoutIsBigEndian() {
        let body = Array("hello, frame".utf8)
        let bytes = frame(kind: 3, offset: 0x0102_0304_0506_0708, body: body)
        XCTAssertEqual(bytes.count, 18 + body.count)
        XCTAssertEqual(Array(bytes[0..<4]), [0, 0, 0, UInt8(14 + body.count)], "size counts the bytes after itself")
        XCTAssertEqual(bytes[8], 1, "record format version")
        XCTAssertEqual(bytes[9], 3, "kind")
        XCTAssertEqual(Array(bytes[10..<18]), [1, 2, 3, 4, 5, 6, 7, 8], "offset, big-endian")
        XCTAssertEqual(Array(bytes[18...]), body)
        XCTAssertEqual(Files.u32(bytes, 4), ReferenceCRC32C.checksum(bytes[8...]),
                       "the CRC covers version, kind, offset and body; not size, not itself")
    }

    func testCheckAcceptsAValidFrame() {
        let bytes = frame(kind: 4, offset: 77)
        guard case let .valid(kind, offset, length) = check(bytes) else {
            return XCTFail("\(check(bytes))")
        }
        XCTAssertEqual(kind, 4)
        XCTAssertEqual(offset, 77)
        XCTAssertEqual(length, bytes.count)
        // Trailing bytes of the next frame do not matter.
        guard case .valid(_, _, bytes.count) = check(bytes + [9, 9, 9, 9, 9]) else { return XCTFail() }
        // An empty body is a valid frame too.
        guard case .valid(_, 5, 18) = check(frame(offset: 5, body: [])) else { return XCTFail() }
    }

    func testCheckRejectsWrongChecksum() {
        var bytes = frame()
        bytes[bytes.count - 1] ^= 0x01   // a body bit
        guard case let .invalid(reason) = check(bytes) else { return XCTFail("\(check(bytes))") }
        XCTAssertTrue(reason.contains("checksum"), reason)

        var offsetFlip = frame()
        offsetFlip[17] ^= 0x80           // the offset is covered by the CRC
        guard case .invalid = check(offsetFlip) else { return XCTFail() }

        var kindFlip = frame()
        kindFlip[9] = 1                  // so is the kind
        guard case .invalid = check(kindFlip) else { return XCTFail() }

        var crcFlip = frame()
        crcFlip[4] ^= 0x10
        guard case .invalid = check(crcFlip) else { return XCTFail() }
    }

    func testCheckRejectsBadVersionEvenWithAMatchingChecksum() {
        var bytes = frame()
        bytes[8] = 2
        recomputeCRC(&bytes)
        guard case let .invalid(reason) = check(bytes) else { return XCTFail("\(check(bytes))") }
        XCTAssertTrue(reason.contains("version 2"), reason)
        bytes[8] = 0
        recomputeCRC(&bytes)
        guard case .invalid = check(bytes) else { return XCTFail() }
    }

    func testCheckRejectsSizeTooSmallOrTooLarge() {
        for size: UInt32 in [0, 1, 13] {
            var bytes = frame()
            bytes[0] = UInt8(size >> 24); bytes[1] = UInt8(size >> 16 & 0xFF)
            bytes[2] = UInt8(size >> 8 & 0xFF); bytes[3] = UInt8(size & 0xFF)
            guard case let .invalid(reason) = check(bytes) else { return XCTFail("size \(size): \(check(bytes))") }
            XCTAssertTrue(reason.contains("frame size \(size)"), reason)
        }
        // 0xFFFFFFFF is above the largest body plus overhead.
        let huge: [UInt8] = [0xFF, 0xFF, 0xFF, 0xFF] + [UInt8](repeating: 0, count: 40)
        guard case .invalid = check(huge) else { return XCTFail("\(check(huge))") }
        // The largest acceptable size still only asks for more bytes.
        let maxSize = UInt32(Frame.maxBodySize + Frame.overhead)
        let atLimit: [UInt8] = [UInt8(maxSize >> 24), UInt8(maxSize >> 16 & 0xFF), UInt8(maxSize >> 8 & 0xFF),
                                UInt8(maxSize & 0xFF)] + [UInt8](repeating: 0, count: 40)
        guard case .incomplete(length: Int(maxSize) + 4) = check(atLimit) else { return XCTFail("\(check(atLimit))") }
        let overLimit = maxSize + 1
        let tooBig: [UInt8] = [UInt8(overLimit >> 24), UInt8(overLimit >> 16 & 0xFF), UInt8(overLimit >> 8 & 0xFF),
                               UInt8(overLimit & 0xFF)] + [UInt8](repeating: 0, count: 40)
        guard case .invalid = check(tooBig) else { return XCTFail("\(check(tooBig))") }
    }

    func testCheckReportsIncompleteFrames() {
        let bytes = frame()
        guard case .incomplete(length: nil) = check(Array(bytes[0..<3])) else { return XCTFail() }
        guard case .incomplete(length: nil) = check([]) else { return XCTFail() }
        for cut in [4, 10, 18, bytes.count - 1] {
            guard case .incomplete(length: bytes.count) = check(Array(bytes[0..<cut])) else {
                return XCTFail("cut at \(cut): \(check(Array(bytes[0..<cut])))")
            }
        }
    }

    func testFrameConstants() {
        XCTAssertEqual(Frame.headerSize, 18)
        XCTAssertEqual(Frame.overhead, 14)
        XCTAssertEqual(Frame.version, 1)
        XCTAssertEqual(Frame.maxBodySize, (1 << 31) - 64)
    }

    // MARK: Segment files and the sparse index

    func testSegmentNameAndHeader() {
        XCTAssertEqual(SegmentFile.name(base: 0, suffix: "log"), "00000000000000000000.log")
        XCTAssertEqual(SegmentFile.name(base: 1234, suffix: "idx"), "00000000000000001234.idx")
        XCTAssertEqual(SegmentFile.name(base: UInt64.max, suffix: "log"), "18446744073709551615.log")
        let header = SegmentFile.header(base: 0x0A0B_0C0D_0E0F_1011)
        XCTAssertEqual(header.count, 20)
        XCTAssertEqual(Array(header[0..<8]), Array("SLUICELG".utf8))
        XCTAssertEqual(Array(header[8..<12]), [0, 0, 0, 1])
        XCTAssertEqual(Array(header[12..<20]), [0x0A, 0x0B, 0x0C, 0x0D, 0x0E, 0x0F, 0x10, 0x11])
    }

    func testSegmentListingIgnoresOtherFiles() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-logtests-\(UUID())").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        for name in ["00000000000000000042.log", "00000000000000000007.log", "00000000000000000007.idx",
                     "0000000000000000007.log", "000000000000000000070.log", "abcdefghijklmnopqrst.log",
                     "00000000000000000009.log.tmp", "notes.txt"] {
            _ = FileManager.default.createFile(atPath: dir + "/" + name, contents: Data())
        }
        XCTAssertEqual(SegmentFile.list(dir), [7, 42])
        XCTAssertEqual(SegmentFile.list(dir + "/missing"), [])
    }

    func testIndexEncodingAndFloor() throws {
        let entries: [(offset: UInt64, position: UInt64)] = [(10, 20), (50, 70_000), (90, 140_000)]
        let bytes = SegmentIndex.encode(entries[...])
        XCTAssertEqual(bytes.count, 48)
        XCTAssertEqual(Array(bytes[0..<16]), [0, 0, 0, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0, 0, 0, 20])

        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-logtests-\(UUID())").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // A torn last entry (5 bytes) is ignored.
        try Files.write(bytes + [1, 2, 3, 4, 5], to: dir + "/a.idx")
        let index = SegmentIndex.load(dir + "/a.idx")
        XCTAssertEqual(index.entries.map(\.offset), [10, 50, 90])
        XCTAssertNil(index.floor(9))
        XCTAssertEqual(index.floor(10)?.position, 20)
        XCTAssertEqual(index.floor(49)?.position, 20)
        XCTAssertEqual(index.floor(50)?.position, 70_000)
        XCTAssertEqual(index.floor(1_000)?.position, 140_000)

        // Loading stops at the first entry that does not increase in both offset and position.
        let disordered = SegmentIndex.encode([(10, 20), (50, 70_000), (40, 90_000), (90, 140_000)][...])
        try Files.write(disordered, to: dir + "/b.idx")
        XCTAssertEqual(SegmentIndex.load(dir + "/b.idx").entries.map(\.offset), [10, 50])
        XCTAssertTrue(SegmentIndex.load(dir + "/missing.idx").entries.isEmpty)
    }
}

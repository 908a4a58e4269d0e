import PGOutput
import XCTest

/// The header a streaming client reads to stage a message without decoding it, and the decoder
/// that decodes staged messages later, outside the stream block they came in.
final class StreamedChangeTests: XCTestCase {
    /// Inside every stream block of both streaming fixtures, the peeked xid is the decoded message's,
    /// and outside them peeking finds nothing to stage.
    func testPeekAgreesWithTheDecoderInAndOutOfStreamBlocks() throws {
        var staged = 0
        for name in ["stream_commit", "stream_abort"] {
            var decoder = PGOutputDecoder()
            for (line, bytes) in try FixtureFile.named(name).messages {
                let inBlock = decoder.inStream
                let peeked = try StreamedChange.peek(bytes)
                let message = try decoder.decode(bytes)
                if inBlock, let xid = message.changeXid {
                    XCTAssertEqual(peeked, StreamedChange(tag: bytes[0], xid: xid), "\(name).hex:\(line)")
                    XCTAssertEqual(peeked?.isSchema, message.tag == "R" || message.tag == "Y", "\(name).hex:\(line)")
                    staged += 1
                } else if !inBlock {
                    XCTAssertTrue("ScAE".contains(message.tag), "\(name).hex:\(line): \(message.tag) outside a block")
                    XCTAssertNil(peeked, "\(name).hex:\(line): stream control is never staged")
                }
            }
        }
        XCTAssertGreaterThan(staged, 50)
    }

    /// A staged message decoded by a decoder created inside a block equals the one decoded live.
    func testStagedMessagesDecodeTheSameLater() throws {
        var live = PGOutputDecoder()
        var later = PGOutputDecoder(inStream: true)
        XCTAssertTrue(later.inStream)
        var compared = 0
        for (line, bytes) in try FixtureFile.named("stream_abort").messages {
            let inBlock = live.inStream
            let message = try live.decode(bytes)
            guard inBlock, try StreamedChange.peek(bytes) != nil else { continue }
            XCTAssertEqual(try later.decode(bytes), message, "stream_abort.hex:\(line)")
            compared += 1
        }
        XCTAssertGreaterThan(compared, 10)
        XCTAssertTrue(later.inStream, "staged messages never include Stream Stop")
    }

    func testPeekReadsTheTypeAndXidAndRejectsTruncatedHeaders() throws {
        let insert: [UInt8] = [UInt8(ascii: "I"), 0, 0, 0x02, 0xE5, 0, 0, 0x40, 0]
        XCTAssertEqual(try insert.withUnsafeBytes { try StreamedChange.peek($0) }, StreamedChange(tag: UInt8(ascii: "I"), xid: 741))
        let relation: [UInt8] = [UInt8(ascii: "R"), 0, 0, 0, 9]
        XCTAssertEqual(try relation.withUnsafeBytes { try StreamedChange.peek($0) }?.isSchema, true)
        let stop: [UInt8] = [UInt8(ascii: "E")]
        XCTAssertNil(try stop.withUnsafeBytes { try StreamedChange.peek($0) })
        let begin: [UInt8] = [UInt8(ascii: "B")] + Array(repeating: 0, count: 20)
        XCTAssertNil(try begin.withUnsafeBytes { try StreamedChange.peek($0) })

        let truncated: [UInt8] = [UInt8(ascii: "U"), 0, 0]
        XCTAssertThrowsError(try truncated.withUnsafeBytes { try StreamedChange.peek($0) }) { error in
            guard let error = error as? PGOutputError, case let .truncated(what, needed, available) = error.kind else {
                return XCTFail("\(error)")
            }
            XCTAssertEqual(what, "xid")
            XCTAssertEqual(needed, 4)
            XCTAssertEqual(available, 2)
            XCTAssertEqual(error.offset, 1)
        }
        XCTAssertThrowsError(try [UInt8]().withUnsafeBytes { try StreamedChange.peek($0) }) { error in
            XCTAssertEqual((error as? PGOutputError)?.kind, .empty)
        }
    }
}

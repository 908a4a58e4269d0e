import PGOutput
import XCTest

/// The streaming replication protocol around pgoutput: XLogData ('w') and keepalive ('k') frames
/// from the server, the standby status update ('r') to it, and LSN text.
final class ReplicationFramingTests: XCTestCase {
    private func frame(_ tag: Character, _ parts: [UInt8]...) -> [UInt8] {
        [tag.asciiValue!] + parts.flatMap { $0 }
    }

    // MARK: - XLogData

    func testXLogDataFrameWithFixturePayload() throws {
        let fixture = try FixtureFile.named("crud")
        let begin = Array(fixture.messages[0].bytes)
        let walStart: UInt64 = 0x0000_0001_6B37_4D48
        let walEnd: UInt64 = 0x0000_0001_6B37_4E00
        let sendTime = pgMicros(unixSeconds: 1_704_164_645) + 123_456
        let bytes = frame("w", be(walStart), be(walEnd), be(sendTime), begin)
        XCTAssertEqual(bytes.count, 25 + begin.count)

        try bytes.withUnsafeBytes { buffer in
            guard case let .xLogData(start, end, time, payload) = try ReplicationMessage.decode(buffer) else {
                return XCTFail("not XLogData")
            }
            XCTAssertEqual(start, walStart)
            XCTAssertEqual(end, walEnd)
            XCTAssertEqual(time, sendTime)
            XCTAssertEqual(time + postgresEpochOffsetMicros, 1_704_164_645_123_456)
            XCTAssertEqual(Array(payload), begin)
            // The payload is a view into the frame, right after the 25-byte header.
            XCTAssertEqual(payload.baseAddress, buffer.baseAddress! + 25)

            var decoder = PGOutputDecoder()
            let message = try decoder.decode(payload)
            let decodedBegin = try XCTUnwrap(message.begin)
            XCTAssertGreaterThan(decodedBegin.finalLSN, 0)
            XCTAssertNotEqual(decodedBegin.xid, 0)
        }
    }

    func testXLogDataFrameFieldsAreBigEndian() throws {
        let bytes: [UInt8] = [UInt8(ascii: "w"),
                              0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08,
                              0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18,
                              0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFE,
                              0xAA, 0xBB]
        try bytes.withUnsafeBytes { buffer in
            guard case let .xLogData(start, end, time, payload) = try ReplicationMessage.decode(buffer) else {
                return XCTFail("not XLogData")
            }
            XCTAssertEqual(start, 0x0102_0304_0506_0708)
            XCTAssertEqual(end, 0x1112_1314_1516_1718)
            XCTAssertEqual(time, -2)
            XCTAssertEqual(Array(payload), [0xAA, 0xBB])
        }
    }

    func testXLogDataWithEmptyPayload() throws {
        let bytes = frame("w", be(UInt64(1)), be(UInt64(2)), be(Int64(3)))
        try bytes.withUnsafeBytes { buffer in
            guard case let .xLogData(_, _, _, payload) = try ReplicationMessage.decode(buffer) else {
                return XCTFail("not XLogData")
            }
            XCTAssertEqual(payload.count, 0)
            // An empty payload is then an empty pgoutput message.
            var decoder = PGOutputDecoder()
            XCTAssertThrowsError(try decoder.decode(payload)) { error in
                XCTAssertEqual(error as? PGOutputError, PGOutputError(.empty, at: 0))
            }
        }
    }

    // MARK: - Keepalive

    func testKeepaliveFrames() throws {
        for (flag, expected) in [(UInt8(1), true), (0, false)] {
            let bytes = frame("k", be(UInt64(0x16_B374_D848)), be(Int64(757_479_845_000_001)), [flag])
            XCTAssertEqual(bytes.count, 18)
            try bytes.withUnsafeBytes { buffer in
                guard case let .keepalive(walEnd, sendTime, replyRequested) = try ReplicationMessage.decode(buffer) else {
                    return XCTFail("not a keepalive")
                }
                XCTAssertEqual(walEnd, 0x16_B374_D848)
                XCTAssertEqual(formatLSN(walEnd), "16/B374D848")
                XCTAssertEqual(sendTime, 757_479_845_000_001)
                XCTAssertEqual(replyRequested, expected)
            }
        }
    }

    // MARK: - Malformed frames

    func testTruncatedFramesThrow() {
        let frames = [
            frame("w", be(UInt64(1)), be(UInt64(2)), be(Int64(3))),
            frame("k", be(UInt64(1)), be(Int64(2)), [1]),
        ]
        for whole in frames {
            XCTAssertNoThrow(try whole.withUnsafeBytes { try ReplicationMessage.decode($0) })
            for length in 0..<whole.count {
                XCTAssertThrowsError(try Array(whole[..<length]).withUnsafeBytes { try ReplicationMessage.decode($0) }) { error in
                    guard let error = error as? PGOutputError else { return XCTFail("\(error)") }
                    XCTAssertTrue((0...length).contains(error.offset), "cut at \(length): \(error)")
                    if length == 0 {
                        XCTAssertEqual(error.kind, .empty)
                    } else if case let .truncated(_, needed, available) = error.kind {
                        XCTAssertEqual(available, length - error.offset)
                        XCTAssertGreaterThan(needed, available)
                    } else {
                        XCTFail("cut at \(length): \(error)")
                    }
                }
            }
        }
    }

    func testUnknownFrameType() {
        for tag in ["r", "d", "W", "K", "\0"] {
            let bytes = Array(tag.utf8) + be(UInt64(0)) + be(UInt64(0)) + be(Int64(0))
            XCTAssertThrowsError(try bytes.withUnsafeBytes { try ReplicationMessage.decode($0) }) { error in
                XCTAssertEqual(error as? PGOutputError, PGOutputError(.unknownMessageType(bytes[0]), at: 0))
            }
        }
    }

    // MARK: - Standby status update

    func testStandbyStatusUpdateLayout() {
        let update = StandbyStatusUpdate(written: 0x0102_0304_0506_0708, flushed: 0x1112_1314_1516_1718,
                                         applied: 0x2122_2324_2526_2728, sendTime: 0x3132_3334_3536_3738,
                                         replyRequested: true)
        let bytes = update.bytes
        XCTAssertEqual(bytes.count, 34)
        XCTAssertEqual(bytes, [UInt8(ascii: "r"),
                               0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08,
                               0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18,
                               0x21, 0x22, 0x23, 0x24, 0x25, 0x26, 0x27, 0x28,
                               0x31, 0x32, 0x33, 0x34, 0x35, 0x36, 0x37, 0x38,
                               0x01])
    }

    func testStandbyStatusUpdateDefaultsAndNegativeTime() {
        let update = StandbyStatusUpdate(written: 0x16_B374_D848, flushed: 0x16_B374_D800, applied: 0, sendTime: -1)
        XCTAssertFalse(update.replyRequested)
        let bytes = update.bytes
        XCTAssertEqual(bytes.count, 34)
        XCTAssertEqual(bytes[0], UInt8(ascii: "r"))
        XCTAssertEqual(Array(bytes[1..<9]), be(UInt64(0x16_B374_D848)))
        XCTAssertEqual(Array(bytes[9..<17]), be(UInt64(0x16_B374_D800)))
        XCTAssertEqual(Array(bytes[17..<25]), Array(repeating: 0, count: 8))
        XCTAssertEqual(Array(bytes[25..<33]), Array(repeating: 0xFF, count: 8))
        XCTAssertEqual(bytes[33], 0)
        XCTAssertEqual(update, StandbyStatusUpdate(written: 0x16_B374_D848, flushed: 0x16_B374_D800, applied: 0,
                                                   sendTime: -1, replyRequested: false))
    }

    func testPostgresEpochOffset() {
        // 2000-01-01T00:00:00Z is 946684800 seconds after the Unix epoch.
        XCTAssertEqual(postgresEpochOffsetMicros, 946_684_800 * 1_000_000)
    }

    // MARK: - LSN text

    func testFormatLSN() {
        XCTAssertEqual(formatLSN(0), "0/0")
        XCTAssertEqual(formatLSN(0x16_B374_D848), "16/B374D848")
        XCTAssertEqual(formatLSN(0xABCDEF), "0/ABCDEF")
        XCTAssertEqual(formatLSN(0x1_0000_0000), "1/0")
        XCTAssertEqual(formatLSN(UInt64.max), "FFFFFFFF/FFFFFFFF")
    }

    func testParseLSN() {
        XCTAssertEqual(parseLSN("0/0"), 0)
        XCTAssertEqual(parseLSN("16/B374D848"), 0x16_B374_D848)
        XCTAssertEqual(parseLSN("16/b374d848"), 0x16_B374_D848, "PostgreSQL accepts lower case")
        XCTAssertEqual(parseLSN("0/ABCDEF"), 0xABCDEF)
        XCTAssertEqual(parseLSN("FFFFFFFF/FFFFFFFF"), UInt64.max)
        XCTAssertEqual(parseLSN("00000001/00000000"), 0x1_0000_0000)
        XCTAssertEqual(parseLSN("16/B374D848".dropFirst(0)), 0x16_B374_D848, "any StringProtocol")
        for bad in ["", "/", "0", "0/", "/0", "1/2/3", "G/0", "0/G", "1 /2", " 1/2", "1/2 ",
                    "100000000/0", "0/100000000", "1-2", "0x1/0", "1/0x2"] {
            XCTAssertNil(parseLSN(bad), "'\(bad)'")
        }
    }

    func testLSNRoundTrips() {
        var rng = SplitMix64(seed: 42)
        var values: [UInt64] = [0, 1, 0xFFFF_FFFF, 0x1_0000_0000, 0x16_B374_D848, UInt64.max, UInt64.max - 1]
        for _ in 0..<1000 { values.append(rng.next()) }
        for _ in 0..<1000 { values.append(rng.next() & 0xFFFF_FFFF) }
        for value in values {
            let text = formatLSN(value)
            XCTAssertEqual(parseLSN(text), value, text)
            XCTAssertEqual(parseLSN(text.lowercased()), value, text)
            XCTAssertEqual(formatLSN(parseLSN(text)!), text)
            XCTAssertFalse(text.contains { $0.isLowercase })
        }
        // Fixture positions survive the text round trip too.
        for text in ["0/1542310", "0/15422C8", "0/ABCDEF"] {
            XCTAssertEqual(parseLSN(text).map(formatLSN), text)
        }
    }
}

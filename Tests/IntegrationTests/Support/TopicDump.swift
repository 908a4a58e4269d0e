import Foundation
import XCTest

/// A topic as `sluice tail --from-beginning --json` prints it, parsed.
struct TopicDump {
    struct Transaction {
        var xid: Int
        var lsn: String
        var changes: [[String: Any]]
    }

    var records: [[String: Any]]
    var transactions: [Transaction] = []

    /// Parses the lines and checks the framing: every change sits between a begin and a commit with the
    /// same xid, the commit's event count matches, and offsets increase.
    init(json: String, file: StaticString = #filePath, line: UInt = #line) throws {
        records = try json.split(separator: "\n").map {
            guard let object = try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] else {
                throw TestFailure("not a JSON object: \($0)")
            }
            return object
        }
        var open: Transaction?
        var lastOffset = -1
        for record in records {
            let offset = record["offset"] as! Int
            XCTAssertGreaterThan(offset, lastOffset, "offsets increase", file: file, line: line)
            lastOffset = offset
            switch record["kind"] as! String {
            case "begin":
                XCTAssertNil(open, "begin inside an open transaction at offset \(offset)", file: file, line: line)
                open = Transaction(xid: record["xid"] as! Int, lsn: record["lsn"] as! String, changes: [])
            case "change":
                XCTAssertNotNil(open, "change outside a transaction at offset \(offset)", file: file, line: line)
                open?.changes.append(record)
            case "commit":
                guard let transaction = open else {
                    XCTFail("commit without begin at offset \(offset)", file: file, line: line)
                    continue
                }
                XCTAssertEqual(record["xid"] as? Int, transaction.xid, file: file, line: line)
                XCTAssertEqual(record["lsn"] as? String, transaction.lsn, file: file, line: line)
                XCTAssertEqual(record["events"] as? Int, transaction.changes.count, file: file, line: line)
                transactions.append(transaction)
                open = nil
            default:
                XCTFail("unexpected kind \(record["kind"] ?? "nil")", file: file, line: line)
            }
        }
        XCTAssertNil(open, "the dump ends inside a transaction", file: file, line: line)
    }

    static func read(topic: String, config: String, file: StaticString = #filePath, line: UInt = #line) throws -> TopicDump {
        let result = try sluice(["tail", topic, "--config", config, "--from-beginning", "--json"])
        XCTAssertEqual(result.status, 0, result.err, file: file, line: line)
        return try TopicDump(json: result.out, file: file, line: line)
    }
}

/// Compares LSNs printed as `X/Y`.
func lsnValue(_ text: String) -> UInt64 {
    let parts = text.split(separator: "/")
    return UInt64(parts[0], radix: 16)! << 32 | UInt64(parts[1], radix: 16)!
}

/// An LSN printed as `X/Y`.
func lsnText(_ value: UInt64) -> String { String(format: "%X/%X", value >> 32, value & 0xFFFF_FFFF) }

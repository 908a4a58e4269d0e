internal import CNATS
import Foundation

/// Message headers: ordered name/value pairs, names case-sensitive (as libnats 3 stores them), a
/// name may repeat. A value (Sendable, any thread); nothing here throws — libnats refuses a bad
/// header name when the message is published (a `NATSError` from `publish`).
public struct NATSHeaders: Sendable, Equatable, ExpressibleByDictionaryLiteral {
    public private(set) var fields: [(name: String, value: String)] = []

    public init() {}

    public init(dictionaryLiteral elements: (String, String)...) {
        fields = elements.map { (name: $0.0, value: $0.1) }
    }

    /// The first value of `name`; setting replaces every value of it (nil removes it).
    public subscript(name: String) -> String? {
        get { fields.first { $0.name == name }?.value }
        set {
            fields.removeAll { $0.name == name }
            if let newValue { fields.append((name: name, value: newValue)) }
        }
    }

    public func values(_ name: String) -> [String] { fields.filter { $0.name == name }.map(\.value) }

    public mutating func append(_ name: String, _ value: String) { fields.append((name: name, value: value)) }

    public var isEmpty: Bool { fields.isEmpty }

    public static func == (lhs: NATSHeaders, rhs: NATSHeaders) -> Bool {
        lhs.fields.elementsEqual(rhs.fields) { $0.name == $1.name && $0.value == $1.value }
    }

    /// The header names JetStream itself reads on publish.
    public static let messageID = "Nats-Msg-Id"
    public static let expectedLastSequence = "Nats-Expected-Last-Sequence"
    public static let expectedStream = "Nats-Expected-Stream"

    init(_ message: OpaquePointer) {
        var keys: UnsafeMutablePointer<UnsafePointer<CChar>?>?
        var count: Int32 = 0
        guard natsMsgHeader_Keys(message, &keys, &count) == NATS_OK, let keys else { return }
        defer { free(keys) }
        for index in 0..<Int(count) {
            guard let key = keys[index] else { continue }
            var values: UnsafeMutablePointer<UnsafePointer<CChar>?>?
            var valueCount: Int32 = 0
            guard natsMsgHeader_Values(message, key, &values, &valueCount) == NATS_OK, let values else { continue }
            defer { free(values) }
            let name = String(cString: key)
            for valueIndex in 0..<Int(valueCount) {
                fields.append((name: name, value: values[valueIndex].map { String(cString: $0) } ?? ""))
            }
        }
    }
}

/// One message read from a stream: its stream sequence, subject, body and headers, copied out of
/// libnats (a value, safe to keep and send anywhere).
public struct JetStreamMessage: Sendable, Equatable {
    /// The stream sequence: 1 for the first message ever stored, +1 per message, never reused.
    public var sequence: UInt64
    public var subject: String
    public var data: [UInt8]
    public var headers: NATSHeaders
    /// When the server stored it, nanoseconds since the Unix epoch (0 when not known).
    public var time: Int64

    public init(sequence: UInt64, subject: String, data: [UInt8], headers: NATSHeaders = NATSHeaders(), time: Int64 = 0) {
        self.sequence = sequence
        self.subject = subject
        self.data = data
        self.headers = headers
        self.time = time
    }

    init(_ message: OpaquePointer, sequence: UInt64, time: Int64) {
        self.sequence = sequence
        self.time = time
        subject = natsMsg_GetSubject(message).map { String(cString: $0) } ?? ""
        let length = Int(natsMsg_GetDataLength(message))
        if length > 0, let bytes = natsMsg_GetData(message) {
            data = [UInt8](UnsafeRawBufferPointer(start: bytes, count: length))
        } else {
            data = []
        }
        headers = NATSHeaders(message)
    }
}

/// A new libnats message with `headers` set; the caller owns (destroys or hands over) it.
func makeMessage(subject: String, data: [UInt8], headers: NATSHeaders) throws(NATSError) -> OpaquePointer {
    var pointer: OpaquePointer?
    // natsMsg_Create copies the bytes.
    let status = data.withUnsafeBufferPointer { bytes in
        bytes.withMemoryRebound(to: CChar.self) { natsMsg_Create(&pointer, subject, nil, $0.baseAddress, Int32($0.count)) }
    }
    try check(status, "cannot create a message on \(subject)")
    guard let message = pointer else { throw NATSError("cannot create a message on \(subject)", status: NATS_NO_MEMORY) }
    for field in headers.fields {
        let status = natsMsgHeader_Add(message, field.name, field.value)
        guard status == NATS_OK else {
            natsMsg_Destroy(message)
            throw NATSError.last(status, "cannot set header \(field.name)")
        }
    }
    return message
}

import Foundation
import SluiceKit
import SluiceNATS

/// Where the sink stands in its stream: what it published last, read back from the stream itself.
struct PublishState {
    var streamExists: Bool
    /// The stream's subject filters (empty while there is no stream).
    var streamSubjects: [String]
    /// Per topic, the last transaction whose commit marker is in the stream (or published in this batch).
    var positions: [String: SinkPosition]
    /// The stream sequence the next message gets: every message carries
    /// `Nats-Expected-Last-Sequence: nextSequence - 1`, so the stream only ever holds a prefix of what
    /// the sink sent, in order, with no gap.
    var nextSequence: UInt64
    /// The sequence of the newest commit marker (0: none yet).
    var lastMarkerSequence: UInt64
    /// Per topic: the last message of the transaction in the middle of which the previous run
    /// stopped; it and what came before it are in the stream already and are not published again.
    var skipThrough: [String: MessagePoint]

    static let empty = PublishState(streamExists: false, streamSubjects: [], positions: [:], nextSequence: 1,
                                    lastMarkerSequence: 0, skipThrough: [:])
}

/// A message's place in a topic: its change's offset, and for a change published as several
/// messages (a Debezium key change: delete, then create) its event number, 1 or 2 (0: the only one).
struct MessagePoint: Equatable {
    var offset: UInt64
    var event: UInt64

    /// Whether the message at (`offset`, `event`) comes at or before this point.
    func covers(offset: UInt64, event: UInt64) -> Bool {
        offset < self.offset || (offset == self.offset && (self.event == 0 || event <= self.event))
    }
}

/// The headers the sink sets on every message.
public enum NATSSinkHeader {
    /// The source transaction's xid.
    public static let xid = "Sluice-Xid"
    /// The source transaction's commit LSN (`X/Y`).
    public static let lsn = "Sluice-LSN"
    /// The topic offset of the transaction's commit marker.
    public static let commitOffset = "Sluice-Commit-Offset"
    /// The topic (source) the change comes from.
    public static let topic = "Sluice-Topic"
    /// The topic offset of this record: the change's, or on a commit marker message the commit's
    /// (so `Sluice-Offset == Sluice-Commit-Offset` exactly on commit markers).
    public static let offset = "Sluice-Offset"
    /// The stream sequence of the newest commit marker published before this message (0: none).
    public static let markerSequence = "Sluice-Marker-Sequence"
    /// Only on a change published as several messages (`format: debezium`, an update of the primary
    /// key: a delete event, then a create event): the event's number within the change, 1 or 2.
    public static let event = "Sluice-Event"
}

/// One message's Sluice headers, parsed.
struct SluiceFields {
    var topic: String
    var offset: UInt64
    var commitOffset: UInt64
    var markerSequence: UInt64
    /// ``NATSSinkHeader/event``; 0 when absent.
    var event: UInt64
    var isMarker: Bool { offset == commitOffset }

    init?(_ message: JetStreamMessage, sink: String) {
        guard let id = message.headers[NATSHeaders.messageID], id.hasPrefix(sink + ":"),
              let topic = message.headers[NATSSinkHeader.topic],
              let offset = message.headers[NATSSinkHeader.offset].flatMap({ UInt64($0) }),
              let commitOffset = message.headers[NATSSinkHeader.commitOffset].flatMap({ UInt64($0) }) else { return nil }
        self.topic = topic
        self.offset = offset
        self.commitOffset = commitOffset
        markerSequence = message.headers[NATSSinkHeader.markerSequence].flatMap { UInt64($0) } ?? 0
        event = message.headers[NATSSinkHeader.event].flatMap { UInt64($0) } ?? 0
    }
}

/// Runs a NATS call; its failure becomes a connector error (an outage is transient).
func natsCall<T>(_ sink: String, _ action: @autoclosure () -> String, _ body: () throws(NATSError) -> T) throws -> T {
    do {
        return try body()
    } catch {
        throw connectorError(sink, action(), error)
    }
}

func connectorError(_ sink: String, _ action: String, _ error: NATSError) -> ConnectorError {
    if error.kind == .authentication {
        return .misconfigured("""
            sink \(sink): \(action): the server refused the login (\(error)): set the sink's user and password, \
            token or credentials to what the server's authorization accepts
            """)
    }
    if error.isTransient || error.kind == .noResponders {
        return .transient("sink \(sink): \(action): \(error)")
    }
    return .fatal("sink \(sink): \(action): \(error)")
}

enum StreamRecovery {
    /// Reads the sink's position from the end of its stream.
    ///
    /// The rule: the last message of the stream decides. A commit marker carries every topic's last
    /// published commit in its body (`positions`). A change means the previous run stopped inside that
    /// change's transaction: the positions are those of the newest marker before it (the message at its
    /// `Sluice-Marker-Sequence`), so the transaction comes again whole, and its messages up to the
    /// last one (its `Sluice-Offset` and `Sluice-Event`) are skipped (they are in the stream already).
    static func read(_ jetStream: JetStream, stream: String, sink: String) throws -> PublishState {
        let found = try natsCall(sink, "read stream \(stream)") { () throws(NATSError) in try jetStream.streamInfo(stream) }
        guard let info = found else { return .empty }
        var state = PublishState(streamExists: true, streamSubjects: info.config.subjects, positions: [:],
                                 nextSequence: info.state.lastSequence + 1, lastMarkerSequence: 0, skipThrough: [:])
        let lastSequence = info.state.lastSequence
        guard lastSequence > 0 else { return state }
        func lost(_ why: String) -> ConnectorError {
            .fatal("""
                sink \(sink): \(why), so where the sink stopped cannot be known and publishing again could repeat or \
                skip changes. The stream must keep at least its newest messages (no purge, no max_age or max_msgs that \
                empties it). To publish every topic again from its start, delete stream \(stream).
                """)
        }
        guard info.state.messages > 0 else {
            throw lost("stream \(stream) holds no message but has had \(lastSequence) (purged, or expired by its limits)")
        }
        func message(_ sequence: UInt64) throws -> JetStreamMessage? {
            try natsCall(sink, "read \(stream) sequence \(sequence)") { () throws(NATSError) in
                try jetStream.message(stream, sequence: sequence)
            }
        }
        // The newest message still held (single messages deleted at the very end are passed over).
        var last: JetStreamMessage?
        var sequence = lastSequence
        while sequence >= max(info.state.firstSequence, 1), lastSequence - sequence < 1_000 {
            if let found = try message(sequence) {
                last = found
                break
            }
            sequence -= 1
        }
        guard let last else { throw lost("the newest messages of stream \(stream) (up to sequence \(lastSequence)) are gone") }
        guard let fields = SluiceFields(last, sink: sink) else {
            throw ConnectorError.misconfigured("""
                sink \(sink): the last message of stream \(stream) (sequence \(last.sequence), subject \(last.subject)) was \
                not published by this sink (its Nats-Msg-Id does not start with '\(sink):' or it lacks the Sluice \
                headers). The stream must hold only this sink's messages: name another stream (stream:), or remove \
                whatever else publishes to its subjects \(info.config.subjects).
                """)
        }
        var marker = last
        if !fields.isMarker {
            state.skipThrough[fields.topic] = MessagePoint(offset: fields.offset, event: fields.event)
            guard fields.markerSequence > 0 else { return state }
            guard let previous = try message(fields.markerSequence) else {
                throw lost("the commit marker at sequence \(fields.markerSequence) of stream \(stream) is gone")
            }
            guard let previousFields = SluiceFields(previous, sink: sink), previousFields.isMarker else {
                throw ConnectorError.fatal("""
                    sink \(sink): stream \(stream) sequence \(fields.markerSequence) should be a commit marker of this \
                    sink (the last message, sequence \(last.sequence), names it), but it is not: the stream was changed by \
                    something else. Delete stream \(stream) to publish every topic again from its start.
                    """)
            }
            marker = previous
        }
        state.lastMarkerSequence = marker.sequence
        guard let positions = positions(marker) else {
            throw ConnectorError.fatal("sink \(sink): the commit marker at sequence \(marker.sequence) of stream \(stream) has no readable positions")
        }
        state.positions = positions
        return state
    }

    /// The `positions` object of a commit marker's body.
    static func positions(_ marker: JetStreamMessage) -> [String: SinkPosition]? {
        guard let object = try? JSONSerialization.jsonObject(with: Data(marker.data)) as? [String: Any],
              let entries = object["positions"] as? [String: Any] else { return nil }
        var positions: [String: SinkPosition] = [:]
        for (topic, value) in entries {
            guard let entry = value as? [String: Any], let offset = (entry["offset"] as? NSNumber)?.uint64Value,
                  let lsn = (entry["lsn"] as? String).flatMap({ LSN($0) }),
                  let time = (entry["commit_time"] as? String).flatMap(parseMicros) else { return nil }
            positions[topic] = SinkPosition(topic: topic, offset: offset, lsn: lsn, commitTime: time)
        }
        return positions
    }

    /// A commit marker's body: the commit record as `sluice tail --json` prints it, plus `positions`,
    /// every topic's last commit published to this stream (this one's included).
    static func markerBody(commit: String, positions: [String: SinkPosition]) -> [UInt8] {
        var text = String(commit.dropLast())
        text += ",\"positions\":{"
        for (index, entry) in positions.sorted(by: { $0.key < $1.key }).enumerated() {
            if index > 0 { text += "," }
            text += jsonString(entry.key) + ":{\"offset\":\(entry.value.offset),\"lsn\":" + jsonString(entry.value.lsn.description)
                + ",\"commit_time\":" + jsonString(formatMicros(entry.value.commitTime)) + "}"
        }
        text += "}}"
        return Array(text.utf8)
    }
}

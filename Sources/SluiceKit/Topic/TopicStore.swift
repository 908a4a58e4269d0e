import Foundation

/// Where a deployment's topics live: the embedded log on the daemon's own disk, or a broker that
/// several hosts share. The runtime, `status`, `tail`, `backfill` and retention go through this
/// protocol only; one implementation is chosen when the configuration is wired.
///
/// A store is shared by every thread of a process. Each topic has one writer at a time (its
/// source's thread); readers are made per consumer and confined to the thread that uses them.
public protocol TopicStore: AnyObject, Sendable {
    /// Where the topics are, for messages ("embedded log in ./data/topics").
    var location: String { get }
    /// The topic `name` for reading (it may be empty or missing; no I/O happens here); the same object
    /// for every caller in a process.
    func topic(_ name: String) -> any Topic
    /// Whether the topic exists and holds records (or, for a broker, its stream exists).
    func exists(_ name: String) throws -> Bool
    /// Recovers the topic's storage, creating it if missing, and opens its one writer.
    func openWriter(_ name: String) throws -> any TopicWriter
    /// Deletes what every reader has passed (below `floor`, when known) and what `policy` no longer
    /// keeps; the last commit marker always stays. Returns a description of what was deleted, if anything.
    func applyRetention(_ topic: any Topic, floor: UInt64?, policy: RetentionPolicy) -> String?
    /// What `sluice check` says about the store and these topics (reachable, able to hold them).
    func check(topics: [String]) -> [CheckFinding]
}

extension TopicStore {
    public func check(topics: [String]) -> [CheckFinding] { [] }
}

/// How long a topic keeps what its sinks have already applied (and, past the limits, what they have not).
public struct RetentionPolicy: Sendable, Equatable {
    /// Delete a topic's oldest data beyond this many bytes, even if a sink still needs it.
    public var maxBytes: UInt64?
    /// Delete data older than this, even if a sink still needs it.
    public var maxAgeMillis: Int?
    /// Segment size at which the embedded log starts a new file.
    public var segmentBytes: UInt64

    public static let defaultSegmentBytes: UInt64 = 128 << 20
    public static let `default` = RetentionPolicy(maxBytes: nil, maxAgeMillis: nil, segmentBytes: defaultSegmentBytes)

    public init(maxBytes: UInt64?, maxAgeMillis: Int?, segmentBytes: UInt64) {
        self.maxBytes = maxBytes
        self.maxAgeMillis = maxAgeMillis
        self.segmentBytes = segmentBytes
    }
}

/// The layout of a data directory, in one place: `topics/<topic>/` (embedded log), `sources/<name>/`
/// (a source's own state and backfill files), the lock, the status file and the space reserve.
public struct DataDirectory: Sendable, Equatable {
    public let path: String

    public init(_ path: String) { self.path = path }

    public var topics: String { path + "/topics" }
    public func topic(_ name: String) -> String { topics + "/" + name }
    public func sourceState(_ source: String) -> String { path + "/sources/" + source }
    public var lockFile: String { path + "/sluice.lock" }
    public var statusFile: String { path + "/status.json" }
    public var spaceReserve: String { path + "/space-reserve" }
}

/// Where topics live, from the configuration's `topics:` section.
public enum TopicBackend: Sendable, Equatable {
    /// The embedded log under `data_dir` (the default).
    case embedded
    case jetstream(JetStreamSettings)
}

/// `topics: {backend: jetstream, servers: […], replicas: N, stream_prefix: …}`.
public struct JetStreamSettings: Sendable, Equatable {
    public var servers: [String]
    /// Replicas of each topic's stream (1–5).
    public var replicas: Int
    /// Topic `app` lives in stream `<prefix>_app`, subjects `<prefix>.app.*`.
    public var streamPrefix: String
    public var credentials: String?
    public var caFile: String?
    public var user: String?
    public var password: String?
    public var token: String?

    public init(servers: [String], replicas: Int = 1, streamPrefix: String = "SLUICE", credentials: String? = nil,
                caFile: String? = nil, user: String? = nil, password: String? = nil, token: String? = nil) {
        self.servers = servers
        self.replicas = replicas
        self.streamPrefix = streamPrefix
        self.credentials = credentials
        self.caFile = caFile
        self.user = user
        self.password = password
        self.token = token
    }
}

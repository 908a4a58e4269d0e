internal import CNATS
import Foundation

/// A JetStream stream's configuration: what `JetStream.addStream` creates and `streamInfo` reports.
/// A value (Sendable, any thread); limits left nil are unlimited. The server checks it: a refused
/// configuration is a `NATSError` from `addStream`/`updateStream`, never from here.
public struct StreamConfig: Sendable, Equatable {
    /// Where the server keeps the messages: files (survive a restart) or memory.
    public enum Storage: Sendable, Equatable { case file, memory }

    public var name: String
    /// Subjects the stream captures (wildcards allowed: `sluice.app.>`).
    public var subjects: [String]
    /// Copies kept in a cluster, 1–5; a write is acknowledged once a majority stored it.
    public var replicas: Int = 1
    public var storage: Storage = .file
    /// Oldest messages are discarded past this many bytes.
    public var maxBytes: Int64?
    /// Messages older than this are discarded.
    public var maxAge: Duration?
    public var maxMessages: Int64?
    /// Largest message the stream accepts, in bytes.
    public var maxMessageSize: Int32?
    /// How long the server remembers a `Nats-Msg-Id` to drop a re-publish of it (server default 2 min).
    public var duplicateWindow: Duration?
    /// Answer `directMessage` gets from any replica, not only the leader.
    public var allowDirect: Bool = false

    public init(name: String, subjects: [String]) {
        self.name = name
        self.subjects = subjects
    }

    /// Fills `config` for one call; the strings live only as long as `body` runs.
    func withC<R>(_ body: (inout jsStreamConfig) throws(NATSError) -> R) throws(NATSError) -> R {
        var config = jsStreamConfig()
        try check(jsStreamConfig_Init(&config), "cannot initialize a stream configuration")
        let cName = strdup(name)
        let cSubjects = subjects.map { UnsafePointer(strdup($0)) }
        defer {
            free(cName)
            cSubjects.forEach { free(UnsafeMutablePointer(mutating: $0)) }
        }
        var subjectArray: [UnsafePointer<CChar>?] = cSubjects
        config.Name = UnsafePointer(cName)
        config.Replicas = Int64(replicas)
        config.Storage = storage == .file ? js_FileStorage : js_MemoryStorage
        config.MaxBytes = maxBytes ?? -1
        config.MaxAge = maxAge.map(nanoseconds) ?? 0
        config.MaxMsgs = maxMessages ?? -1
        config.MaxMsgSize = maxMessageSize ?? -1
        config.Duplicates = duplicateWindow.map(nanoseconds) ?? 0
        config.AllowDirect = allowDirect
        return try subjectArray.withUnsafeMutableBufferPointer { (subjects) throws(NATSError) -> R in
            config.Subjects = subjects.baseAddress
            config.SubjectsLen = Int32(subjects.count)
            return try body(&config)
        }
    }

    init(_ config: jsStreamConfig) {
        name = config.Name.map { String(cString: $0) } ?? ""
        subjects = (0..<Int(config.SubjectsLen)).compactMap { config.Subjects?[$0].map { String(cString: $0) } }
        replicas = Int(config.Replicas)
        storage = config.Storage == js_MemoryStorage ? .memory : .file
        maxBytes = config.MaxBytes > 0 ? config.MaxBytes : nil
        maxAge = config.MaxAge > 0 ? .nanoseconds(config.MaxAge) : nil
        maxMessages = config.MaxMsgs > 0 ? config.MaxMsgs : nil
        maxMessageSize = config.MaxMsgSize > 0 ? config.MaxMsgSize : nil
        duplicateWindow = config.Duplicates > 0 ? .nanoseconds(config.Duplicates) : nil
        allowDirect = config.AllowDirect
    }
}

/// What a stream holds now: a value (Sendable, any thread) copied out of libnats' `jsStreamState`.
public struct StreamState: Sendable, Equatable {
    public var messages: UInt64
    public var bytes: UInt64
    /// The oldest sequence still held (after a purge, the first one kept); `lastSequence + 1` when empty.
    public var firstSequence: UInt64
    /// The newest sequence ever assigned, 0 for a stream never written.
    public var lastSequence: UInt64
    /// Times of the first and last message, nanoseconds since the Unix epoch.
    public var firstTime: Int64
    public var lastTime: Int64
    public var consumers: Int64
    /// Sequences between first and last that were deleted one by one.
    public var deleted: UInt64

    init(_ state: jsStreamState) {
        messages = state.Msgs
        bytes = state.Bytes
        firstSequence = state.FirstSeq
        lastSequence = state.LastSeq
        firstTime = state.FirstTime
        lastTime = state.LastTime
        consumers = state.Consumers
        deleted = state.NumDeleted
    }
}

/// Who holds a replicated stream: its Raft group's leader and the other replicas. A value
/// (Sendable, any thread), as it was when `streamInfo` asked.
public struct StreamClusterInfo: Sendable, Equatable {
    /// One follower of the stream's leader.
    public struct Replica: Sendable, Equatable {
        public var name: String
        /// Caught up with the leader.
        public var current: Bool
        public var offline: Bool
        /// Nanoseconds since the leader last heard from it.
        public var active: Int64
        /// Operations it is behind.
        public var lag: UInt64
    }

    /// The cluster's name.
    public var name: String?
    /// The server (its `--name`) leading the stream now; nil while a leader is being elected.
    public var leader: String?
    /// The replicas other than the leader.
    public var replicas: [Replica]

    init(_ info: jsClusterInfo) {
        name = info.Name.map { String(cString: $0) }
        leader = info.Leader.map { String(cString: $0) }.flatMap { $0.isEmpty ? nil : $0 }
        replicas = (0..<Int(info.ReplicasLen)).compactMap { index in
            guard let peer = info.Replicas?[index]?.pointee else { return nil }
            return Replica(name: peer.Name.map { String(cString: $0) } ?? "", current: peer.Current,
                           offline: peer.Offline, active: peer.Active, lag: peer.Lag)
        }
    }
}

/// A stream's configuration, state and (in a cluster) placement, as one value (Sendable, any
/// thread): a snapshot, never refreshed; `JetStream.streamInfo` takes a new one.
public struct StreamInfo: Sendable, Equatable {
    public var config: StreamConfig
    public var state: StreamState
    /// nil on a server that is not part of a cluster.
    public var cluster: StreamClusterInfo?
    /// Creation time, nanoseconds since the Unix epoch.
    public var created: Int64

    init(_ info: jsStreamInfo) {
        config = info.Config.map { StreamConfig($0.pointee) } ?? StreamConfig(name: "", subjects: [])
        state = StreamState(info.State)
        cluster = info.Cluster.map { StreamClusterInfo($0.pointee) }
        created = info.Created
    }
}

func nanoseconds(_ duration: Duration) -> Int64 {
    let (seconds, attoseconds) = duration.components
    return seconds * 1_000_000_000 + attoseconds / 1_000_000_000
}

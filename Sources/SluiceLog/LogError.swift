#if canImport(Glibc)
import Glibc
#endif
import SluiceKit

/// A failure of the embedded log's files.
public struct LogError: Error, CustomStringConvertible {
    public let message: String

    public init(_ message: String) { self.message = message }

    static func errno(_ what: String, _ path: String) -> LogError {
        LogError("\(what) \(path): \(String(cString: strerror(Glibc.errno)))")
    }

    /// The error for a failed write or create: ``TopicStorageFull`` when the device has no room left.
    static func io(_ what: String, _ path: String) -> any Error {
        let code = Glibc.errno
        if code == ENOSPC || code == EDQUOT { return TopicStorageFull(path: path) }
        return LogError("\(what) \(path): \(String(cString: strerror(code)))")
    }

    public var description: String { message }
}

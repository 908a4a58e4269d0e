#if canImport(Glibc)
import Glibc
#endif

/// A failure of the embedded log's files.
public struct LogError: Error, CustomStringConvertible {
    public let message: String

    public init(_ message: String) { self.message = message }

    static func errno(_ what: String, _ path: String) -> LogError {
        LogError("\(what) \(path): \(String(cString: strerror(Glibc.errno)))")
    }

    public var description: String { message }
}

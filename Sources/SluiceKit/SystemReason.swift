import Foundation

/// The system's words for a failed file operation ("No such file or directory"), for messages:
/// Foundation's errors print as an NSError dump with domains, codes and URLs.
public enum SystemReason {
    public static func of(_ error: Error) -> String {
        let described = error as NSError
        for candidate in [described, described.userInfo[NSUnderlyingErrorKey].flatMap { $0 as? Error }.map { $0 as NSError }] {
            if let candidate, candidate.domain == NSPOSIXErrorDomain { return String(cString: strerror(Int32(candidate.code))) }
        }
        guard described.domain == NSCocoaErrorDomain else { return "\(error)" }
        return described.localizedDescription
    }
}

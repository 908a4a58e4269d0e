import Foundation
import SluiceKit

/// What the command line writes, with every secret hidden (`Secrets.redact`): results on stdout,
/// messages on stderr. Only the records `tail` prints bypass it — they are the data as captured.
enum Output {
    static func standardError(_ text: String) {
        rawStandardError(Secrets.redact(text))
    }

    static func standardOutput(_ text: String) {
        rawStandardOutput(Secrets.redact(text))
    }

    /// Writes to stdout as is. A reader that went away (`sluice tail … | head`) ends the command
    /// quietly with exit 0, as head(1) means it; any other failure exits 1 saying why. FileHandle's
    /// write would trap on either.
    static func rawStandardOutput(_ text: String) {
        guard !write(STDOUT_FILENO, text) else { return }
        if errno == EPIPE { exit(0) }
        // Anything else (a full disk under `> file`) is a failure, not the reader's choice.
        let reason = String(cString: strerror(errno))
        _ = write(STDERR_FILENO, "error: cannot write the output: \(reason)\n")
        exit(1)
    }

    /// Writes to stderr as is; a closed stderr loses the message, it never stops the process.
    static func rawStandardError(_ text: String) {
        _ = write(STDERR_FILENO, text)
    }

    /// False when the descriptor cannot be written (errno says why: EPIPE when its reader is gone).
    private static func write(_ fd: Int32, _ text: String) -> Bool {
        var text = text
        return text.withUTF8 { bytes in
            var done = 0
            while done < bytes.count {
                let count = Glibc.write(fd, bytes.baseAddress! + done, bytes.count - done)
                if count < 0 {
                    if errno == EINTR { continue }
                    return false
                }
                done += count
            }
            return true
        }
    }
}

/// Shadows `Swift.print` in this module so that no command prints a line that skipped redaction.
func print(_ text: String) {
    Output.standardOutput(text + "\n")
}

import Foundation
import SluiceKit

/// What the command line writes, with every secret hidden (`Secrets.redact`): results on stdout,
/// messages on stderr. Only the records `tail` prints bypass it — they are the data as captured.
enum Output {
    static func standardError(_ text: String) {
        FileHandle.standardError.write(Data(Secrets.redact(text).utf8))
    }

    static func standardOutput(_ text: String) {
        FileHandle.standardOutput.write(Data(Secrets.redact(text).utf8))
    }
}

/// Shadows `Swift.print` in this module so that no command prints a line that skipped redaction.
func print(_ text: String) {
    Output.standardOutput(text + "\n")
}

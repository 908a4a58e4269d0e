import Foundation
import SluiceKit
import SluiceConnectors
import SluiceRuntime
import XCTest

/// `${file:PATH}` secrets in the configuration, and `Secrets.redact`: every secret the loader read is
/// hidden by value wherever it shows up, URL passwords also by pattern.
final class SecretsTests: XCTestCase {
    var directory: String!

    override func setUpWithError() throws {
        Secrets.reset()
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-secrets-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    }

    override func tearDown() {
        Secrets.reset()
        unsetenv("SLUICE_SECRETS_TEST_TOKEN")
        if let directory { try? FileManager.default.removeItem(atPath: directory) }
    }

    private func config(url: String, extra: String = "") throws -> String {
        let path = directory + "/sluice.yml"
        try """
            sources:
              - name: app
                type: postgres
                url: \(url)
            \(extra)
            """.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    private func secretFile(_ name: String, _ contents: String, mode: mode_t = 0o600) throws -> String {
        let path = directory + "/" + name
        try contents.write(toFile: path, atomically: true, encoding: .utf8)
        chmod(path, mode)
        return path
    }

    func testFileSecretIsReadTrimmedAndHidden() throws {
        _ = try secretFile("db_password", "Tr0ub4dor&3-pass\n")
        let path = try config(url: "postgresql://sluice:${file:db_password}@db.example.com:5432/app?sslmode=verify-full")
        let loaded = try SluiceConfig.load(path: path, registry: .builtin)
        XCTAssertEqual(try loaded.sources[0].string("url"),
                       "postgresql://sluice:Tr0ub4dor&3-pass@db.example.com:5432/app?sslmode=verify-full",
                       "the relative path is read beside the config file, its newline trimmed")
        XCTAssertEqual(loaded.warnings, [], "a 0600 file is no warning")
        let leaked = "FATAL: password authentication failed (password Tr0ub4dor&3-pass, encoded Tr0ub4dor%263-pass)"
        XCTAssertEqual(Secrets.redact(leaked), "FATAL: password authentication failed (password ***, encoded ***)")
    }

    func testWorldReadableSecretFileWarns() throws {
        let file = try secretFile("token", "abcd-1234-token", mode: 0o644)
        let path = try config(url: "postgresql://sluice@127.0.0.1/app", extra: """
            sinks:
              - {name: hook, type: http, url: "http://127.0.0.1:9/x", headers: {X-Token: "${file:\(file)}"}}
            """)
        let loaded = try SluiceConfig.load(path: path, registry: .builtin)
        XCTAssertEqual(loaded.warnings.count, 1, "\(loaded.warnings)")
        XCTAssertTrue(loaded.warnings[0].contains(file) && loaded.warnings[0].contains("chmod 600"), loaded.warnings[0])
        XCTAssertTrue(loaded.warnings[0].contains("sinks[0].headers.X-Token"), loaded.warnings[0])
        XCTAssertEqual(Secrets.redact("got abcd-1234-token back"), "got *** back", "every ${file:} value is a secret")
    }

    func testMissingSecretFileNamesKeyAndPath() throws {
        let path = try config(url: "postgresql://sluice:${file:/nonexistent/sluice-pw}@127.0.0.1/app")
        XCTAssertThrowsError(try SluiceConfig.load(path: path, registry: .builtin)) { error in
            let text = "\(error)"
            XCTAssertTrue(error is ConfigError, text)
            XCTAssertTrue(text.contains("sources[0].url") && text.contains("/nonexistent/sluice-pw does not exist"), text)
        }
        let empty = try config(url: "postgresql://sluice:${file:}@127.0.0.1/app")
        XCTAssertThrowsError(try SluiceConfig.load(path: empty, registry: .builtin)) { XCTAssertTrue("\($0)".contains("needs a path"), "\($0)") }
    }

    func testSecretVariablesKeysAndURLPasswordsAreRegistered() throws {
        setenv("SLUICE_SECRETS_TEST_TOKEN", "env-token-value", 1)
        let path = try config(url: "postgresql://sluice:literal-pw@127.0.0.1/app", extra: """
            topics: {backend: jetstream, servers: ["nats://127.0.0.1:4222"], token: "${SLUICE_SECRETS_TEST_TOKEN}", password: plain-nats-pw, user: someone}
            """)
        _ = try SluiceConfig.load(path: path, registry: .builtin)
        XCTAssertEqual(Secrets.redact("a literal-pw b env-token-value c plain-nats-pw d someone"), "a *** b *** c *** d someone")
    }

    /// A password with an unencoded '@' splits its URL: libpq names the part after it as a host. A
    /// name PostgreSQL folded to lower case shows the secret folded. Both are hidden.
    func testPiecesAndCaseFoldedFormsOfASecretAreHidden() {
        Secrets.register("Leak9Part@Second7Part")
        XCTAssertEqual(Secrets.redact("could not translate host name \"Second7Part@127.0.0.1\" to address"),
                       "could not translate host name \"***@127.0.0.1\" to address")
        Secrets.register("Wr0ngPassw0rdXYZ")
        XCTAssertEqual(Secrets.redact("publication p does not include public.wr0ngpassw0rdxyz"), "publication p does not include public.***")
        Secrets.register("pw@2024")
        XCTAssertEqual(Secrets.redact("at 2024-12-01"), "at 2024-12-01", "pieces shorter than 6 characters are not hidden")
    }

    func testPatternsHideUnregisteredURLPasswords() {
        XCTAssertEqual(Secrets.redact("cannot connect to postgresql://u:pw@h:5/db?sslmode=require: refused"),
                       "cannot connect to postgresql://u:***@h:5/db?sslmode=require: refused")
        XCTAssertEqual(Secrets.redact("host=h password=hunter2 dbname=x"), "host=h password=*** dbname=x")
        XCTAssertEqual(Secrets.redact("postgresql://h/db?user=u&password=x1&sslmode=verify-full"),
                       "postgresql://h/db?user=u&password=***&sslmode=verify-full")
        XCTAssertEqual(Secrets.redact("nats://tok@h:4222 and postgresql://u@h/db"), "nats://tok@h:4222 and postgresql://u@h/db",
                       "no password part, nothing hidden by pattern")
        Secrets.register("ab")
        XCTAssertEqual(Secrets.redact("a tab b"), "a tab b", "values shorter than \(Secrets.minimumLength) are not hidden by value")
        Secrets.register("quo\"te\\pw")
        XCTAssertEqual(Secrets.redact("{\"error\":\"quo\\\"te\\\\pw\"}"), "{\"error\":\"***\"}", "also as JSON escapes it")
    }
}

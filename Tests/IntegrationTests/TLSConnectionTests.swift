import Foundation
import SluiceWire
import XCTest

/// TLS to PostgreSQL: a cluster with ssl = on and hostssl lines only, certificates made by openssl
/// in the test. With sslmode=verify-full the source (its SQL and replication connections) and a
/// PostgreSQL sink work end to end over TLS, and `check` says so; a wrong CA, a host name the
/// certificate does not list, sslmode=disable, a missing sslrootcert and a server without TLS each
/// exit 2 at start with their own message, naming the URL without its password.
final class TLSConnectionTests: DaemonTestCase {
    override var fixtureName: String { "tls" }
    override var startsSourceCluster: Bool { false }

    static let password = "tls-Canary-pw-4417"

    private func url(host: String = "127.0.0.1", database: String = "postgres", _ parameters: String) -> String {
        "postgresql://postgres:\(Self.password)@\(host):\(source.port)/\(database)?\(parameters)"
    }

    private func config(source sourceURL: String, sink sinkURL: String, name: String) throws -> String {
        let path = directory + "/\(name).yml"
        try """
            data_dir: \(dataDirectory)
            sources:
              - {name: app, type: postgres, url: "\(sourceURL)", tables: [public.items]}
            sinks:
              - {name: replica, type: postgres, url: "\(sinkURL)"}
            """.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    /// `sluice run` on a configuration that must be refused at start: exit 2, `expected` in the message.
    private func refused(_ name: String, source sourceURL: String, sink sinkURL: String? = nil, _ expected: String) throws {
        let path = try config(source: sourceURL, sink: sinkURL ?? sourceURL.replacingOccurrences(of: "/postgres?", with: "/replica?"),
                              name: name)
        let result = try sluice(["run", "--config", path], timeout: 60)
        XCTAssertEqual(result.status, 2, "\(name): \(result.describe)")
        XCTAssertTrue(result.err.contains(expected), "\(name): expected '\(expected)' in\n\(result.describe)")
        XCTAssertTrue(result.err.contains("postgres:***@"), "\(name): the URL, its password hidden:\n\(result.describe)")
        XCTAssertFalse(result.all.contains(Self.password), "\(name): \(result.describe)")
    }

    func testVerifyFullEndToEndAndEachTLSFailure() throws {
        let certificates = try TLSCertificates(directory: directory)
        source = try PostgresCluster(name: "tls", tls: certificates)
        try source.query("CREATE DATABASE replica")
        try source.query("""
            CREATE TABLE items (id int PRIMARY KEY, note text NOT NULL);
            INSERT INTO items SELECT i, 'row ' || i FROM generate_series(1, 20) i;
            """)
        let verified = "sslmode=verify-full&sslrootcert=\(certificates.caFile)"
        try config(source: url(verified), sink: url(database: "replica", verified), name: "sluice")

        let check = try sluice(["check", "--config", configPath])
        XCTAssertEqual(check.status, 0, check.describe)
        for subject in ["source app", "sink replica"] {
            XCTAssertTrue(check.out.contains("\(subject): TLS TLSv1."), "\(subject) shows its TLS version: \(check.describe)")
        }
        XCTAssertEqual(check.out.components(separatedBy: "server certificate verified, host name checked (verify-full)").count, 3,
                       check.describe)
        XCTAssertFalse(check.out.contains("warn "), "127.0.0.1 with verify-full is no warning: \(check.describe)")

        let daemon = try startDaemon()
        let replica = "postgresql://postgres@127.0.0.1:\(source.port)/replica"
        try eventually(timeout: 90, "the replica to hold the 20 rows over TLS" + logTail) {
            try PGConnection(url: replica).execute("SELECT count(*) FROM items").string(0, 0) == "20"
        }
        try source.query("INSERT INTO items VALUES (21, 'streamed')")
        try eventually(timeout: 60, "the streamed row" + logTail) {
            try PGConnection(url: replica).execute("SELECT count(*) FROM items").string(0, 0) == "21"
        }
        // Every connection of the daemon is encrypted: the walsender and the sink's session among them.
        let sessions = try source.query("""
            SELECT a.backend_type, coalesce(a.application_name, ''), s.ssl::text FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)
            WHERE a.client_addr IS NOT NULL AND a.pid <> pg_backend_pid()
            """)
        XCTAssertTrue(sessions.contains { $0[0] == "walsender" && $0[2] == "true" }, "\(sessions)")
        XCTAssertTrue(sessions.contains { $0[1] == "sluice-sink-replica" && $0[2] == "true" }, "\(sessions)")
        XCTAssertTrue(sessions.allSatisfy { $0[2] == "true" }, "\(sessions)")
        XCTAssertEqual(daemon.terminate(), 0, logTail)

        try refused("wrong-ca", source: url("sslmode=verify-full&sslrootcert=\(certificates.otherCAFile)"),
                    "not signed by the CA in sslrootcert")
        try refused("wrong-host", source: url(host: "db.example.com", "hostaddr=127.0.0.1&\(verified)"),
                    "issued for another host name")
        try refused("no-tls", source: url("sslmode=disable"), "accepts this connection only over TLS")
        try refused("missing-ca", source: url("sslmode=verify-full&sslrootcert=\(directory!)/missing-ca.crt"),
                    "sslrootcert=\(directory!)/missing-ca.crt, which does not exist")
        try refused("wrong-ca-sink", source: url(verified),
                    sink: url(database: "replica", "sslmode=verify-ca&sslrootcert=\(certificates.otherCAFile)"),
                    "sink replica")

        // The server stops offering TLS (and takes plain connections again).
        let socket = "postgresql:///postgres?host=\(source.directory)&port=\(source.port)&user=postgres"
        try ("local all all trust\nhost all all 127.0.0.1/32 trust\nhost replication all 127.0.0.1/32 trust\n")
            .write(toFile: source.directory + "/pg_hba.conf", atomically: false, encoding: .utf8)
        try PGConnection(url: socket).execute("ALTER SYSTEM SET ssl = off")
        try PGConnection(url: socket).execute("SELECT pg_reload_conf()")
        try eventually(timeout: 30, "ssl = off to take effect") {
            try PGConnection(url: socket).execute("SHOW ssl").string(0, 0) == "off"
        }
        try refused("server-without-tls", source: url("sslmode=require"), "does not offer TLS")
    }

    func testRemoteURLWithoutVerifyFullIsWarnedAbout() {
        XCTAssertNotNil(connectionTLSWarning("postgresql://sluice@db.example.com:5432/app"))
        XCTAssertNotNil(connectionTLSWarning("postgresql://sluice@10.0.0.5/app?sslmode=require"))
        XCTAssertNotNil(connectionTLSWarning("postgresql://sluice@127.0.0.1,db2.example.com/app?sslmode=verify-ca"))
        XCTAssertNil(connectionTLSWarning("postgresql://sluice@db.example.com/app?sslmode=verify-full&sslrootcert=/ca.crt"))
        XCTAssertNil(connectionTLSWarning("postgresql://sluice@127.0.0.1:5432/app"))
        XCTAssertNil(connectionTLSWarning("postgresql://sluice@localhost/app"))
        XCTAssertNil(connectionTLSWarning("postgresql:///app?host=/var/run/postgresql"))
        let noCA = tlsProblem("connection to server at \"db\" failed: root certificate file \"/root/.postgresql/root.crt\" does not exist")
        XCTAssertTrue(noCA?.contains("by default ~/.postgresql/root.crt") == true, "\(noCA ?? "nil")")
        XCTAssertNil(tlsProblem("connection to server at \"db\" failed: Connection refused"), "an outage is not a TLS problem")
        XCTAssertEqual(connectionURLProblem("postgresql://h/db?sslmode=sometimes"),
                       "has sslmode=sometimes; use one of disable, allow, prefer, require, verify-ca, verify-full")
        XCTAssertEqual(connectionURLProblem("postgresql://h/db?sslmode=verify-full&sslrootcert=system"), nil)
        XCTAssertEqual(connectionURLProblem("postgresql://h/db?sslcert=/nonexistent/c.crt"),
                       "has sslcert=/nonexistent/c.crt, which does not exist")
    }
}

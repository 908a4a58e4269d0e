import SluiceNATS
import XCTest

/// Connecting: credentials, a dead server list, and reconnection that gives up after its attempts.
final class ConnectionTests: NATSTestCase {
    func testUserAndPasswordAreSentAndAWrongOneIsRefused() throws {
        let server = try startServer(arguments: ["--user", "sluice", "--pass", "s3cret"])
        let connection = try connect([server.url]) { $0.user = "sluice"; $0.password = "s3cret" }
        XCTAssertEqual(connection.state, .connected)
        XCTAssertEqual(connection.connectedURL, server.url)
        XCTAssertThrowsError(try connect([server.url]) { $0.user = "sluice"; $0.password = "wrong" }) { error in
            let error = error as? NATSError
            XCTAssertEqual(error?.kind, .authentication, "\(String(describing: error))")
            XCTAssertEqual(error?.isTransient, false, "a refused login is not retried")
            XCTAssertTrue(error?.description.lowercased().contains("authorization") == true, "\(String(describing: error))")
        }
    }

    func testATokenIsSent() throws {
        let server = try startServer(arguments: ["--auth", "t0ken"])
        XCTAssertEqual(try connect([server.url]) { $0.token = "t0ken" }.state, .connected)
        XCTAssertThrowsError(try connect([server.url]))
    }

    func testADeadServerInTheListIsSkipped() throws {
        let server = try startServer()
        let dead = "nats://127.0.0.1:\(try freePort())"
        let connection = try connect([dead, server.url])
        XCTAssertEqual(connection.state, .connected)
        XCTAssertEqual(connection.connectedURL, server.url)
    }

    func testBoundedReconnectAttemptsEndInTheClosedState() throws {
        let server = try startServer()
        let connection = try connect([server.url]) {
            $0.maxReconnectAttempts = 3
            $0.reconnectWaitMilliseconds = 50
        }
        let js = try connection.jetStream()
        try js.addStream(StreamConfig(name: "APP", subjects: ["app.>"]))
        server.kill()
        try eventually("the connection to give up") { connection.state == .closed }
        try eventually("the closed callback") { connection.events.closed }
        XCTAssertEqual(connection.events.disconnects, 1)
        XCTAssertEqual(connection.events.reconnects, 0)
        XCTAssertThrowsError(try js.publish("app.t", body(1))) { error in
            XCTAssertEqual((error as? NATSError)?.kind, .connection, "\(error)")
        }
    }

    func testTLSWithACAFileVerifiesTheServer() throws {
        // A throwaway CA and a server certificate for 127.0.0.1, made with openssl.
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/openssl") else { throw XCTSkip("openssl is not installed") }
        let pki = directory + "/pki"
        try shell("""
            set -e; mkdir -p '\(pki)'; cd '\(pki)'
            openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 1 -subj /CN=sluice-test-ca
            openssl req -x509 -newkey rsa:2048 -nodes -keyout other.key -out other.pem -days 1 -subj /CN=sluice-other-ca
            openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj /CN=127.0.0.1
            printf 'subjectAltName=IP:127.0.0.1\\n' > ext.cnf
            openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 1 -extfile ext.cnf
            """)
        let server = try startServer(arguments: ["--tls", "--tlscert", pki + "/server.pem", "--tlskey", pki + "/server.key"])
        let tlsURL = "tls://127.0.0.1:\(server.port)"
        let connection = try connect([tlsURL]) { $0.caFile = pki + "/ca.pem" }
        let js = try connection.jetStream()
        try js.addStream(StreamConfig(name: "APP", subjects: ["app.>"]))
        XCTAssertEqual(try js.publish("app.t", body(1)).sequence, 1)
        // Without the CA, or with another CA, the server's certificate is not trusted, and the error says so.
        XCTAssertThrowsError(try connect([tlsURL]))
        XCTAssertThrowsError(try connect([tlsURL]) { $0.caFile = pki + "/other.pem" }) { error in
            let error = error as? NATSError
            XCTAssertTrue(error?.description.contains("SSL handshake error") == true, "\(String(describing: error))")
            XCTAssertTrue(error?.description.contains("not signed by the CA of ca_file") == true, "\(String(describing: error))")
        }
        XCTAssertThrowsError(try connect([tlsURL]) { $0.caFile = pki + "/missing.pem" }) { error in
            XCTAssertTrue("\(error)".contains("missing.pem"), "\(error)")
        }
    }

    func testURLSecretsAreHiddenInMessages() {
        XCTAssertEqual(redactNATSURL("nats://u:secret@h:4222"), "nats://u:***@h:4222")
        XCTAssertEqual(redactNATSURL("nats://tok@h:4222"), "nats://***@h:4222")
        XCTAssertEqual(redactNATSURL("nats://h:4222"), "nats://h:4222")
    }
}

/// Runs a shell script; throws when it fails.
func shell(_ script: String) throws {
    let pid = try spawn("/bin/sh", ["-c", script], logPath: "/dev/null")
    var status: Int32 = 0
    while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
    guard status == 0 else { throw TestFailure("script failed (\(status)): \(script)") }
}

import Foundation
import SluiceWire
import XCTest

/// A throwaway PostgreSQL cluster for one test case: initdb'd in a temporary directory, listening on
/// 127.0.0.1 at a free port, with the server settings of scripts/pg-cluster.sh (wal_level=logical, 20
/// WAL senders and slots, fsync on) and any a test chooses (`settings: [("wal_level", "replica")]`).
/// Settings go on the server's command line, which ALTER SYSTEM cannot override; pg-cluster.sh takes
/// none, so the cluster is started here the way that script starts it.
final class PostgresCluster {
    let directory: String
    let port: Int
    /// Server settings (`-c name=value`), the defaults first; a later one wins.
    let settings: [(String, String)]
    var url: String { "postgresql://postgres@127.0.0.1:\(port)/postgres" }

    static let defaultSettings = [("listen_addresses", "127.0.0.1"), ("wal_level", "logical"), ("max_wal_senders", "20"),
                                  ("max_replication_slots", "20"), ("fsync", "on"), ("shared_buffers", "128MB")]

    /// `tls:` turns ssl on with those certificates and lets TCP clients in only over TLS (`hostssl`).
    init(name: String, settings: [(String, String)] = [], tls: TLSCertificates? = nil) throws {
        port = try freePort()
        directory = NSTemporaryDirectory() + "sluice-test-pg-\(name)-\(port)-\(UUID().uuidString.prefix(8))"
        self.settings = Self.defaultSettings + settings
        try start()
        if let tls { try requireTLS(tls) }
    }

    /// Through ALTER SYSTEM (not the command line), so a test can turn ssl off again on reload.
    private func requireTLS(_ tls: TLSCertificates) throws {
        try query("ALTER SYSTEM SET ssl_cert_file = '\(tls.serverCertificate)'")
        try query("ALTER SYSTEM SET ssl_key_file = '\(tls.serverKey)'")
        try query("ALTER SYSTEM SET ssl = on")
        try ("local all all trust\nhostssl all all 127.0.0.1/32 trust\nhostssl replication all 127.0.0.1/32 trust\n")
            .write(toFile: directory + "/pg_hba.conf", atomically: false, encoding: .utf8)
        try query("SELECT pg_reload_conf()")
        // The postmaster reloads asynchronously: wait until a plain connection is refused.
        let deadline = Date().addingTimeInterval(30)
        while (try? PGConnection(url: url + "?sslmode=disable")) != nil {
            guard Date() < deadline else { throw TestFailure("ssl = on did not take effect within 30 s") }
            usleep(50_000)
        }
    }

    /// As scripts/pg-cluster.sh: PostgreSQL's newest installed binaries, run as the postgres user when
    /// root (initdb refuses root).
    private static let prelude = """
        set -euo pipefail
        bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
        [ -x "$bin/initdb" ] || { echo "PostgreSQL server binaries not found (scripts/setup.sh installs them)" >&2; exit 1; }
        as_owner() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

        """

    /// Starts the server (initdb first when the directory holds no cluster yet).
    func start() throws {
        let options = (["-p \(port)", "-k \(directory)"] + settings.map { "-c \($0.0)=\($0.1)" }).joined(separator: " ")
        try run(["/bin/bash", "-c", Self.prelude + """
            dir='\(directory)'
            mkdir -p "$dir"
            if [ "$(id -u)" = 0 ]; then chown postgres: "$dir"; fi
            if [ ! -f "$dir/PG_VERSION" ]; then
                as_owner "$bin/initdb" -D "$dir" -U postgres --auth=trust -E UTF8 --no-instructions >/dev/null
            fi
            as_owner "$bin/pg_ctl" -D "$dir" -l "$dir/server.log" -w -t 60 -o '\(options)' start >/dev/null
            """])
    }

    /// Stops the server (fast shutdown); the cluster stays and `start()` brings it back.
    func stop() {
        _ = try? run(["/bin/bash", "-c", Self.prelude + """
            dir='\(directory)'
            if [ -f "$dir/postmaster.pid" ]; then as_owner "$bin/pg_ctl" -D "$dir" -m fast -w stop >/dev/null || true; fi
            """])
    }

    /// Stops the server as a crash would (immediate shutdown: no checkpoint, WAL not yet written is lost).
    func crash() {
        _ = try? run(["/bin/bash", "-c", Self.prelude + """
            dir='\(directory)'
            if [ -f "$dir/postmaster.pid" ]; then as_owner "$bin/pg_ctl" -D "$dir" -m immediate -w stop >/dev/null || true; fi
            """])
    }

    func destroy() {
        stop()
        try? FileManager.default.removeItem(atPath: directory)
    }

    func connect() throws -> PGConnection { try PGConnection(url: url) }

    /// Puts `lines` (pg_hba.conf entries) before the trust entries initdb wrote, and reloads.
    func prependHBA(_ lines: [String]) throws {
        let path = directory + "/pg_hba.conf"
        let current = try String(contentsOfFile: path, encoding: .utf8)
        try (lines.joined(separator: "\n") + "\n" + current).write(toFile: path, atomically: false, encoding: .utf8)
        try query("SELECT pg_reload_conf()")
    }

    /// Runs SQL and returns the rows as text.
    @discardableResult
    func query(_ sql: String, _ parameters: [String?] = []) throws -> [[String?]] {
        let connection = try connect()
        let result = parameters.isEmpty ? try connection.execute(sql) : try connection.execute(sql, parameters)
        return (0..<result.rowCount).map { row in (0..<result.columnCount).map { result.string(row, $0) } }
    }

    func scalar(_ sql: String, _ parameters: [String?] = []) throws -> String? {
        try query(sql, parameters).first?.first ?? nil
    }

    /// The number of rows of `table`.
    func count(_ table: String) throws -> Int {
        Int(try scalar("SELECT count(*) FROM \(table)") ?? "0") ?? 0
    }
}

/// The repository's root, found from this file's path.
let repositoryRoot: String = {
    var url = URL(fileURLWithPath: #filePath)
    while url.path != "/" {
        url.deleteLastPathComponent()
        if FileManager.default.fileExists(atPath: url.path + "/Package.swift") { return url.path }
    }
    fatalError("repository root not found")
}()

/// A TCP port that accepts connections (the kernel completes them into the backlog) and never
/// answers: a hung server.
final class BlackHoleListener {
    let fd: Int32
    let port: Int

    init() throws {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        self.fd = fd
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) }
        }
        guard bound == 0, listen(fd, 64) == 0 else { throw TestFailure("cannot listen: errno \(errno)") }
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        port = Int(UInt16(bigEndian: address.sin_port))
    }

    func close() { _ = Glibc.close(fd) }
}

/// A TCP port nothing listens on right now.
func freePort() throws -> Int {
    let listener = try BlackHoleListener()
    defer { listener.close() }
    return listener.port
}

struct TestFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

import Foundation
import SluiceWire
import XCTest

/// A throwaway PostgreSQL cluster like `PostgresCluster`, but started with the server settings a
/// test chooses (e.g. `wal_level=replica`), the way scripts/pg-cluster.sh starts its clusters.
/// (pg-cluster.sh passes `-c wal_level=logical` on the command line, which ALTER SYSTEM cannot override.)
final class OpsCluster {
    let directory: String
    let port: Int
    let settings: [(String, String)]
    var url: String { "postgresql://postgres@127.0.0.1:\(port)/postgres" }

    init(name: String, settings: [(String, String)]) throws {
        port = try freePort()
        directory = NSTemporaryDirectory() + "sluice-test-opspg-\(name)-\(port)-\(UUID().uuidString.prefix(8))"
        self.settings = settings
        try start()
    }

    private static let prelude = """
        set -euo pipefail
        bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
        [ -x "$bin/initdb" ] || { echo "PostgreSQL server binaries not found" >&2; exit 1; }
        as_owner() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
        """

    func start() throws {
        let options = (["-c listen_addresses=127.0.0.1", "-p \(port)", "-k \(directory)",
                        "-c max_wal_senders=20", "-c max_replication_slots=20", "-c fsync=on", "-c shared_buffers=128MB"]
            + settings.map { "-c \($0.0)=\($0.1)" }).joined(separator: " ")
        let script = Self.prelude + """

            dir='\(directory)'
            mkdir -p "$dir"
            if [ "$(id -u)" = 0 ]; then chown postgres: "$dir"; fi
            if [ ! -f "$dir/PG_VERSION" ]; then
                as_owner "$bin/initdb" -D "$dir" -U postgres --auth=trust -E UTF8 --no-instructions >/dev/null
            fi
            as_owner "$bin/pg_ctl" -D "$dir" -l "$dir/server.log" -w -t 60 -o '\(options)' start >/dev/null
            """
        try run(["/bin/bash", "-c", script])
    }

    func stop() {
        let script = Self.prelude + """

            dir='\(directory)'
            if [ -f "$dir/postmaster.pid" ]; then as_owner "$bin/pg_ctl" -D "$dir" -m fast -w stop >/dev/null || true; fi
            """
        _ = try? run(["/bin/bash", "-c", script])
    }

    func destroy() {
        stop()
        try? FileManager.default.removeItem(atPath: directory)
    }

    func connect() throws -> PGConnection { try PGConnection(url: url) }

    @discardableResult
    func query(_ sql: String, _ parameters: [String?] = []) throws -> [[String?]] {
        let connection = try connect()
        let result = parameters.isEmpty ? try connection.execute(sql) : try connection.execute(sql, parameters)
        return (0..<result.rowCount).map { row in (0..<result.columnCount).map { result.string(row, $0) } }
    }

    func scalar(_ sql: String, _ parameters: [String?] = []) throws -> String? {
        try query(sql, parameters).first?.first ?? nil
    }
}

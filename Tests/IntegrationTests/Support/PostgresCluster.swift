import Foundation
import SluiceWire
import XCTest

/// A throwaway PostgreSQL cluster (wal_level=logical) started by scripts/pg-cluster.sh for one test case.
final class PostgresCluster {
    let directory: String
    let port: Int
    var url: String { "postgresql://postgres@127.0.0.1:\(port)/postgres" }

    init(name: String) throws {
        port = try freePort()
        directory = NSTemporaryDirectory() + "sluice-test-pg-\(name)-\(port)-\(UUID().uuidString.prefix(8))"
        try start()
    }

    func start() throws {
        try run([repositoryRoot + "/scripts/pg-cluster.sh", "start", directory, String(port)])
    }

    func stop() {
        _ = try? run([repositoryRoot + "/scripts/pg-cluster.sh", "stop", directory])
    }

    func destroy() {
        stop()
        try? FileManager.default.removeItem(atPath: directory)
    }

    func connect() throws -> PGConnection { try PGConnection(url: url) }

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

/// A TCP port nothing listens on right now.
func freePort() throws -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    address.sin_port = 0
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let bound = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) }
    }
    guard bound == 0 else { throw TestFailure("bind failed") }
    _ = withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
    }
    return Int(UInt16(bigEndian: address.sin_port))
}

struct TestFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// Runs a command to completion; throws with its output if it fails.
@discardableResult
func run(_ arguments: [String], environment: [String: String] = [:]) throws -> String {
    let path = NSTemporaryDirectory() + "sluice-run-\(UUID().uuidString)"
    defer { try? FileManager.default.removeItem(atPath: path) }
    let status = try Child(arguments, output: path, environment: environment).wait()
    let text = (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
    guard status == 0 else {
        throw TestFailure("\(arguments.joined(separator: " ")) exited \(status): \(text)")
    }
    return text
}

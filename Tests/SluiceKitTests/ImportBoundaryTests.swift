import Foundation
import XCTest

/// Built-in connectors use only what a third-party author can use: the SDK (SluiceKit), the wire
/// wrappers, the NATS wrapper and the pgoutput decoder (library products), Foundation, swift-log and swift-metrics,
/// the C library, and libcurl (CCurl: a system library module that a third-party package declares the same
/// way). Never the runtime, the log, the command line, or internals through `@testable`.
final class ImportBoundaryTests: XCTestCase {
    static let allowed: Set<String> = [
        "SluiceKit", "SluiceWire", "PGOutput", "SluiceNATS", "Foundation", "FoundationNetworking", "Logging", "Metrics", "Glibc", "Dispatch",
        "CCurl",
    ]

    func testConnectorsImportOnlyWhatThirdPartiesCan() throws {
        let root = kitRepositoryRoot + "/connectors"
        let files = try swiftFiles(under: root)
        XCTAssertGreaterThanOrEqual(files.count, 10, "the connectors' sources were found under \(root)")
        var imports = 0
        for file in files {
            let text = try String(contentsOfFile: file, encoding: .utf8)
            for (number, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
                guard let statement = Self.importStatement(line) else { continue }
                imports += 1
                let place = "\(file.dropFirst(kitRepositoryRoot.count + 1)):\(number + 1)"
                XCTAssertTrue(statement.attributes.isEmpty,
                              "\(place): '\(line.trimmingCharacters(in: .whitespaces))' — no attributes on imports (a third party cannot use @testable or @_spi)")
                XCTAssertTrue(Self.allowed.contains(statement.module),
                              "\(place): imports \(statement.module); connectors may import only \(Self.allowed.sorted().joined(separator: ", "))")
            }
        }
        XCTAssertGreaterThan(imports, files.count, "import statements were recognised")
    }

    /// The layers of the picture in DESIGN.md, as what each module may import. An arrow the wrong way
    /// (the runtime reaching for a connector or the wire layer, the CLI for the embedded log) fails here.
    static let layers: [(folder: String, allowed: Set<String>, exceptions: [String: Set<String>])] = {
        // Synchronization (Atomic, Mutex) ships with the toolchain like Dispatch.
        let system: Set<String> = ["Foundation", "FoundationNetworking", "Glibc", "Darwin", "Dispatch", "Synchronization"]
        return [
            ("Sources/SluiceKit", system.union(["Logging", "Metrics", "CSluiceSupport"]), [:]),
            ("Sources/PGOutput", system, [:]),
            ("Sources/SluiceWire", system.union(["CLibPQ", "CSQLite", "PGOutput"]), [:]),
            ("Sources/SluiceLog", system.union(["SluiceKit", "CSluiceSupport", "Logging", "Metrics"]), [:]),
            ("Sources/SluiceNATS", system.union(["CNATS"]), [:]),
            ("Sources/SluiceJetStream", system.union(["SluiceKit", "SluiceNATS", "CSluiceSupport", "Logging"]), [:]),
            // The runtime: the SDK, and the embedded log only where topic backends are wired.
            ("Sources/SluiceRuntime", system.union(["SluiceKit", "Logging", "Metrics", "Yams", "Prometheus", "FlyingFox"]),
             ["TopicStores.swift": ["SluiceLog", "SluiceJetStream"]]),
            ("Sources/SluiceConnectors", system.union(["SluiceKit", "PostgresSource", "PostgresSink", "SQLiteSink", "FileSink",
                                                       "ExecConnectors", "HTTPSink", "NATSSink", "SluiceNATS"]), [:]),
            // The CLI: arguments and output, through the runtime and the SDK.
            ("Sources/SluiceCLI", system.union(["SluiceKit", "SluiceRuntime", "SluiceConnectors", "SluiceVerify", "ArgumentParser", "Logging"]), [:]),
            // Verify reads sources and SQL targets through the wire layer, and the SDK's connector protocols.
            ("Sources/SluiceVerify", system.union(["SluiceKit", "SluiceWire"]), [:]),
            // The conformance kit builds its workload topics in an embedded log of its own.
            ("Sources/SluiceConformance", system.union(["SluiceKit", "Logging"]), ["WorkloadTopics.swift": ["SluiceLog"]]),
        ]
    }()

    func testEachLayerImportsOnlyWhatItsLayerMay() throws {
        for layer in Self.layers {
            let root = kitRepositoryRoot + "/" + layer.folder
            let files = try swiftFiles(under: root)
            XCTAssertFalse(files.isEmpty, "\(layer.folder) has sources")
            for file in files {
                let name = String(file.split(separator: "/").last!)
                let allowed = layer.allowed.union(layer.exceptions[name] ?? [])
                let text = try String(contentsOfFile: file, encoding: .utf8)
                for (number, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
                    guard let statement = Self.importStatement(line) else { continue }
                    XCTAssertTrue(allowed.contains(statement.module),
                                  "\(layer.folder)/\(name):\(number + 1) imports \(statement.module); this layer may import only \(allowed.sorted().joined(separator: ", "))")
                }
            }
        }
    }

    /// The parser sees through attributes, kinds and submodules, and ignores comments and strings.
    func testImportStatementParsing() {
        XCTAssertEqual(Self.importStatement("import SluiceKit")?.module, "SluiceKit")
        XCTAssertEqual(Self.importStatement("  @testable import SluiceRuntime")?.module, "SluiceRuntime")
        XCTAssertEqual(Self.importStatement("@testable import SluiceRuntime")?.attributes, ["@testable"])
        XCTAssertEqual(Self.importStatement("@_exported @_spi(X) import SluiceLog")?.attributes.count, 2)
        XCTAssertEqual(Self.importStatement("import struct SluiceCLI.SluiceMain")?.module, "SluiceCLI")
        XCTAssertEqual(Self.importStatement("import func Glibc.write // raw")?.module, "Glibc")
        XCTAssertEqual(Self.importStatement("public import Foundation")?.module, "Foundation")
        XCTAssertNil(Self.importStatement("// import SluiceRuntime"))
        XCTAssertNil(Self.importStatement("let text = \"import SluiceLog\""))
        XCTAssertNil(Self.importStatement("importantValue = 1"))
    }

    struct ImportStatement {
        var attributes: [String]
        var module: String
    }

    /// `[@attributes] [access] import [kind] Module[.Sub]` at the start of a line, or nil.
    static func importStatement(_ line: Substring) -> ImportStatement? {
        var words = line.split(whereSeparator: \.isWhitespace).map(String.init)
        var attributes: [String] = []
        while let first = words.first, first.hasPrefix("@") {
            attributes.append(first)
            words.removeFirst()
        }
        if let first = words.first, ["public", "package", "internal", "fileprivate", "private"].contains(first) { words.removeFirst() }
        guard words.first == "import", words.count >= 2 else { return nil }
        words.removeFirst()
        let kinds: Set<String> = ["typealias", "struct", "class", "enum", "protocol", "let", "var", "func"]
        if let kind = words.first, kinds.contains(kind), words.count >= 2 { words.removeFirst() }
        guard let path = words.first?.split(separator: ".").first else { return nil }
        return ImportStatement(attributes: attributes, module: String(path))
    }

    static func importStatement(_ line: String) -> ImportStatement? { importStatement(Substring(line)) }

    private func swiftFiles(under root: String) throws -> [String] {
        guard let enumerator = FileManager.default.enumerator(atPath: root) else { throw CocoaError(.fileNoSuchFile) }
        return enumerator.compactMap { $0 as? String }.filter { $0.hasSuffix(".swift") }.sorted().map { root + "/" + $0 }
    }
}

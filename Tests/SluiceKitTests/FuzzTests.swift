import Foundation
import FuzzSupport
import SluiceConnectors
import SluiceKit
import SluiceRuntime
import XCTest

/// Seeded, bounded random mutation of what Sluice parses: topic record bodies (as read back from a
/// topic, whichever backend) and configuration files. Each input is accepted or refused with the
/// parser's typed error — `RecordError`, `ConfigError(s)` — never a trap; a record that decodes can be
/// walked to its end.
final class FuzzTests: XCTestCase {
    /// One valid body of each record kind and change operation.
    static func recordSeeds() -> [(kind: UInt8, body: [UInt8])] {
        var seeds: [(UInt8, [UInt8])] = []
        func add(_ kind: RecordKind, _ write: (inout RecordBody) -> Void) {
            var body = RecordBody()
            write(&body)
            seeds.append((kind.rawValue, body.bytes))
        }
        add(.begin) { BeginRecord(xid: 7, commitLSN: LSN(0x1_0000_0100), commitTime: 1_700_000_000_000_000).encode(into: &$0) }
        add(.commit) {
            CommitRecord(xid: 7, commitLSN: LSN(0x1_0000_0100), endLSN: LSN(0x1_0000_0138), commitTime: 1, eventCount: 3,
                         totalEvents: 9).encode(into: &$0)
        }
        add(.relation) { keyedTable.encode(into: &$0) }
        add(.relation) {
            RelationSchema(id: 9, schema: "Mixed \"Case\"", table: "ünïcode 🐘", replicaIdentity: .full, columns: [
                RelationSchema.Column(name: "state", typeOID: 70_000, typeModifier: -1, typeName: "mood", isPrimaryKey: false,
                                      isReplicaIdentity: true, isNotNull: true, enumType: .init(schema: "public", name: "mood", labels: ["ok", "sad"])),
            ]).encode(into: &$0)
        }
        var tuple = RecordBody()
        Tuple.encode(["1", nil, "a longer text value"], into: &tuple)
        let row = tuple.bytes
        row.withUnsafeBytes { row in
            add(.change) { ChangeRecord.encode(operation: .insert, relationID: 16_385, lsn: LSN(1), new: row, into: &$0) }
            add(.change) {
                ChangeRecord.encode(operation: .update, relationID: 16_385, lsn: LSN(2), oldKind: .key, old: row, new: row, into: &$0)
            }
            add(.change) { ChangeRecord.encode(operation: .delete, relationID: 16_385, lsn: LSN(3), oldKind: .full, old: row, into: &$0) }
            add(.change) { ChangeRecord.encode(operation: .truncate, relationID: 16_385, lsn: LSN(4), truncateOptions: 1, into: &$0) }
        }
        return seeds
    }

    func testMutatedRecordBodiesDecodeOrThrowRecordError() {
        let seeds = Self.recordSeeds()
        var mutator = Mutator(seed: 0x5EED_0101)
        var decoded = 0, refused = 0
        for iteration in 0..<(40_000 * fuzzScale) {
            let seed = seeds[iteration % seeds.count]
            let body = mutator.mutate(seed.body, others: seeds.map(\.body))
            // Records sit inside a larger buffer when read: a body that ran past its range would show.
            let storage = [0xEE] + body + [0xEE, 0xEE]
            do {
                walk(try TopicRecord.decode(kind: iteration % 97 == 0 ? UInt8(iteration % 7) : seed.kind,
                                            storage: storage, body: 1..<(1 + body.count)))
                decoded += 1
            } catch {
                refused += 1
            }
        }
        XCTAssertGreaterThan(decoded, 400, "some mutants still decode")
        XCTAssertGreaterThan(refused, 20_000)
    }

    private func walk(_ record: TopicRecord) {
        guard case let .change(change) = record else { return }
        for tuple in [change.old, change.new].compactMap({ $0 }) {
            XCTAssertEqual(tuple.values.count, tuple.count)
            for value in tuple { _ = value.string }
        }
    }

    func testMutatedConfigurationFilesLoadOrThrowConfigError() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-config-fuzz-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let example = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../examples/sluice.yml")
        let seeds = [
            try [UInt8](Data(contentsOf: example)),
            Array("""
                data_dir: ./d
                logging: {format: json, level: debug}
                metrics: {listen: "127.0.0.1:9187"}
                retention: {max_bytes: 10GB, max_age: 7d}
                sources:
                  - {name: app, type: postgres, url: "postgresql://u:${file:pw}@127.0.0.1:5432/app?sslmode=verify-full", tables: [public.a, "\\"Q\\".b"]}
                sinks:
                  - {name: s, type: sqlite, path: ./r.db, topics: [app]}
                  - {name: h, type: http, url: "https://h.example.com/x", headers: {Authorization: "Bearer ${TOKEN}"}}
                topics: {backend: jetstream, servers: [nats://127.0.0.1:4222], replicas: 3}
                """.utf8),
        ]
        try "pw\n".write(toFile: directory + "/pw", atomically: true, encoding: .utf8)
        for name in ["APP_DB_PASSWORD", "HOOK_TOKEN", "TOKEN"] { setenv(name, "fuzz-\(name)", 1) }
        defer {
            for name in ["APP_DB_PASSWORD", "HOOK_TOKEN", "TOKEN"] { unsetenv(name) }
            Secrets.reset()  // the mutants registered theirs
        }
        var mutator = Mutator(seed: 0x5EED_0201)
        var loaded = 0, refused = 0
        let path = directory + "/sluice.yml"
        for iteration in 0..<(800 * fuzzScale) {
            let text = mutator.mutate(seeds[iteration % seeds.count], others: seeds)
            try Data(text).write(to: URL(fileURLWithPath: path))
            do {
                let config = try SluiceConfig.load(path: path, registry: .builtin)
                // Each connector checks its own section; they may refuse with a ConfigError too.
                for section in config.sources { _ = try? ConnectorRegistry.builtin.sources[section.type]?.init(config: section) }
                for sink in config.sinks { _ = try? ConnectorRegistry.builtin.sinks[sink.config.type]?.init(config: sink.config) }
                loaded += 1
            } catch is ConfigError {
                refused += 1
            } catch let errors as ConfigErrors {
                XCTAssertFalse(errors.errors.isEmpty, "iteration \(iteration)")
                refused += 1
            } catch {
                XCTFail("iteration \(iteration): \(type(of: error)) is not a ConfigError(s): \(error)\n\(String(decoding: text, as: UTF8.self))")
            }
        }
        XCTAssertGreaterThan(loaded, 10)
        XCTAssertGreaterThan(refused, 300)
    }
}

import Foundation
import SluiceConnectors
import SluiceKit
import SluiceRuntime
import XCTest

/// `aggregates:` of the SQL sinks: a bad entry is a `ConfigError` naming its key (exit 2).
final class AggregateConfigTests: XCTestCase {
    func sinkError(_ aggregate: String, type: String = "sqlite") throws -> ConfigError? {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-agg-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let target = type == "sqlite" ? "path: a.db" : "url: 'postgresql://h/d'"
        let text = """
            sources:
              - {name: app, type: postgres, url: 'postgresql://sluice@127.0.0.1:5432/app'}
            sinks:
              - name: s
                type: \(type)
                \(target)
                aggregates:
                  - \(aggregate)
            """
        try text.write(toFile: directory + "/c.yml", atomically: true, encoding: .utf8)
        let section = try SluiceConfig.load(path: directory + "/c.yml", registry: .builtin).sinks[0].config
        do {
            _ = try ConnectorRegistry.builtin.sinks[type]!.init(config: section)
            return nil
        } catch let error as ConfigError {
            return error
        }
    }

    let good = "{table: per_minute, from: orders, group_by: [region], window: {tumbling: 1m, time: created_at}, measures: {n: 'count(*)'}}"

    func testAGoodEntryIsAccepted() throws {
        XCTAssertNil(try sinkError(good))
        XCTAssertNil(try sinkError(good, type: "postgres"))
        XCTAssertNil(try sinkError("{table: h, from: orders, window: {hopping: 5m, every: 1m, time: commit_time}, measures: {m: 'max(amount)'}, retain: 30d}"))
    }

    func testBadEntriesNameTheirKey() throws {
        let cases: [(String, String, String)] = [
            ("{table: t, from: orders, window: {tumbling: 1m, time: c}, measures: {n: 'median(x)'}}", "aggregates[0].measures.n", "is not a measure"),
            ("{table: t, from: orders, window: {tumbling: soon, time: c}, measures: {n: 'count(*)'}}", "aggregates[0].window.tumbling", "not a positive duration"),
            ("{table: t, from: orders, window: {hopping: 1m, time: c}, measures: {n: 'count(*)'}}", "aggregates[0].window.every", "needs every"),
            ("{table: t, from: orders, window: {hopping: 1m, every: 5m, time: c}, measures: {n: 'count(*)'}}", "aggregates[0].window.every", "must not be longer"),
            ("{table: t, from: orders, window: {tumbling: 1m}, measures: {n: 'count(*)'}}", "aggregates[0].window.time", "expected a timestamp"),
            ("{table: t, from: orders, window: {tumbling: 1m, time: c}}", "aggregates[0].measures", "expected a mapping of measures"),
            ("{table: t, from: orders, window: {tumbling: 1m, time: c}, measures: {n: 'count(*)'}, where: 'a >'}", "aggregates[0].where", "does not parse"),
            ("{table: t, from: orders, window: {tumbling: 1m, time: c}, measures: {n: 'count(*)'}, retain: forever}", "aggregates[0].retain", "not a duration"),
            ("{table: t, window: {tumbling: 1m, time: c}, measures: {n: 'count(*)'}}", "aggregates[0].from", "is required"),
            ("{table: t, from: orders, window: {tumbling: 1m, time: c}, measures: {window_start: 'count(*)'}}", "aggregates[0].measures.window_start", "taken"),
            ("{table: t, from: orders, windows: {tumbling: 1m, time: c}, measures: {n: 'count(*)'}}", "aggregates[0].windows", "unknown key"),
        ]
        for (entry, key, message) in cases {
            let error = try sinkError(entry)
            XCTAssertEqual(error?.key, "sinks[0] (s).\(key)", entry)
            XCTAssertTrue(error?.message.contains(message) ?? false, "\(entry): \(String(describing: error))")
        }
    }
}

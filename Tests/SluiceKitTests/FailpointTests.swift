import Foundation
import SluiceKit
import XCTest

/// The SLUICE_FAILPOINTS parser, and the catalog kept in step with the call sites and the docs.
/// (Firing is tested on the real binary: IntegrationTests/FailpointCrashTests.)
final class FailpointTests: XCTestCase {
    typealias Rule = Failpoint.Rule

    func testParsesNamesActionsAndHitNumbers() throws {
        XCTAssertEqual(try Failpoint.parse(""), [])
        XCTAssertEqual(try Failpoint.parse("  "), [])
        XCTAssertEqual(try Failpoint.parse("log.before_fsync"), [Rule(name: "log.before_fsync", action: .abort)])
        XCTAssertEqual(try Failpoint.parse("log.after_fsync:abort"), [Rule(name: "log.after_fsync")])
        XCTAssertEqual(try Failpoint.parse("sink.postgres.after_commit@3"),
                       [Rule(name: "sink.postgres.after_commit", onHit: 3)])
        XCTAssertEqual(try Failpoint.parse("sink.postgres.after_commit@12:exit(42)"),
                       [Rule(name: "sink.postgres.after_commit", onHit: 12, action: .exit(42))])
        XCTAssertEqual(try Failpoint.parse(" source.before_confirm:exit(0) , sink.sqlite.before_commit:sleep(250)"), [
            Rule(name: "source.before_confirm", action: .exit(0)),
            Rule(name: "sink.sqlite.before_commit", action: .sleep(milliseconds: 250)),
        ])
        XCTAssertEqual(try Failpoint.parse("sink.file.rotate:exit(255),backfill.before_save_progress@1:sleep(0)"), [
            Rule(name: "sink.file.rotate", action: .exit(255)),
            Rule(name: "backfill.before_save_progress", onHit: 1, action: .sleep(milliseconds: 0)),
        ])
        XCTAssertEqual(try Failpoint.parse("my.point", known: ["my.point"]), [Rule(name: "my.point")])
    }

    func testRejectsBadSpecsNamingTheVariable() {
        let bad: [(spec: String, mentions: String)] = [
            ("log.befor_fsync", "unknown failpoint 'log.befor_fsync'"),
            ("log.before_fsync,", "empty entry"),
            (",log.before_fsync", "empty entry"),
            ("log.before_fsync,,log.after_fsync", "empty entry"),
            ("log.before_fsync@0", "'@0'"),
            ("log.before_fsync@-2", "'@-2'"),
            ("log.before_fsync@+2", "'@+2'"),
            ("log.before_fsync@", "'@'"),
            ("log.before_fsync@two", "'@two'"),
            ("log.before_fsync:kill", "unknown action 'kill'"),
            ("log.before_fsync:", "unknown action ''"),
            ("log.before_fsync:exit", "unknown action 'exit'"),
            ("log.before_fsync:exit()", "exit code"),
            ("log.before_fsync:exit(256)", "exit code"),
            ("log.before_fsync:exit(-1)", "exit code"),
            ("log.before_fsync:sleep(1.5)", "milliseconds"),
            ("log.before_fsync:sleep(3600001)", "milliseconds"),
            ("log.before_fsync:abort(1)", "unknown action"),
            ("log.before_fsync:3", "unknown action"),
            ("log.before_fsync,log.before_fsync:exit(1)", "named twice"),
            ("LOG.BEFORE_FSYNC", "unknown failpoint"),
            ("log.before_fsync:exit(1)@2", "unknown action"),
        ]
        for (spec, mentions) in bad {
            do {
                let rules = try Failpoint.parse(spec)
                XCTFail("'\(spec)' was accepted as \(rules)")
            } catch {
                XCTAssertTrue(error.message.hasPrefix("SLUICE_FAILPOINTS=\(spec): "), "'\(spec)': \(error.message)")
                XCTAssertTrue(error.message.contains(mentions), "'\(spec)' should mention \(mentions): \(error.message)")
            }
        }
    }

    func testUnknownNamesListTheKnownOnes() {
        XCTAssertThrowsError(try Failpoint.parse("nope")) { error in
            for name in Failpoint.catalog.keys { XCTAssertTrue("\(error)".contains(name), "\(error) lists \(name)") }
        }
    }

    func testActionsDescribeThemselvesInTheirSyntax() throws {
        for action in [Failpoint.Action.abort, .exit(7), .sleep(milliseconds: 125)] {
            XCTAssertEqual(try Failpoint.parse("log.before_fsync:\(action)").first?.action, action)
        }
    }

    /// Every `Failpoint.hit("…")` in the sources names a catalog entry, every entry is hit exactly once,
    /// and docs/failpoints.md documents each.
    func testCatalogMatchesCallSitesAndDocs() throws {
        var sites: [String: [String]] = [:]
        for folder in ["Sources", "connectors"] {
            let root = kitRepositoryRoot + "/" + folder
            let files = FileManager.default.enumerator(atPath: root)?.compactMap { $0 as? String }.filter { $0.hasSuffix(".swift") } ?? []
            for file in files {
                let text = try String(contentsOfFile: root + "/" + file, encoding: .utf8)
                for match in text.matches(of: /Failpoint\.hit\("([^"]*)"\)/) {
                    sites[String(match.1), default: []].append(folder + "/" + file)
                }
            }
        }
        XCTAssertGreaterThanOrEqual(sites.count, 10, "call sites were found: \(sites)")
        for (name, files) in sites {
            XCTAssertNotNil(Failpoint.catalog[name], "\(files): Failpoint.hit(\"\(name)\") is not in Failpoint.catalog")
        }
        let docs = try String(contentsOfFile: kitRepositoryRoot + "/docs/failpoints.md", encoding: .utf8)
        for name in Failpoint.catalog.keys {
            XCTAssertEqual(sites[name]?.count, 1, "\(name) is hit at exactly one place: \(sites[name] ?? [])")
            XCTAssertTrue(docs.contains("`\(name)`"), "docs/failpoints.md documents `\(name)`")
        }
    }
}

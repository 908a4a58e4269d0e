import Foundation
import SluiceKit
import SluiceWire
import XCTest

/// SIGKILLs while transactions flow through a pipeline with transforms on: afterwards the mirror
/// targets equal what the transforms make of the source (glob, rename, where with rows moving in and
/// out, exclude, hash and redact masks, the xid metadata equal to each row's xmin), and the history
/// tables hold every committed change exactly once, in commit order.
final class TransformCrashLoopTests: SinkTestCase {
    override var fixtureName: String { "transform-kill" }
    static let maskKey = "crash-loop-key"

    func testKillingTheDaemonKeepsTransformedTargetsExact() throws {
        try target.query("CREATE DATABASE history")
        let historyURL = String(target.url.dropLast("postgres".count)) + "history"
        let historyPath = directory + "/history.db"
        try source.query("""
            CREATE TABLE customers (id int PRIMARY KEY, email text, ssn text, phone text, amount numeric(10,2));
            CREATE TABLE orders (id int PRIMARY KEY, status text NOT NULL, amount numeric(12,2), note text);
            CREATE TABLE audit_log (id int PRIMARY KEY, what text);
            CREATE TABLE events (id int PRIMARY KEY, kind text);
            ALTER TABLE events REPLICA IDENTITY FULL;
            -- What the history tables must hold: every committed change of events, in order (one writer).
            CREATE TABLE events_log (seq bigserial PRIMARY KEY, op text, id int, kind text);
            CREATE FUNCTION log_event() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
              IF TG_OP = 'DELETE' THEN INSERT INTO events_log (op, id, kind) VALUES ('delete', OLD.id, OLD.kind); RETURN OLD; END IF;
              INSERT INTO events_log (op, id, kind) VALUES (lower(TG_OP), NEW.id, NEW.kind); RETURN NEW;
            END $$;
            CREATE TRIGGER events_log AFTER INSERT OR UPDATE OR DELETE ON events FOR EACH ROW EXECUTE FUNCTION log_event();
            """)
        let keys = [
            "    tables: [\"public.*\", \"!public.audit_*\"]",
            "    rename: {public.orders: analytics.orders}",
            "    where: {public.orders: \"amount > 100 AND status <> 'draft'\"}",
            "    columns: {public.customers: {exclude: [ssn], mask: {email: hash, phone: redact}}}",
            "    mask_key: \(Self.maskKey)",
            "    metadata: [xid]",
        ]
        var sinks = ["  - name: replica", "    type: postgres", "    url: \(target.url)", "    topics: [app]"] + keys
        sinks += ["  - name: local", "    type: sqlite", "    path: \(sqlitePath)", "    topics: [app]"] + keys
        sinks += ["  - name: history", "    type: postgres", "    url: \(historyURL)", "    tables: [public.events]",
                  "    rename: {public.events: history.events}", "    mode: history"]
        sinks += ["  - name: history_lite", "    type: sqlite", "    path: \(historyPath)", "    tables: [public.events]", "    mode: history"]
        try writeSourceConfig(tables: ["public.customers", "public.orders", "public.audit_log", "public.events"], sinks: sinks)

        func positions() -> [UInt64?] {
            let history = try? PGConnection(url: historyURL)
                .execute("SELECT lsn::text FROM public.sluice_offsets WHERE sink = 'history'").string(0, 0).map(lsnValue)
            let historyLite = try? SQLiteDatabase(path: historyPath).query("SELECT lsn FROM sluice_offsets").first?[0].flatMap { $0 }.map(lsnValue)
            return [try? postgresTargetLSN(), try? sqliteTargetLSN(), history ?? nil, historyLite ?? nil]
        }

        // The writer starts once the (empty) snapshot is taken, so every row reaches the targets as a change.
        var daemon = try startDaemon()
        try waitForSlotActive()
        try eventually(timeout: 60, "the initial snapshot to complete" + logTail) {
            ((try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "").contains("initial snapshot done")
        }
        let stop = SinkTestFlag()
        let stats = SinkTestStats()
        let url = source.url
        let writer = SinkTestWorker("writer") { Self.workload(url: url, stop: stop, stats: stats) }
        defer { writer.stop() }

        var kills = 0
        var killsWhileApplying = 0
        var last = positions()
        let started = Date()
        while kills < 6 || (Date().timeIntervalSince(started) < 20 && kills < 12) {
            if kills > 0 { daemon = try startDaemon() }
            try eventually(timeout: 120, "incarnation \(kills + 1) to apply transactions" + logTail) { positions() != last }
            usleep(UInt32.random(in: 0...400_000))
            daemon.kill()
            kills += 1
            let now = positions()
            if now != last { killsWhileApplying += 1 }
            last = now
        }
        writer.stop()
        print("transform crash loop: \(kills) kills, \(killsWhileApplying) while applying; workload \(stats.summary)")
        XCTAssertGreaterThan(stats["committed"], 50, "the workload ran: \(stats.summary) \(stats.notes)")

        daemon = try startDaemon()
        try waitForSlotActive()
        let end = try commitMarked("INSERT INTO audit_log VALUES (-1, 'final')")
        try eventually(timeout: 150, "every sink to reach \(lsnText(end))" + logTail) { positions().allSatisfy { ($0 ?? 0) >= end } }
        XCTAssertEqual(daemon.terminate(), 0, logTail)

        // Mirrors: the transformed source.
        let hash = HMACSHA256(key: Array(Self.maskKey.utf8))
        let orders = try source.query("""
            SELECT id, status, amount, note, xmin::text FROM orders WHERE amount > 100 AND status <> 'draft'
            """).map(rowLine).sorted()
        let customers = try source.query("SELECT id, email, amount, xmin::text FROM customers").map { row in
            rowLine([row[0], row[1].map { hash.hex(Array($0.utf8)) }, nil, row[2], row[3]])
        }.sorted()
        XCTAssertGreaterThan(orders.count, 5, "rows passed the predicate")
        let pgOrders = try target.query("SELECT id, status, amount, note, _sluice_xid FROM analytics.orders").map(rowLine).sorted()
        let pgCustomers = try target.query("SELECT id, email, phone, amount, _sluice_xid FROM public.customers").map(rowLine).sorted()
        let lite = try SQLiteDatabase(path: sqlitePath, readOnly: true)
        let liteOrders = try lite.query("SELECT id, status, amount, note, _sluice_xid FROM analytics_orders").map(rowLine).sorted()
        let liteCustomers = try lite.query("SELECT id, email, phone, amount, _sluice_xid FROM customers").map(rowLine).sorted()
        for (name, expected, actual) in [("postgres analytics.orders", orders, pgOrders), ("sqlite analytics_orders", orders, liteOrders),
                                         ("postgres customers", customers, pgCustomers), ("sqlite customers", customers, liteCustomers)] {
            if let diff = rowsDifference(expected: expected, actual: actual) { XCTFail("\(name): \(diff)" + logTail) }
        }
        XCTAssertNil(try target.scalar("SELECT to_regclass('public.audit_log')::text"))

        // History: every committed change once, in commit order.
        let expected = try source.query("SELECT op, id, kind FROM events_log ORDER BY seq").map(rowLine)
        XCTAssertGreaterThan(expected.count, 20)
        let history = try PGConnection(url: historyURL).execute("SELECT _sluice_op, id, kind FROM history.events ORDER BY _sluice_lsn")
        XCTAssertEqual((0..<history.rowCount).map { row in rowLine((0..<3).map { history.string(row, $0) }) }, expected,
                       "postgres history" + logTail)
        XCTAssertEqual(try SQLiteDatabase(path: historyPath, readOnly: true).query("SELECT _sluice_op, id, kind FROM events ORDER BY rowid")
            .map(rowLine), expected, "sqlite history")
    }

    /// Small transactions (one in 13 rolled back): orders moving in and out of the predicate, customers
    /// with changing emails, events inserted, updated and deleted.
    static func workload(url: String, stop: SinkTestFlag, stats: SinkTestStats) {
        guard let db = try? PGConnection(url: url) else { return stats.note("cannot connect") }
        var next = 0
        var sequence = 0
        let statuses = ["draft", "paid", "shipped"]
        while !stop.isSet && sequence < 5000 {
            sequence += 1
            runWorkloadTransaction(on: db, sequence: sequence, stats: stats, label: "") {
                for _ in 0..<Int.random(in: 1...4) {
                    let id = String(Int.random(in: 1...max(1, next)))
                    let amount = String(format: "%.2f", Double.random(in: 0...300))
                    switch Int.random(in: 0..<10) {
                    case 0, 1:
                        next += 1
                        try db.execute("INSERT INTO orders VALUES ($1, $2, $3, $4)", [String(next), statuses.randomElement()!, amount, "n\(sequence)"])
                        try db.execute("INSERT INTO customers VALUES ($1, $2, $3, $4, $5)", [String(next), "u\(next)@x.org", "ssn", "555", amount])
                    case 2, 3:
                        try db.execute("UPDATE orders SET amount = $2, note = $3 WHERE id = $1", [id, amount, "u\(sequence)"])
                    case 4:
                        try db.execute("UPDATE orders SET status = $2 WHERE id = $1", [id, statuses.randomElement()!])
                    case 5:
                        try db.execute("DELETE FROM orders WHERE id = $1", [id])
                    case 6:
                        try db.execute("UPDATE customers SET email = $2, amount = $3 WHERE id = $1", [id, "e\(sequence)@x.org", amount])
                    case 7:
                        try db.execute("INSERT INTO events VALUES ($1, $2) ON CONFLICT (id) DO UPDATE SET kind = excluded.kind",
                                       [String(Int.random(in: 1...60)), "k\(sequence)"])
                    case 8:
                        try db.execute("DELETE FROM events WHERE id = $1", [String(Int.random(in: 1...60))])
                    default:
                        try db.execute("DELETE FROM customers WHERE id = $1", [id])
                    }
                }
            }
        }
    }
}

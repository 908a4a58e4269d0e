import FlyingFox
import Foundation
import Logging
import Metrics
import Prometheus
import SluiceKit

/// The optional HTTP listener (`metrics: {listen: "127.0.0.1:9187"}`): Prometheus text at `/metrics`,
/// `/health`, 200 when every source and sink runs, 503 with the reasons otherwise, and the console:
/// the page at `/` and its data at `/api/status`. With `metrics.token`, `/` and `/api/*` need it
/// (`Authorization: Bearer`, or `?token=`); `/metrics` and `/health` stay open for scrapers and
/// probes, and carry no secret either (see docs/console.md).
final class MetricsServer: @unchecked Sendable {
    let registry: PrometheusCollectorRegistry
    private let server: HTTPServer
    private var task: Task<Void, any Error>?

    init(host: String, port: Int, registry: PrometheusCollectorRegistry, health: ConnectorHealth,
         console: Console? = nil, token: String? = nil) throws {
        self.registry = registry
        let address = try sockaddr_in.inet(ip4: host == "localhost" ? "127.0.0.1" : host, port: UInt16(port))
        server = HTTPServer(address: address, logger: .disabled)
        let server = self.server
        Task {
            await server.appendRoute("GET /metrics") { _ in
                HTTPResponse(statusCode: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                             body: Data(registry.emitToBuffer()))
            }
            await server.appendRoute("GET /health") { _ in
                let unhealthy = health.all.filter { $0.state != .running }
                guard unhealthy.isEmpty, !health.all.isEmpty else {
                    let reasons = unhealthy.map { "\($0.kind) \($0.name): \($0.state)" }.joined(separator: "\n")
                    return HTTPResponse(statusCode: .serviceUnavailable, headers: [.contentType: "text/plain"],
                                        body: Data(Secrets.redact(reasons.isEmpty ? "starting" : reasons).utf8 + [10]))
                }
                return HTTPResponse(statusCode: .ok, headers: [.contentType: "text/plain"], body: Data("ok\n".utf8))
            }
            guard let console else { return }
            await server.appendRoute("GET /") { request in
                guard ConsoleAccess.allows(request, token: token) else { return ConsoleAccess.refusal }
                return HTTPResponse(statusCode: .ok, headers: ConsoleAccess.pageHeaders, body: Data(ConsolePage.html.utf8))
            }
            await server.appendRoute("GET /api/status") { request in
                guard ConsoleAccess.allows(request, token: token) else { return ConsoleAccess.refusal }
                return HTTPResponse(statusCode: .ok, headers: [.contentType: "application/json", .cacheControl: "no-store"],
                                    body: Data(console.render().utf8))
            }
            await server.appendRoute("GET /api/*") { request in
                guard ConsoleAccess.allows(request, token: token) else { return ConsoleAccess.refusal }
                return HTTPResponse(statusCode: .notFound, headers: [.contentType: "text/plain"],
                                    body: Data("not found; the console's data is at /api/status\n".utf8))
            }
        }
    }

    /// Starts listening; throws when the address cannot be bound.
    func start() throws {
        let server = self.server
        task = Task { try await server.run() }
        let ready = DispatchSemaphore(value: 0)
        let failure = LockedBox<(any Error)?>(nil)
        Task {
            do { try await server.waitUntilListening(timeout: 5) } catch { failure.value = error }
            ready.signal()
        }
        ready.wait()
        if let error = failure.value { throw error }
    }

    func stop() {
        task?.cancel()
    }
}

/// Who may see the console: everyone on the listener without a token, otherwise only requests that
/// present it.
public enum ConsoleAccess {
    static func allows(_ request: HTTPRequest, token: String?) -> Bool {
        guard let token else { return true }
        if let header = request.headers[.authorization], header.hasPrefix("Bearer "),
           tokenMatches(String(header.dropFirst("Bearer ".count)), token) {
            return true
        }
        return request.query["token"].map { tokenMatches($0, token) } ?? false
    }

    /// Compares in time that depends on the lengths only, not on where the first difference is.
    public static func tokenMatches(_ presented: String, _ token: String) -> Bool {
        let a = Array(presented.utf8), b = Array(token.utf8)
        var difference: UInt8 = a.count == b.count ? 0 : 1
        for index in 0..<max(a.count, b.count) {
            difference |= (index < a.count ? a[index] : 0) ^ (index < b.count ? b[index] : 0)
        }
        return difference == 0 && !token.isEmpty
    }

    static let refusal = HTTPResponse(
        statusCode: .unauthorized,
        headers: [.contentType: "text/plain; charset=utf-8", HTTPHeader("WWW-Authenticate"): "Bearer realm=\"sluice\""],
        body: Data("401: this console needs the token of metrics.token: open /?token=<token> or send Authorization: Bearer <token>\n".utf8))

    /// Everything the page needs is inline; it may only fetch from its own origin.
    static let pageHeaders: HTTPHeaders = [
        .contentType: "text/html; charset=utf-8", .cacheControl: "no-store",
        HTTPHeader("X-Content-Type-Options"): "nosniff", HTTPHeader("Referrer-Policy"): "no-referrer",
        HTTPHeader("Content-Security-Policy"):
            "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src data:; frame-ancestors 'none'",
    ]
}

final class LockedBox<T>: @unchecked Sendable {
    private let lock = NSLock()
    private var stored: T
    init(_ value: T) { stored = value }
    var value: T {
        get { lock.lock(); defer { lock.unlock() }; return stored }
        set { lock.lock(); stored = newValue; lock.unlock() }
    }
}

/// Installs Prometheus as the swift-metrics backend once per process.
enum MetricsBackend {
    nonisolated(unsafe) private static var installed: PrometheusCollectorRegistry?
    private static let lock = NSLock()

    static func registry() -> PrometheusCollectorRegistry {
        lock.lock()
        defer { lock.unlock() }
        if let installed { return installed }
        let registry = PrometheusCollectorRegistry()
        var factory = PrometheusMetricsFactory(registry: registry)
        factory.defaultDurationHistogramBuckets = [
            .milliseconds(1), .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50),
            .milliseconds(100), .milliseconds(250), .milliseconds(500), .seconds(1), .seconds(5), .seconds(30),
        ]
        MetricsSystem.bootstrap(HelpfulMetricsFactory(inner: factory, registry: registry))
        installed = registry
        return registry
    }
}

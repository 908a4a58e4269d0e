import FlyingFox
import Foundation
import Logging
import Metrics
import Prometheus
import SluiceKit

/// The optional HTTP listener (`metrics: {listen: "127.0.0.1:9187"}`): Prometheus text at `/metrics`,
/// and `/health`, 200 when every source and sink runs, 503 with the reasons otherwise.
final class MetricsServer: @unchecked Sendable {
    let registry: PrometheusCollectorRegistry
    private let server: HTTPServer
    private var task: Task<Void, any Error>?

    init(host: String, port: Int, registry: PrometheusCollectorRegistry, health: ConnectorHealth) throws {
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
        MetricsSystem.bootstrap(factory)
        installed = registry
        return registry
    }
}

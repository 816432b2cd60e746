import HTTPTypes
import Hummingbird
import Keel
import Prometheus

/// `/health`, `/ready` and `/metrics`: for the orchestrator and the monitoring, outside the drain
/// gate, so that they answer while the server drains.
struct OperationsRoutes: Sendable {
    let host: ServiceHost
    let gate: DrainGate
    let metrics: PrometheusCollectorRegistry

    private struct Status: Encodable {
        var status: String
        var host: String
        var reasons: [String]
        var services: [String: String]
    }

    func add(to router: Router<ShopRequestContext>) {
        router.get("health") { _, _ in await self.health() }
        router.get("ready") { _, _ in await self.readiness() }
        router.get("metrics") { _, _ in self.exposition() }
    }

    /// Every instance's health, by instance id.
    private var instances: [String: String] {
        var services: [String: String] = [:]
        for name in self.host.registry.services {
            for instance in self.host.registry.instances(of: name) {
                services[instance.id.description] = instance.health.description
            }
        }
        return services
    }

    /// Liveness: 200 unless, while the host runs, an instance reports that it is not live (a
    /// restart would help). Starting and shutting down are not failures of liveness.
    private func health() async -> Response {
        let state = await self.host.state
        var reasons: [String] = []
        if state == .running {
            for name in self.host.registry.services {
                for instance in self.host.registry.instances(of: name) where !instance.health.isLive {
                    reasons.append("\(instance.id) is not live: \(instance.health)")
                }
            }
        }
        let status = Status(
            status: reasons.isEmpty ? "live" : "dead",
            host: state.rawValue,
            reasons: reasons,
            services: self.instances
        )
        return JSONBody.response(status, status: reasons.isEmpty ? .ok : .serviceUnavailable)
    }

    /// Readiness: 200 only while the host runs, the server is not draining, and every instance is
    /// live and ready.
    private func readiness() async -> Response {
        let state = await self.host.state
        var reasons: [String] = []
        if state != .running { reasons.append("the host is \(state.rawValue)") }
        if self.gate.isDraining { reasons.append("the server is draining for shutdown") }
        for name in self.host.registry.services {
            for instance in self.host.registry.instances(of: name) where !instance.health.isServing {
                reasons.append("\(instance.id) is not serving: \(instance.health)")
            }
        }
        let status = Status(
            status: reasons.isEmpty ? "ready" : "not_ready",
            host: state.rawValue,
            reasons: reasons,
            services: self.instances
        )
        return JSONBody.response(status, status: reasons.isEmpty ? .ok : .serviceUnavailable)
    }

    /// Every metric in the Prometheus text format, Keel's included.
    private func exposition() -> Response {
        var headers = HTTPFields()
        headers[.contentType] = "text/plain; version=0.0.4; charset=utf-8"
        let text = self.metrics.emitToBuffer()
        return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: text)))
    }
}

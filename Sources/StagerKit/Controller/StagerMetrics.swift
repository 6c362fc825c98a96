import Prometheus

/// Stager's own metrics, every one named `stager_…`, kept in a registry owned by the app (no global state).
public struct StagerMetrics: Sendable {
    public let registry: PrometheusCollectorRegistry

    public init(registry: PrometheusCollectorRegistry = PrometheusCollectorRegistry()) {
        self.registry = registry
    }

    public func webhook(event: String, outcome: String) {
        registry.makeCounter(name: "stager_webhooks_total", labels: [("event", event), ("outcome", outcome)],
                             help: "Webhook deliveries received, by event and outcome").increment()
    }

    public func converged(outcome: String, duration: Duration) {
        registry.makeCounter(name: "stager_convergences_total", labels: [("outcome", outcome)],
                             help: "Environment convergences, by outcome").increment()
        registry.makeDurationHistogram(
            name: "stager_convergence_seconds", labels: [("outcome", outcome)],
            buckets: [.milliseconds(100), .milliseconds(250), .milliseconds(500), .seconds(1), .seconds(2), .seconds(5), .seconds(15), .seconds(60)],
            help: "Time to converge one environment"
        ).record(duration)
    }

    public func queueDepth(_ depth: Int) {
        registry.makeGauge(name: "stager_queue_depth", help: "Pull requests waiting for the controller").set(Double(depth))
    }

    public func nginxReload() {
        registry.makeCounter(name: "stager_nginx_reloads_total", help: "nginx reloads").increment()
    }

    public func render() -> String {
        registry.emitToString()
    }
}

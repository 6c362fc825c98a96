import Prometheus

/// Stager's own metrics, every one named `stager_…`, kept in a registry owned by the app (no global state).
public struct StagerMetrics: Sendable {
    public let registry: PrometheusCollectorRegistry

    public init(registry: PrometheusCollectorRegistry = PrometheusCollectorRegistry()) {
        self.registry = registry
    }

    /// From a second to minutes: a prebuilt image deploys in well under a second, a build takes minutes.
    private static let durationBuckets: [Duration] = [
        .milliseconds(100), .milliseconds(250), .milliseconds(500), .seconds(1), .seconds(2), .seconds(5),
        .seconds(15), .seconds(60), .seconds(300),
    ]

    /// From a millisecond up: the webhook's answer is one SQLite transaction away.
    static let ackBuckets: [Duration] = [
        .milliseconds(1), .milliseconds(2), .milliseconds(5), .milliseconds(10), .milliseconds(20), .milliseconds(50),
        .milliseconds(100), .milliseconds(250), .seconds(1),
    ]

    /// Time from the request's arrival in the handler to its answer.
    public func acknowledged(in duration: Duration) {
        registry.makeDurationHistogram(
            name: "stager_webhook_ack_seconds",
            buckets: Self.ackBuckets,
            help: "Time to answer a webhook delivery, from its arrival in the handler"
        ).record(duration)
    }

    public func webhook(event: String, outcome: String) {
        registry.makeCounter(
            name: "stager_webhooks_total",
            labels: [("event", event), ("outcome", outcome)],
            help: "Webhook deliveries received, by event and outcome"
        ).increment()
    }

    public func converged(outcome: String) {
        registry.makeCounter(
            name: "stager_convergences_total",
            labels: [("outcome", outcome)],
            help: "Environment convergences, by outcome"
        ).increment()
    }

    /// From the controller taking a deploy to the preview answering and the comment written.
    public func deployed(outcome: String, duration: Duration) {
        registry.makeDurationHistogram(
            name: "stager_deploy_duration_seconds",
            labels: [("outcome", outcome)],
            buckets: Self.durationBuckets,
            help: "Time to deploy one environment, by outcome (ready, failed)"
        ).record(duration)
    }

    public func tornDown(duration: Duration) {
        registry.makeDurationHistogram(
            name: "stager_teardown_duration_seconds",
            buckets: Self.durationBuckets,
            help: "Time to tear one environment down"
        ).record(duration)
    }

    /// From a wake's first request (or command) to the app answering its health path: what a held request waits.
    static let wakeBuckets: [Duration] = [
        .milliseconds(100), .milliseconds(250), .milliseconds(500), .milliseconds(750), .seconds(1), .seconds(2), .seconds(5),
        .seconds(15), .seconds(60),
    ]

    /// `outcome`: `awake` or `failed`.
    public func woke(outcome: String, duration: Duration) {
        registry.makeCounter(
            name: "stager_wakes_total",
            labels: [("outcome", outcome)],
            help: "Sleeping environments woken, by outcome (awake, failed)"
        ).increment()
        registry.makeDurationHistogram(
            name: "stager_wake_seconds",
            buckets: Self.wakeBuckets,
            help: "Time from the wake's start to the app answering its health path"
        ).record(duration)
    }

    public func queueDepth(_ depth: Int) {
        registry.makeGauge(name: "stager_queue_depth", help: "Pull requests waiting for the controller").set(Double(depth))
    }

    /// One reconcile pass finished (at start and every `reconcile_interval`).
    public func reconciled() {
        registry.makeCounter(name: "stager_reconciles_total", help: "Reconcile passes finished").increment()
    }

    public func nginxReload() {
        registry.makeCounter(name: "stager_nginx_reloads_total", help: "nginx reloads").increment()
    }

    /// `ok`, `error_<status>`, `rate_limited`, `server_error` (retried) or `unreachable` (retried).
    public func githubRequest(outcome: String) {
        registry.makeCounter(
            name: "stager_github_requests_total",
            labels: [("outcome", outcome)],
            help: "GitHub API requests, by outcome"
        ).increment()
    }

    /// Sets the gauge of every status, zero included, so a status that empties shows 0 rather than its last count.
    public func environments(byStatus counts: [String: Int]) {
        for status in EnvironmentStatus.allCases where status != .removed {
            registry.makeGauge(
                name: "stager_environments",
                labels: [("status", status.rawValue)],
                help: "Environments by status"
            ).set(Double(counts[status.rawValue] ?? 0))
        }
    }

    /// 1 when the store answered the last scrape's read, 0 when it failed (the environment gauges then keep
    /// their last values rather than dropping to zero).
    public func storeUp(_ up: Bool) {
        registry.makeGauge(name: "stager_store_up", help: "Whether the SQLite store answered the last read").set(Double(up ? 1 : 0))
    }

    public func render() -> String {
        registry.emitToString()
    }
}

import Foundation

/// One environment, or every environment of this instance, as the engine holds it: the same shape whether
/// docker or swarm runs it.
public struct ObservedStack: Sendable, Equatable {
    /// App containers, running or not.
    public var apps: [ContainerInfo] = []
    /// Service containers (`stager.role=service`).
    public var services: [ContainerInfo] = []
    /// Networks and volumes; only `StackRuntime.observeAll` lists them.
    public var resources: [StackResource] = []

    public init(apps: [ContainerInfo] = [], services: [ContainerInfo] = [], resources: [StackResource] = []) {
        self.apps = apps
        self.services = services
        self.resources = resources
    }

    /// Apps and services split from one listing.
    init(containers: [ContainerInfo], resources: [StackResource] = []) {
        self.init(apps: containers.filter { $0.service == nil }, services: containers.filter { $0.service != nil }, resources: resources)
    }

    public var containers: [ContainerInfo] { apps + services }

    /// What of it belongs to one PR.
    public func of(_ key: PullRequestKey) -> ObservedStack {
        ObservedStack(
            apps: apps.filter { $0.key == key },
            services: services.filter { $0.key == key },
            resources: resources.filter { $0.key == key }
        )
    }
}

/// What an environment's services should be: its network, each service's container and volumes, in groups
/// that start one after the other (a service after those it depends on).
public struct StackSpec: Sendable {
    public struct Service: Sendable {
        public var name: String
        public var container: ContainerSpec
        /// Each docker volume it mounts, with the seed volume a new one starts as a copy of.
        public var volumes: [(volume: String, seed: String?)]
        public var check: ServiceCheck
        /// Values masked in what its log shows.
        public var secrets: [String]
    }

    public var key: PullRequestKey
    public var network: String
    public var labels: [String: String]
    public var groups: [[Service]]
    /// `docker.seed_image`; nil: each service's own image copies its seed.
    public var seedImage: String?
    /// Volumes the store marks as seeded by an earlier deploy: one that exists is never copied over.
    public var seeded: Set<String>

    var services: [Service] { groups.flatMap { $0 } }
}

/// When a service counts as healthy: running; with a port, accepting on it; with a path too, answering it below 500.
public struct ServiceCheck: Sendable, Equatable {
    public var port: Int?
    public var healthPath: String?
    public var timeout: Duration

    var described: String { port.map { port in healthPath.map { "GET \($0) on port \(port) below 500" } ?? "TCP port \(port)" } ?? "running" }
}

/// What preparing a stack did, said as it happens so the store records it at once (a seed's mark the
/// moment its copy ends, so a crash after it never copies over data).
public enum StackEvent: Sendable, Equatable {
    case startedAgain(service: String)
    case started(service: String, image: String)
    case seeded(volume: String, from: String, took: Duration)
}

/// A service that could not start or become healthy, or a seed that could not be copied: the deploy fails,
/// naming it.
public struct StackFailure: Error, Sendable {
    public var reason: String
    public var log: FailureLog?
    /// What the API shows of the services after the failure.
    public var services: [ServiceState] = []
}

/// The engine as the controller sees it: whole environments (traefik's shape, where docker and swarm differ
/// only in how they list). Nothing above it knows which engine runs; the composition root picks it.
/// A switch between an environment's versions is the front door's (`FrontDoor.apply`).
public protocol StackRuntime: Sendable {
    /// One PR's containers, apps and services.
    func observe(_ key: PullRequestKey) async throws -> ObservedStack
    /// Every container, network and volume of this instance.
    func observeAll() async throws -> ObservedStack
    /// The ids of one PR's containers without their state: all a teardown needs, in one engine call.
    func containerIDs(of key: PullRequestKey) async throws -> [String]

    /// Network, volumes (seeded the first time) and each service healthy, group by group; service containers
    /// no longer wanted go. Throws `StackFailure` for what the PR must hear of; returns the services' states.
    func prepare(_ stack: StackSpec, events: @escaping @Sendable (StackEvent) async throws -> Void) async throws -> [ServiceState]
    /// Runs a container to its end (`release`), at most `timeout`; its exit status and output.
    func runToEnd(_ spec: ContainerSpec, timeout: Duration) async throws -> (exitCode: Int32, output: String)
    /// Starts the app's candidate beside whatever serves; its id and where it answers.
    func deployCandidate(_ spec: ContainerSpec) async throws -> (id: String, upstream: Upstream)
    /// Stops a container and keeps it (sleep); one already stopped counts as stopped.
    func stop(_ id: String) async throws
    /// Starts a stopped container again; where `containerPort` answers now (nil for a service).
    func start(_ id: String, containerPort: Int?) async throws -> Upstream?
    func remove(_ id: String) async throws
    /// Every container, the network and the volumes of one PR; returns the networks and volumes it removed.
    func removeStack(of key: PullRequestKey) async throws -> [StackResource]
    /// A network or volume; one already gone counts as removed.
    func remove(_ resource: StackResource) async throws

    func logTail(_ id: String, lines: Int) async throws -> String
    /// Sends the container's log to `sink` as it comes (`stager logs`); the engine's exit status.
    func streamLogs(_ id: String, tail: Int?, follow: Bool, to sink: OutputSink) async throws -> Int32
    func imageExists(_ reference: String) async throws -> Bool
    /// Removes an image unless a container still uses it; false when one does.
    func removeImage(_ reference: String) async throws -> Bool
    /// Images built for this instance, as `repository:tag` with their PR.
    func builtImages() async throws -> [(image: String, key: PullRequestKey)]
    /// Makes an image built here runnable wherever containers run.
    func distribute(_ image: String) async throws
    /// Whether the engine answers at all.
    func ping() async throws
    /// Whether an app can move on its own (a drained or lost node): the controller then follows it.
    var appsMove: Bool { get }
}

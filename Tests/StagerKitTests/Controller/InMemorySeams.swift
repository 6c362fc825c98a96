import Foundation
import Logging
import Mustache
import StagerTestSupport

@testable import StagerKit

// In-memory twins of the controller's seams, as hummingbird-examples' `TodoMemoryRepository` is of its
// database: each answers the way the real one does (a missing route is nil, a refused start is a
// `CommandError.failed`, an unreachable engine is `EngineUnavailable`), and each records what was asked of
// it on one shared timeline, so tests can check the order of what the world saw.

/// What the world saw, in order: "run pr-1 <sha>", "route pr-1 -> <container>", "comment ready", ….
actor Timeline {
    private(set) var events: [String] = []

    func record(_ event: String) { events.append(event) }

    func index(of prefix: String) -> Int? { events.firstIndex { $0.hasPrefix(prefix) } }

    func count(_ prefix: String) -> Int { events.filter { $0.hasPrefix(prefix) }.count }
}

/// `EnvironmentRepository` in memory: the same transactions as `Store`, one actor instead of SQLite.
actor InMemoryEnvironments: EnvironmentRepository {
    private var rows: [PullRequestKey: Environment] = [:]
    private(set) var auditLines: [(key: PullRequestKey, kind: AuditKind, message: String)] = []
    private var facts: [String: String] = [:]

    /// A PR's change of desired state, as `Store.accept` records it (without the delivery bookkeeping).
    @discardableResult
    func accept(_ change: DesiredStateChange) -> Int {
        let now = Date()
        var env =
            rows[change.key]
            ?? Environment(
                repo: change.key.repo,
                number: change.key.number,
                slug: "pr-\(change.key.number)",
                branch: change.pullRequest.branch,
                title: change.pullRequest.title ?? "",
                author: change.pullRequest.author ?? "",
                headRepo: change.pullRequest.headRepo ?? change.key.repo,
                desired: .absent,
                desiredSha: change.pullRequest.headSha,
                desiredVersion: 0,
                appliedVersion: 0,
                sourceUpdatedAt: "",
                status: .queued,
                commentPending: false,
                createdAt: now,
                updatedAt: now,
                lastActivityAt: nil,
                admitted: false,
                waitingSince: nil,
                approvedSha: nil,
                approvedBy: nil,
                labelSha: nil,
                labelSender: nil
            )
        switch change.intent {
        case .deploy(let sha):
            if let sender = change.labeledBy { (env.labelSender, env.labelSha) = (sender, sha) }
            if let approver = change.approvedBy { (env.approvedSha, env.approvedBy) = (sha, approver) }
            (env.desired, env.desiredSha, env.status, env.failedSha) = (.present, sha, .queued, nil)
        case .teardown:
            env.desired = .absent
            if env.status != .removed { env.status = .removing }
        case .sleep:
            env.asleep = true
        case .wake:
            (env.asleep, env.lastActivityAt) = (false, now)
        }
        if case .deploy = change.intent { env.asleep = false }
        env.headRepo = change.pullRequest.headRepo ?? env.headRepo
        env.desiredVersion += 1
        env.lastDeliveryID = change.id
        rows[change.key] = env
        return env.desiredVersion
    }

    func recordChange(_ change: DesiredStateChange) -> AcceptOutcome {
        let env = rows[change.key]
        switch change.intent {
        case .sleep where env?.desired != .present || env?.asleep == true: return .unchanged
        case .wake where env?.desired != .present || env?.asleep == false: return .unchanged
        default: return .accepted(version: accept(change))
        }
    }

    func environment(_ key: PullRequestKey) -> Environment? { rows[key] }

    func allEnvironments() -> [Environment] { rows.values.sorted { $0.number < $1.number } }

    func desiredVersion(_ key: PullRequestKey) -> Int? { rows[key]?.desiredVersion }

    func pendingVersions() -> [PullRequestKey: Int] {
        rows.filter { $0.value.desiredVersion > $0.value.appliedVersion }.mapValues(\.desiredVersion)
    }

    func waitingKeys() -> [PullRequestKey] {
        waiters().map(\.key)
    }

    @discardableResult
    func update(_ key: PullRequestKey, _ change: @escaping @Sendable (inout Environment) -> Void) -> Environment? {
        guard var env = rows[key] else { return nil }
        change(&env)
        env.updatedAt = Date()
        rows[key] = env
        return env
    }

    func markApplied(_ key: PullRequestKey, version: Int) {
        if let env = rows[key], env.appliedVersion < version { rows[key]?.appliedVersion = version }
    }

    func admit(_ key: PullRequestKey, limit: Int, repoLimit: Int?, at date: Date) -> Admission {
        guard var env = rows[key], env.desired == .present, !env.admitted else { return .admitted }
        let holders = rows.values.filter { $0.desired == .present && $0.admitted }
        let decision = AdmissionPolicy.decide(env, holders: Array(holders), waiters: waiters(), limit: limit, repoLimit: repoLimit, at: date)
        (env.admitted, env.waitingSince) = (decision.admitted, decision.waitingSince)
        rows[key] = env
        return decision.admission
    }

    func audit(_ key: PullRequestKey, kind: AuditKind, message: String, deliveryID: String?, sha: String?, actor: String?) {
        auditLines.append((key, kind, message))
    }

    func setFact(_ name: String, _ value: String, at date: Date) { facts[name] = value }

    func fact(_ name: String) -> String? { facts[name] }

    private func waiters() -> [Environment] {
        rows.values.filter { $0.desired == .present && !$0.admitted && $0.waitingSince != nil }
            .sorted { ($0.waitingSince ?? .distantPast, $0.createdAt) < ($1.waitingSince ?? .distantPast, $1.createdAt) }
    }
}

/// The engine in memory. Containers answer their health path unless their image is in `unhealthyImages`.
actor InMemoryRuntime: ContainerEngine {
    private(set) var containers: [ContainerInfo] = []
    private var nextPort = 40000
    let timeline: Timeline
    /// While set, every call fails the way the docker CLI does when it cannot reach the engine.
    var unavailable = false
    var unhealthyImages: Set<String> = []
    /// Images `docker run` refuses (a bad image): `CommandError.failed`.
    var refusedImages: Set<String> = []
    private(set) var images: Set<String> = []

    init(timeline: Timeline) { self.timeline = timeline }

    func setUnavailable(_ value: Bool) { unavailable = value }
    func setUnhealthy(_ image: String) { unhealthyImages.insert(image) }
    func refuse(_ image: String) { refusedImages.insert(image) }
    func addImage(_ image: String) { images.insert(image) }

    private func engine() throws {
        if unavailable { throw EngineUnavailable(message: "Cannot connect to the Docker daemon") }
    }

    nonisolated var placesTasks: Bool { false }

    func serviceReady(_ container: String, on network: String, answers: @Sendable (String) async -> Bool) async throws -> Bool {
        guard let address = try address(of: container, on: network) else { return false }
        return await answers(address)
    }

    func streamLogs(_ idOrName: String, tail: Int?, follow: Bool, to sink: OutputSink) async throws -> Int32 { 0 }

    func start(_ spec: ContainerSpec) async throws -> (id: String, upstream: Upstream) {
        try engine()
        let sha = spec.labels[ContainerLabels.sha] ?? ""
        await timeline.record("run \(spec.labels[ContainerLabels.slug] ?? "") \(sha)")
        if refusedImages.contains(spec.image) {
            throw CommandError.failed(Command("docker", ["run", spec.image]), CommandResult(exitCode: 125, standardError: "Unable to find image"))
        }
        nextPort += 1
        let info = ContainerInfo(
            id: "id-\(spec.name)",
            name: spec.name,
            repo: spec.labels[ContainerLabels.repo] ?? "",
            number: Int(spec.labels[ContainerLabels.pr] ?? "") ?? 0,
            sha: sha,
            slug: spec.labels[ContainerLabels.slug] ?? "",
            running: true,
            hostPort: nextPort
        )
        containers.append(info)
        imagesByPort[nextPort] = spec.image
        return (info.id, Upstream(port: nextPort))
    }

    private var imagesByPort: [Int: String] = [:]

    /// The HTTP status a container on `port` answers with; nil when nothing listens there.
    func answer(port: Int) -> Int? {
        guard containers.contains(where: { $0.hostPort == port && $0.running }), let image = imagesByPort[port] else { return nil }
        return unhealthyImages.contains(image) ? 500 : 200
    }

    func list(for key: PullRequestKey?) throws -> [ContainerInfo] {
        try engine()
        return containers.filter { key == nil || ($0.repo == key?.repo && $0.number == key?.number) }
    }

    func ids(for key: PullRequestKey) throws -> [String] {
        try list(for: key).map(\.id)
    }

    func remove(_ idOrName: String) async throws {
        try engine()
        guard let container = containers.first(where: { $0.id == idOrName || $0.name == idOrName }) else { return }
        containers.removeAll { $0 == container }
        await timeline.record("rm \(container.slug) \(container.sha)")
    }

    func logTail(_ idOrName: String, lines: Int) throws -> String {
        try engine()
        return "listening\nboom"
    }

    func removeImage(_ reference: String) throws -> Bool {
        try engine()
        images.remove(reference)
        return true
    }

    func imageExists(_ reference: String) throws -> Bool {
        try engine()
        return images.contains(reference)
    }

    func builtImages() throws -> [(image: String, key: PullRequestKey)] { [] }

    func ping() throws { try engine() }

    func stop(_ idOrName: String) async throws {
        try engine()
        guard let index = containers.firstIndex(where: { $0.id == idOrName || $0.name == idOrName }) else {
            throw CommandError.failed(
                Command("docker", ["stop", idOrName]),
                CommandResult(exitCode: 1, standardError: "No such container: \(idOrName)")
            )
        }
        containers[index].running = false
        await timeline.record("stop \(containers[index].service ?? containers[index].slug)")
    }

    /// The engine gives a started container a new loopback port, as docker does for `127.0.0.1::PORT`.
    func restart(_ idOrName: String, containerPort: Int?) async throws -> Upstream? {
        try engine()
        guard let index = containers.firstIndex(where: { $0.id == idOrName || $0.name == idOrName }) else {
            throw CommandError.failed(
                Command("docker", ["start", idOrName]),
                CommandResult(exitCode: 1, standardError: "No such container: \(idOrName)")
            )
        }
        containers[index].running = true
        await timeline.record("start \(containers[index].service ?? containers[index].slug)")
        guard containerPort != nil, let old = containers[index].hostPort else { return nil }
        nextPort += 1
        imagesByPort[nextPort] = imagesByPort[old]
        containers[index].hostPort = nextPort
        return Upstream(port: nextPort)
    }

    // The stack: networks and volumes by name, service containers with an address on their network.

    private(set) var networks: Set<String> = []
    private(set) var volumes: [String: [String: String]] = [:]
    private(set) var volumeData: [String: String] = [:]
    /// Release commands `runToEnd` answers with this exit status (default 0).
    var releaseExit: Int32 = 0
    private var resourceLabels: [String: [String: String]] = [:]

    func setReleaseExit(_ code: Int32) { releaseExit = code }
    func addVolume(_ name: String, data: String) {
        volumes[name] = [:]
        volumeData[name] = data
    }

    func startService(_ spec: ContainerSpec) async throws -> String {
        try engine()
        guard let network = spec.network, networks.contains(network) else {
            throw CommandError.failed(Command("docker", ["run", spec.name]), CommandResult(exitCode: 125, standardError: "network not found"))
        }
        if refusedImages.contains(spec.image) {
            throw CommandError.failed(Command("docker", ["run", spec.image]), CommandResult(exitCode: 125, standardError: "Unable to find image"))
        }
        await timeline.record("service \(spec.labels[ContainerLabels.service] ?? "")")
        let info = ContainerInfo(
            id: "id-\(spec.name)",
            name: spec.name,
            repo: spec.labels[ContainerLabels.repo] ?? "",
            number: Int(spec.labels[ContainerLabels.pr] ?? "") ?? 0,
            sha: spec.labels[ContainerLabels.sha] ?? "",
            slug: spec.labels[ContainerLabels.slug] ?? "",
            running: true,
            hostPort: nil,
            service: spec.labels[ContainerLabels.service],
            definition: spec.labels[ContainerLabels.definition]
        )
        containers.append(info)
        serviceImages[info.id] = spec.image
        return info.id
    }

    private var serviceImages: [String: String] = [:]

    func runToEnd(_ spec: ContainerSpec, timeout: Duration) async throws -> (exitCode: Int32, output: String) {
        try engine()
        await timeline.record("release \(spec.image)")
        return (releaseExit, "migrating\n")
    }

    func address(of container: String, on network: String) throws -> String? {
        try engine()
        guard let found = containers.first(where: { $0.id == container && $0.running }), networks.contains(network) else { return nil }
        return unhealthyImages.contains(serviceImages[found.id] ?? "") ? nil : "10.0.0.2"
    }

    func ensureNetwork(_ name: String, labels: [String: String]) async throws {
        try engine()
        if networks.insert(name).inserted { await timeline.record("network \(name)") }
        resourceLabels[name] = labels
    }

    func ensureVolume(_ name: String, labels: [String: String]) async throws {
        try engine()
        if volumes[name] == nil {
            volumes[name] = labels
            volumeData[name] = ""
        }
        resourceLabels[name] = labels
    }

    func volumeExists(_ name: String) throws -> Bool {
        try engine()
        return volumes[name] != nil
    }

    func copyVolume(from seed: String, to volume: String, with copier: SeedCopier, labels: [String: String]) async throws {
        try engine()
        volumeData[volume] = volumeData[seed]
        await timeline.record("seed \(volume)")
    }

    func stackResources(for key: PullRequestKey?) throws -> [StackResource] {
        try engine()
        return (networks.map { ($0, StackResource.Kind.network) } + volumes.keys.map { ($0, StackResource.Kind.volume) }).compactMap { name, kind in
            guard let labels = resourceLabels[name], let repo = labels[ContainerLabels.repo], let number = Int(labels[ContainerLabels.pr] ?? "")
            else { return nil }
            guard key == nil || (key?.repo == repo && key?.number == number) else { return nil }
            return StackResource(kind: kind, name: name, repo: repo, number: number)
        }.sorted { $0.name < $1.name }
    }

    func remove(_ resource: StackResource) async throws {
        try engine()
        switch resource.kind {
        case .network:
            guard !containers.contains(where: { $0.service != nil && $0.name.hasPrefix(resource.name) }) else {
                throw CommandError.failed(Command("docker", ["network", "rm"]), CommandResult(exitCode: 1, standardError: "has active endpoints"))
            }
            networks.remove(resource.name)
        case .volume:
            volumes[resource.name] = nil
            volumeData[resource.name] = nil
        }
        await timeline.record("rm \(resource.kind.rawValue) \(resource.name)")
    }
}

/// nginx in memory: routes per slug; `rejectNext` makes the next apply fail the way `nginx -t` does.
actor InMemoryFrontDoor: FrontDoor {
    private(set) var routes: [String: Route] = [:]
    let timeline: Timeline
    var rejectNext = false

    init(timeline: Timeline) { self.timeline = timeline }

    func setRejectNext() { rejectNext = true }

    func routed(slug: String) -> RoutedUpstream? {
        routes[slug].map { RoutedUpstream(container: $0.containerName, port: $0.upstreamPort, asleep: $0.asleep) }
    }

    func inventory() -> (managed: [String], foreign: [String]) { (routes.keys.sorted(), []) }

    func apply(_ route: Route) async throws {
        if rejectNext {
            rejectNext = false
            throw NginxError.rejected("nginx: [emerg] unexpected \"}\" in \(route.slug).conf")
        }
        routes[route.slug] = route
        await timeline.record(route.asleep ? "route \(route.slug) -> wake" : "route \(route.slug) -> \(route.sha)")
    }

    func remove(slugs: [String]) async throws {
        for slug in slugs where routes.removeValue(forKey: slug) != nil { await timeline.record("unroute \(slug)") }
    }

    func confirmRouted(hostName: String, to container: String, asleep: Bool) throws {
        guard routes.values.contains(where: { $0.hostName == hostName && $0.containerName == container && $0.asleep == asleep }) else {
            throw NginxError.reloadFailed("nginx did not route \(hostName) to \(container) in time")
        }
    }

    func confirmUnrouted(hostName: String) throws {
        guard !routes.values.contains(where: { $0.hostName == hostName }) else {
            throw NginxError.reloadFailed("nginx still routes \(hostName) after its vhost was removed")
        }
    }

    func reloadIfOwed() -> Bool { false }
}

/// Health and smoke checks answered by the in-memory engine's containers.
struct InMemoryProber: Prober {
    let runtime: InMemoryRuntime

    func get(host: String, port: Int, path: String, hostHeader: String?, headers: [String: String]) async throws -> ProbeAnswer {
        guard let status = await runtime.answer(port: port) else { throw URLError(.cannotConnectToHost) }
        return ProbeAnswer(status: status, headers: [:], body: "")
    }

    /// A service on the in-memory network accepts once it has an address.
    func accepts(host: String, port: Int) async -> Bool { host == "10.0.0.2" }
}

/// The PR's sticky comment, one per PR, as GitHub keeps it.
actor InMemoryComments: CommentPublisher {
    private(set) var bodies: [PullRequestKey: String] = [:]
    let timeline: Timeline
    private var nextID: Int64 = 100

    init(timeline: Timeline) { self.timeline = timeline }

    func publish(_ body: String, on key: PullRequestKey, knownID: Int64?) async throws -> Int64? {
        bodies[key] = body
        let heading = body.split(separator: "\n").first { $0.hasPrefix("###") }.map(String.init) ?? ""
        await timeline.record("comment \(heading)")
        if let knownID { return knownID }
        nextID += 1
        return nextID
    }

    func remove(on key: PullRequestKey, knownID: Int64?) async throws {
        bodies[key] = nil
        await timeline.record("comment deleted")
    }
}

/// GitHub Deployments in memory: each deployment's statuses in order.
actor InMemoryDeployments: DeploymentRecording {
    private(set) var statuses: [Int64: [String]] = [:]
    let timeline: Timeline
    private var nextID: Int64 = 0

    init(timeline: Timeline) { self.timeline = timeline }

    func start(_ env: Environment, sha: String) async throws -> Int64? {
        nextID += 1
        statuses[nextID] = ["in_progress"]
        await timeline.record("deployment \(nextID) in_progress")
        return nextID
    }

    func succeeded(_ env: Environment, deployment id: Int64, url: String) async throws { await add(id, "success") }
    func failed(_ env: Environment, deployment id: Int64, reason: String) async throws { await add(id, "failure") }
    func deactivate(_ env: Environment, deployment id: Int64, because reason: String) async throws { await add(id, "inactive") }

    private func add(_ id: Int64, _ state: String) async {
        statuses[id, default: []].append(state)
        await timeline.record("deployment \(id) \(state)")
    }
}

/// A build that ends when the test says so: `finish(succeeding:)`, or by being cancelled.
actor InMemoryBuilder: ImageBuilding {
    private var waiting: [CheckedContinuation<Bool, Never>] = []
    private(set) var started: [String] = []
    let runtime: InMemoryRuntime

    init(runtime: InMemoryRuntime) { self.runtime = runtime }

    func build(_ env: Environment, repo: StagerConfig.Repo, spec: StagerConfig.RepoBuild, sha: String, tag: String, token: String?) async throws {
        started.append(sha)
        let succeeded = await withTaskCancellationHandler {
            await withCheckedContinuation { waiting.append($0) }
        } onCancel: {
            Task { await self.finish(succeeding: false) }
        }
        try Task.checkCancellation()
        guard succeeded else { throw BuildError.failed(exitCode: 1) }
        await runtime.addImage(tag)
    }

    func finish(succeeding: Bool) {
        for continuation in waiting { continuation.resume(returning: succeeding) }
        waiting.removeAll()
    }

    nonisolated func logTail(_ key: PullRequestKey, lines: Int) -> String { "step 3/4: make\nerror: boom" }
}

/// GitHub's collaborator permissions.
struct InMemoryPermissions: PermissionLookup {
    var permissions: [String: String]

    /// Shas GitHub shows the deploy label at; nil: every one asked about.
    var labeledShas: Set<String>? = nil

    func permission(of user: String, in repo: String) async throws -> String { permissions[user] ?? "none" }

    func confirmsLabel(_ label: String, sha: String, on key: PullRequestKey) async throws -> Bool { labeledShas?.contains(sha) ?? true }
}

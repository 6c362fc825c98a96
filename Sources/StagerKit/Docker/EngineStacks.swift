import Foundation
import Logging

/// The stack runtime over one container engine (the docker CLI, or swarm through it): environments made of
/// containers, a network and volumes, the same steps whichever engine runs them.
public struct EngineStacks: StackRuntime {
    let engine: any ContainerEngine
    let probe: any Prober
    let logger: Logger

    public init(engine: any ContainerEngine, probe: any Prober, logger: Logger) {
        self.engine = engine
        self.probe = probe
        self.logger = logger
    }

    public func observe(_ key: PullRequestKey) async throws -> ObservedStack {
        ObservedStack(containers: try await engine.list(for: key))
    }

    public func observeAll() async throws -> ObservedStack {
        let containers = try await engine.list(for: nil)
        return ObservedStack(containers: containers, resources: try await engine.stackResources(for: nil))
    }

    public func containerIDs(of key: PullRequestKey) async throws -> [String] { try await engine.ids(for: key) }

    public func prepare(_ stack: StackSpec, events: @escaping @Sendable (StackEvent) async throws -> Void) async throws -> [ServiceState] {
        if !stack.groups.isEmpty { try await engine.ensureNetwork(stack.network, labels: stack.labels) }
        let existing = try await engine.list(for: stack.key).filter { $0.service != nil }
        let wanted = Set(stack.services.map(\.name))
        for container in existing where !wanted.contains(container.service ?? "") {
            try await engine.remove(container.id)
        }
        do {
            for group in stack.groups {
                try await withThrowingTaskGroup(of: Void.self) { tasks in
                    for service in group {
                        let mine = existing.filter { $0.service == service.name }
                        tasks.addTask { try await self.ensure(service, of: stack, existing: mine, events: events) }
                    }
                    try await tasks.waitForAll()
                }
            }
        } catch var failure as StackFailure {
            failure.services = try await states(of: stack, unhealthy: failure.services.first?.name)
            throw failure
        }
        return try await states(of: stack, unhealthy: nil)
    }

    /// One service running its current definition and healthy: kept, started again, or made anew.
    private func ensure(
        _ service: StackSpec.Service,
        of stack: StackSpec,
        existing: [ContainerInfo],
        events: @Sendable (StackEvent) async throws -> Void
    ) async throws {
        let definition = service.container.labels[ContainerLabels.definition]
        var id = existing.first { $0.running && $0.definition == definition }?.id
        // A service that sleeps starts again as it was; one the engine cannot start is made anew below.
        if id == nil, let stopped = existing.first(where: { $0.definition == definition }) {
            do {
                _ = try await engine.restart(stopped.id, containerPort: nil)
                id = stopped.id
                try await events(.startedAgain(service: service.name))
            } catch let error as CommandError {
                logger.warning(
                    "a stopped service did not start again; making it anew",
                    metadata: ["service": "\(service.name)", "error": "\(error)"]
                )
            } catch let error as PlacementFailure {
                logger.warning(
                    "a stopped service did not start again; making it anew",
                    metadata: ["service": "\(service.name)", "error": "\(error)"]
                )
            }
        }
        if id == nil || existing.count > 1 {
            for container in existing where container.id != id { try await engine.remove(container.id) }
        }
        if id == nil {
            for (volume, seed) in service.volumes {
                try await prepareVolume(volume, seed: seed, service: service, of: stack, events: events)
            }
            do {
                id = try await engine.startService(service.container)
            } catch let error as CommandError {
                throw StackFailure(reason: "docker could not start service \(service.name): \(error)")
            } catch let error as PlacementFailure {
                throw StackFailure(reason: "service \(service.name): \(error)")
            }
            try await events(.started(service: service.name, image: service.container.image))
        }
        guard let id else { return }
        guard try await healthy(service, id: id, network: stack.network) else {
            let tail: String
            do {
                tail = try await engine.logTail(id, lines: 30)
            } catch {
                tail = "(its log could not be read: \(error))"
            }
            throw StackFailure(
                reason: "service \(service.name) was not healthy (\(service.check.described)) within \(service.check.timeout)",
                log: FailureLog(.service(service.name), SecretMask.mask(tail, secrets: service.secrets)),
                services: [ServiceState(name: service.name, status: "unhealthy", containerID: id)]
            )
        }
    }

    /// A volume exists; the first time, as a copy of its seed. A volume made now is always seeded; one that
    /// was there already only when the store has no mark of a finished copy (a crash cut it short). So
    /// whoever removed a volume, its next one starts from the seed again, and one with data is never copied over.
    private func prepareVolume(
        _ volume: String,
        seed: String?,
        service: StackSpec.Service,
        of stack: StackSpec,
        events: @Sendable (StackEvent) async throws -> Void
    ) async throws {
        // Asked of the engine only when the store has a mark: a first deploy seeds without the extra look.
        let seededBefore = seed != nil && stack.seeded.contains(volume) ? try await engine.volumeExists(volume) : false
        try await engine.ensureVolume(volume, labels: stack.labels.merging([ContainerLabels.service: service.name]) { $1 })
        guard let seed, !seededBefore else { return }
        guard try await engine.volumeExists(seed) else {
            throw StackFailure(reason: "service \(service.name): the seed volume \(seed) does not exist (docker volume ls)")
        }
        let clock = ContinuousClock()
        let began = clock.now
        do {
            let copier = stack.seedImage.map(SeedCopier.busybox) ?? .serviceImage(service.container.image)
            try await engine.copyVolume(from: seed, to: volume, with: copier, labels: stack.labels)
        } catch let error as CommandError {
            throw StackFailure(reason: "service \(service.name): copying the seed volume \(seed) failed: \(error)")
        }
        try await events(.seeded(volume: volume, from: seed, took: clock.now - began))
    }

    /// Running, and (with a port) accepting on it inside the network, or answering its path below 500.
    private func healthy(_ service: StackSpec.Service, id: String, network: String) async throws -> Bool {
        let (engine, probe, check) = (engine, probe, service.check)
        return try await Poller(first: .milliseconds(20), longest: .milliseconds(500)).until(timeout: check.timeout) {
            do {
                return try await engine.serviceReady(id, on: network) { address in
                    guard let port = check.port else { return true }
                    guard let path = check.healthPath else { return await probe.accepts(host: address, port: port) }
                    do {
                        return try await probe.get(host: address, port: port, path: path).status < 500
                    } catch {
                        return false  // not answering yet is what the loop waits out
                    }
                }
            } catch {
                return false  // the engine is asked again next round
            }
        }
    }

    /// What the API and the pages show of the services: each one wanted, its container, and whether it got
    /// healthy (one without a running container is `missing`).
    private func states(of stack: StackSpec, unhealthy: String?) async throws -> [ServiceState] {
        let containers = try await engine.list(for: stack.key).filter { $0.service != nil }
        return stack.services.map { service in
            let container = containers.first { $0.service == service.name && $0.running }
            let status = service.name == unhealthy ? "unhealthy" : container == nil ? "missing" : "healthy"
            return ServiceState(name: service.name, status: status, containerID: container?.id)
        }
    }

    public func runToEnd(_ spec: ContainerSpec, timeout: Duration) async throws -> (exitCode: Int32, output: String) {
        try await engine.runToEnd(spec, timeout: timeout)
    }

    public func deployCandidate(_ spec: ContainerSpec) async throws -> (id: String, upstream: Upstream) { try await engine.start(spec) }

    public func stop(_ id: String) async throws { try await engine.stop(id) }

    public func start(_ id: String, containerPort: Int?) async throws -> Upstream? { try await engine.restart(id, containerPort: containerPort) }

    public func remove(_ id: String) async throws { try await engine.remove(id) }

    /// Containers, then the network (nothing is attached any more), then the volumes.
    public func removeStack(of key: PullRequestKey) async throws -> [StackResource] {
        for container in try await engine.list(for: key) { try await engine.remove(container.id) }
        let resources = try await engine.stackResources(for: key)
        for resource in resources.filter({ $0.kind == .network }) + resources.filter({ $0.kind == .volume }) {
            try await engine.remove(resource)
        }
        return resources
    }

    public func remove(_ resource: StackResource) async throws { try await engine.remove(resource) }

    public func logTail(_ id: String, lines: Int) async throws -> String { try await engine.logTail(id, lines: lines) }

    public func streamLogs(_ id: String, tail: Int?, follow: Bool, to sink: OutputSink) async throws -> Int32 {
        try await engine.streamLogs(id, tail: tail, follow: follow, to: sink)
    }

    public func imageExists(_ reference: String) async throws -> Bool { try await engine.imageExists(reference) }

    public func removeImage(_ reference: String) async throws -> Bool { try await engine.removeImage(reference) }

    public func builtImages() async throws -> [(image: String, key: PullRequestKey)] { try await engine.builtImages() }

    public func distribute(_ image: String) async throws { try await engine.distribute(image) }

    public func ping() async throws { try await engine.ping() }

    public var appsMove: Bool { engine.placesTasks }
}

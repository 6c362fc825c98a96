import Foundation
import Logging

/// The services beside an environment's app, as the interpreter's stack steps need them: prepare the
/// network, the seeded volumes and each service (healthy, in `depends_on` groups), run the release, record
/// what the API shows, and remove it all.
struct StackSteps {
    let layout: StackLayout
    let seams: ControllerSeams
    /// `docker.seed_image`; nil: the service's own image copies its seed.
    let seedImage: String?
    let logger: Logger

    /// A service that could not start or become healthy, or a seed that could not be copied: the deploy
    /// fails, naming it.
    struct Failure: Error {
        var reason: String
        var log: FailureLog?
        var service: String? = nil
    }

    private var env: Environment { layout.env }
    private var key: PullRequestKey { env.key }

    /// Network, volumes (seeded the first time) and each service, started group by group (a service after
    /// those it depends on) and healthy; service containers no longer configured go.
    func prepare(sha: String) async throws {
        let runtime = seams.runtime
        if layout.hasServices { try await runtime.ensureNetwork(layout.network, labels: layout.labels) }
        let existing = try await runtime.list(for: key).filter { $0.service != nil }
        let wanted = Set(layout.repo.services.map(\.name))
        for container in existing where !wanted.contains(container.service ?? "") {
            try await runtime.remove(container.id)
        }
        for group in layout.startGroups {
            try await withThrowingTaskGroup(of: Void.self) { tasks in
                for service in group {
                    let mine = existing.filter { $0.service == service.name }
                    tasks.addTask { try await self.ensureService(service, sha: sha, existing: mine) }
                }
                try await tasks.waitForAll()
            }
        }
    }

    private func ensureService(_ service: StagerConfig.Service, sha: String, existing: [ContainerInfo]) async throws {
        let runtime = seams.runtime
        let spec: ContainerSpec
        do {
            spec = try layout.spec(for: service, sha: sha)
        } catch {
            throw Failure(reason: "service \(service.name): \(error)", log: nil)
        }
        let definition = spec.labels[ContainerLabels.definition]
        var id = existing.first { $0.running && $0.definition == definition }?.id
        // A service that sleeps starts again as it was; one the engine cannot start is made anew below.
        if id == nil, let stopped = existing.first(where: { $0.definition == definition }) {
            do {
                _ = try await runtime.restart(stopped.id, containerPort: nil)
                id = stopped.id
                logger.info("started service again", metadata: ["service": "\(service.name)"])
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
            for container in existing where container.id != id { try await runtime.remove(container.id) }
        }
        if id == nil {
            for (volume, _) in service.volumes.sorted(by: { $0.key < $1.key }) {
                try await prepareVolume(layout.volume(service.name, volume), seed: service.seed[volume], service: service.name, image: spec.image)
            }
            do {
                id = try await runtime.startService(spec)
            } catch let error as CommandError {
                throw Failure(reason: "docker could not start service \(service.name): \(error)", log: nil)
            } catch let error as PlacementFailure {
                throw Failure(reason: "service \(service.name): \(error)", log: nil)
            }
            logger.info("started service", metadata: ["service": "\(service.name)", "image": "\(spec.image)"])
            try await seams.announcer.audit(env, .deploy, "started service \(service.name) from \(spec.image)", sha: sha)
        }
        guard let id else { return }
        guard try await serviceHealthy(service, id: id, network: layout.network) else {
            // no log is still a failure worth naming
            let tail = SecretMask.mask((try? await runtime.logTail(id, lines: 30)) ?? "", secrets: Array(service.env.values))
            let what =
                service.port.map { port in service.healthPath.map { "GET \($0) on port \(port) below 500" } ?? "TCP port \(port)" } ?? "running"
            throw Failure(
                reason: "service \(service.name) was not healthy (\(what)) within \(service.healthTimeout)",
                log: FailureLog(.service(service.name), tail),
                service: service.name
            )
        }
    }

    /// A volume exists; the first time, as a copy of its seed. A volume made now is always seeded; one that
    /// was there already only when the store has no mark of a finished copy (a crash cut it short). So
    /// whoever removed a volume (a teardown, gc, a person), its next one starts from the seed again, and a
    /// volume with data is never copied over.
    private func prepareVolume(_ volume: String, seed: String?, service: String, image: String) async throws {
        let runtime = seams.runtime
        // Asked of the engine only when the store has a mark: a first deploy seeds without the extra look.
        let marked = seed != nil ? try await seams.environments.fact(StackLayout.seededFact(volume)) ?? "" != "" : false
        let seededBefore = marked ? try await runtime.volumeExists(volume) : false
        try await runtime.ensureVolume(volume, labels: layout.labels.merging([ContainerLabels.service: service]) { $1 })
        guard let seed, !seededBefore else { return }
        guard try await runtime.volumeExists(seed) else {
            throw Failure(reason: "service \(service): the seed volume \(seed) does not exist (docker volume ls)", log: nil)
        }
        let clock = ContinuousClock()
        let began = clock.now
        do {
            try await runtime.copyVolume(
                from: seed,
                to: volume,
                with: seedImage.map(SeedCopier.busybox) ?? .serviceImage(image),
                labels: layout.labels
            )
        } catch let error as CommandError {
            throw Failure(reason: "service \(service): copying the seed volume \(seed) failed: \(error)", log: nil)
        }
        try await seams.environments.setFact(StackLayout.seededFact(volume), seed, at: Date())
        logger.info("seeded volume", metadata: ["volume": "\(volume)", "from": "\(seed)", "seconds": "\((clock.now - began).seconds)"])
        try await seams.announcer.audit(env, .deploy, "seeded \(volume) from \(seed) in \(Int((clock.now - began).seconds * 1000)) ms")
    }

    /// Running, and (with a port) accepting on it inside the network, or answering its path below 500.
    private func serviceHealthy(_ service: StagerConfig.Service, id: String, network: String) async throws -> Bool {
        let (runtime, probe) = (seams.runtime, seams.probe)
        return try await Poller(first: .milliseconds(20), longest: .milliseconds(500)).until(timeout: service.healthTimeout) {
            // Not on the network yet (starting, or exited) is what the loop waits out.
            guard let address = try? await runtime.address(of: id, on: network) else { return false }  // the engine asked again next round
            // An address the runtime cannot reach from here (a swarm overlay): the running task is the check.
            guard let port = service.port, runtime.reachesServices else { return true }
            if let path = service.healthPath {
                guard let answer = try? await probe.get(host: address, port: port, path: path) else { return false }  // not answering yet
                return answer.status < 500
            }
            return await probe.accepts(host: address, port: port)
        }
    }

    /// Runs the release command in the new app image, with the app's variables, on the network; its exit
    /// status and its output (secrets masked), which the history keeps.
    func release(_ command: [String], app: ContainerSpec, sha: String) async throws -> (exitCode: Int32, output: String) {
        let spec = layout.releaseSpec(app: app, command: command, sha: sha)
        let clock = ContinuousClock()
        let began = clock.now
        let (exitCode, output) = try await seams.runtime.runToEnd(spec, timeout: Self.releaseTimeout)
        let masked = SecretMask.mask(output, secrets: Array(layout.repo.env.values))
        let argv = command.joined(separator: " ")
        try await seams.announcer.audit(
            env,
            .release,
            "release `\(argv)` exited \(exitCode) after \(Int((clock.now - began).seconds * 1000)) ms:\n\(masked.suffix(4000))",
            sha: sha
        )
        logger.info("ran release", metadata: ["exit": "\(exitCode)"])
        return (exitCode, masked)
    }

    /// A release that runs longer is stopped and fails the deploy.
    static let releaseTimeout: Duration = .seconds(600)

    /// What the API and the pages show of the services: each configured one, its container, and whether it
    /// got healthy (`unhealthy` names the one that did not; one without a container is `missing`).
    func recordServices(unhealthy: String?) async throws {
        let containers = try await seams.runtime.list(for: key).filter { $0.service != nil }
        let states = layout.repo.services.map { service in
            let container = containers.first { $0.service == service.name && $0.running }
            let status = service.name == unhealthy ? "unhealthy" : container == nil ? "missing" : "healthy"
            return ServiceState(name: service.name, status: status, containerID: container?.id)
        }
        try await seams.environments.update(key) { $0.services = states }
    }

    /// Service containers, then the network (nothing is attached any more), then the volumes; their marks go
    /// too, so the store does not keep one per volume that ever was.
    func remove() async throws {
        let runtime = seams.runtime
        for container in try await runtime.list(for: key) { try await runtime.remove(container.id) }
        let resources = try await runtime.stackResources(for: key)
        for resource in resources.filter({ $0.kind == .network }) + resources.filter({ $0.kind == .volume }) {
            try await runtime.remove(resource)
            if resource.kind == .volume { try await seams.environments.setFact(StackLayout.seededFact(resource.name), "", at: Date()) }
        }
        try await seams.environments.update(key) { $0.services = [] }
        logger.info("removed the services, network and volumes", metadata: ["resources": "\(resources.count)"])
    }
}

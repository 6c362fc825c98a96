import Foundation
import Logging

/// The seams the controller works through, each a protocol with an in-memory twin for the unit tests.
public struct ControllerSeams: Sendable {
    public var environments: any EnvironmentRepository
    public var runtime: any ContainerRuntime
    public var frontDoor: any FrontDoor
    public var announcer: Announcer
    public var probe: any Prober
    public var builder: any ImageBuilding
    /// nil without a GitHub token: then no label can be verified, and PRs that need approval stay blocked.
    public var permissions: (any PermissionLookup)?

    public init(
        environments: any EnvironmentRepository,
        runtime: any ContainerRuntime,
        frontDoor: any FrontDoor,
        announcer: Announcer,
        probe: any Prober,
        builder: any ImageBuilding,
        permissions: (any PermissionLookup)?
    ) {
        self.environments = environments
        self.runtime = runtime
        self.frontDoor = frontDoor
        self.announcer = announcer
        self.probe = probe
        self.builder = builder
        self.permissions = permissions
    }
}

/// How one convergence ended, for the metrics and the logs.
public enum ConvergenceOutcome: String, Sendable {
    case noop, deployed, failed, removed, blocked, waiting, error
}

/// Carries out the plan for one PR once: passes the gate, observes, plans, and interprets the steps over
/// the seams, checking before each one that no newer intent has arrived.
struct Execution {
    let seams: ControllerSeams
    let config: StagerConfig
    let env: Environment
    let deploySlots: Slots
    let metrics: StagerMetrics
    /// Requests held while the environment wakes wait here for the candidate's port.
    let wakes: WakeSignals
    var logger: Logger
    /// The container the plan started or adopted.
    var candidate: ContainerInfo?
    var outcome = ConvergenceOutcome.noop
    /// The environment is brand new in this process: no container of it can exist, so the engine is not asked.
    var nothingRunsYet = false
    let startedAt = ContinuousClock.now
    /// How long a wake took until its app answered its health path.
    var wokeAfter: Duration?

    init(
        seams: ControllerSeams,
        config: StagerConfig,
        env: Environment,
        deploySlots: Slots,
        metrics: StagerMetrics,
        wakes: WakeSignals,
        logger: Logger
    ) {
        self.seams = seams
        self.config = config
        self.env = env
        self.deploySlots = deploySlots
        self.metrics = metrics
        self.wakes = wakes
        self.logger = logger
    }

    var key: PullRequestKey { env.key }
    var environments: any EnvironmentRepository { seams.environments }
    var announcer: Announcer { seams.announcer }
    var repo: StagerConfig.Repo? { config.repo(env.repo) }

    enum Ending: Equatable {
        /// The plan ran to its end, or ended in a recorded failure.
        case finished
        /// A newer intent arrived mid-way.
        case superseded
        /// Blocked for approval, or waiting for room under `max_environments`.
        case waiting
    }

    mutating func run() async throws -> Ending {
        if env.desired == .present {
            guard try await approved(), try await admitted() else { return .waiting }
        }
        // A teardown takes the URL down before anything else: closes that come together then reach nginx
        // together and share a reload, and the URL is gone at once. The engine is asked meanwhile.
        let observed: Observation
        if nothingRunsYet {
            observed = Observation(of: env, containers: [], routed: await seams.frontDoor.routed(slug: env.slug))
        } else if env.desired == .absent, await seams.frontDoor.routed(slug: env.slug) != nil {
            _ = try await perform(.removeVhost)
            observed = Observation(of: env, containers: [], routed: nil)
        } else {
            observed = try await observe()
        }
        let steps = Planner.plan(desired: env.desiredState, observed: observed, stack: StackLayout.desire(for: env, config: config))
        if !steps.isEmpty {
            logger.info("converging", metadata: ["desired": "\(env.desiredState)", "steps": "\(steps.count)"])
        }
        for step in steps {
            guard try await environments.desiredVersion(key) == env.desiredVersion else {
                logger.info("superseded by a newer intent")
                return .superseded
            }
            do {
                guard try await perform(step) else { return .finished }
            } catch is Superseded {
                logger.info("superseded by a newer intent while building")
                return .superseded
            }
        }
        return .finished
    }

    /// A newer intent arrived while this one's image was being built; the build was stopped.
    struct Superseded: Error {}

    // MARK: The gate

    /// Whether the desired sha may run (`Gate.approval`); a pending label is checked against its sender's
    /// permission here. Without an approval the PR is blocked, and says so on the PR once.
    private mutating func approved() async throws -> Bool {
        let sender: String
        switch Gate.approval(env, requireLabel: repo?.requireLabel ?? false, allowForks: repo?.allowForks ?? false) {
        case .notNeeded, .approved: return true
        case .blocked: return try await block(ignored: nil)
        case .checkLabel(let labelSender): sender = labelSender
        }
        guard let permissions = seams.permissions else {
            try await announcer.audit(env, .approval, "label by \(sender) not checked: no GitHub token configured")
            return try await block(ignored: nil)
        }
        guard try await permissions.confirmsLabel(config.forks.label, sha: env.desiredSha, on: key) else {
            try await environments.update(key) { $0.labelSender = nil }
            try await announcer.audit(
                env,
                .approval,
                "label by \(sender) ignored: GitHub does not show \(config.forks.label) on the PR at \(env.desiredSha.prefix(12))",
                actor: sender
            )
            logger.warning("deploy label not confirmed by GitHub", metadata: ["by": "\(sender)"])
            return try await block(ignored: nil)
        }
        let permission = try await permissions.permission(of: sender, in: env.repo)
        guard Gate.mayApprove(permission) else {
            try await environments.update(key) { $0.labelSender = nil }
            try await announcer.audit(env, .approval, "label by \(sender) ignored: permission \(permission)", actor: sender)
            logger.warning("deploy label ignored", metadata: ["by": "\(sender)", "permission": "\(permission)"])
            return try await block(ignored: sender)
        }
        let sha = env.desiredSha
        try await environments.update(key) {
            $0.approvedSha = sha
            $0.approvedBy = sender
            $0.labelSender = nil
        }
        try await announcer.audit(env, .approval, "\(sender) (\(permission)) approved \(sha.prefix(12))", actor: sender)
        logger.info("approved", metadata: ["by": "\(sender)", "permission": "\(permission)"])
        return true
    }

    /// Always false: the PR waits for approval. Said on the PR once, and again when a reader's label was ignored.
    private mutating func block(ignored: String?) async throws -> Bool {
        outcome = .blocked
        if env.status != .blocked || ignored != nil { try await announcer.announce(.blocked(ignored: ignored), for: env) }
        return false
    }

    /// Takes one of the `max_environments` places, or records the PR as waiting and says so on the PR once.
    private mutating func admitted() async throws -> Bool {
        guard !env.admitted else { return true }
        let admission = try await environments.admit(key, limit: config.limits.maxEnvironments, repoLimit: repo?.maxEnvironments)
        guard case .waiting(let position, let inUse, let limit, let scope) = admission else { return true }
        outcome = .waiting
        guard env.status != .waiting else { return false }
        logger.info("waiting for room", metadata: ["position": "\(position)", "limit": "\(scope)=\(limit)"])
        try await announcer.announce(.waiting(position: position, inUse: inUse, limit: limit, scope: scope), for: env)
        return false
    }

    // MARK: The steps

    func observe() async throws -> Observation {
        Observation(of: env, containers: try await seams.runtime.list(for: key), routed: await seams.frontDoor.routed(slug: env.slug))
    }

    /// Runs one step; false when the deploy failed and the rest of the plan must not run.
    private mutating func perform(_ step: Step) async throws -> Bool {
        switch step {
        case .prepareStack:
            guard let layout else { return true }
            // A wake keeps saying `sleeping` until its app answers.
            if env.status != .deploying && env.status != .sleeping { try await setStatus(.deploying) }
            let steps = stackSteps(layout)
            do {
                try await steps.prepare(sha: env.desiredSha)
                try await steps.recordServices(unhealthy: nil)
            } catch let failure as StackSteps.Failure {
                try await steps.recordServices(unhealthy: failure.service)
                return try await fail(sha: env.desiredSha, reason: failure.reason, log: failure.log)
            }
        case .runRelease(let sha):
            guard let layout, let release = layout.repo.release else { return true }
            return try await runRelease(release, layout: layout, sha: sha)
        case .removeStack:
            guard let layout else { return true }
            try await stackSteps(layout).remove()
        case .startContainer(let sha):
            if let repo, let spec = repo.build {
                guard try await ensureBuilt(sha: sha, spec: spec, repo: repo) else { return false }
            }
            try await setStatus(.deploying)
            outcome = .deployed
            // GitHub's deployment is created while the container starts: neither waits for the other.
            async let deploying = announcer.deploymentStarted(env, sha: sha)
            let started = await Result { try await deploySlots.withSlot { try await startContainer(sha: sha) } }
            if let deploymentID = await deploying {
                try await environments.update(key) { $0.pendingDeploymentID = deploymentID }
            }
            do {
                candidate = try started.get()
            } catch let error as CommandError {
                guard case .failed = error else { throw error }
                // The engine answered but refused this container (bad image, bad option): a real failure.
                return try await fail(sha: sha, reason: "docker could not start the container: \(error)")
            } catch let error as ImageReference.Failure {
                return try await fail(sha: sha, reason: error.description)
            } catch let error as PlacementFailure {
                return try await fail(sha: sha, reason: error.description)
            } catch let error as ContainerSpecError {
                return try await fail(sha: sha, reason: error.description)
            }
        case .adoptContainer(let container):
            try await setStatus(.deploying)
            outcome = .deployed
            candidate = container
        case .awaitHealthy:
            guard let candidate else { return false }
            guard try await awaitHealthy(candidate) else {
                let seconds = (repo?.healthTimeout ?? .zero).seconds
                // Whole seconds as configured ("30s"); a sub-second timeout keeps its fraction ("0.3s").
                let shown = seconds.rounded() == seconds ? String(Int(seconds)) : String(seconds)
                return try await fail(sha: candidate.sha, reason: "the container did not answer \(healthPath) below 500 within \(shown)s")
            }
            if let problem = await smokeProblem(candidate) {
                return try await fail(sha: candidate.sha, reason: problem)
            }
            // Requests held for a sleeping environment go to it now, while nginx is told.
            if let upstream = candidate.upstream {
                if env.status == .sleeping { wokeAfter = ContinuousClock.now - startedAt }
                await wakes.post(.awake(upstream), for: key)
            }
        case .drain:
            let drain = repo?.drain ?? .seconds(2)
            logger.info("draining the previous container", metadata: ["for": "\(drain)"])
            try await Task.sleep(for: drain)
        case .routeToCandidate:
            guard let candidate, candidate.upstream != nil else { return false }
            do {
                try await seams.frontDoor.apply(route(to: candidate))
            } catch let error as NginxError where error.isPermanent {
                // A vhost nginx's test rejects fails for good; an nginx that cannot be reloaded is retried.
                return try await fail(sha: candidate.sha, reason: error.description)
            }
            try await seams.frontDoor.confirmRouted(hostName: hostName, to: candidate.name)
        case .removeContainer(let container):
            try await seams.runtime.remove(container.id)
            logger.info("removed container", metadata: ["container": "\(container.name)"])
        case .announceReady:
            try await announceReady()
        case .markAsleep:
            try await environments.update(key) { $0.status = .sleeping }
            try await announcer.audit(env, .sleep, "asleep: the URL routes to the wake path and the containers are stopped")
            logger.info("asleep")
        case .routeToWake(let app):
            // From here on a request meets the wake path: what an earlier wake posted no longer holds.
            await wakes.forget(key)
            try await seams.frontDoor.apply(route(to: app, asleep: true))
            try await seams.frontDoor.confirmRouted(hostName: hostName, to: app.name, asleep: true)
        case .stopContainer(let container):
            try await seams.runtime.stop(container.id)
            logger.info("stopped container", metadata: ["container": "\(container.name)"])
        case .wakeContainer(let container):
            let upstream: Upstream?
            do {
                upstream = try await seams.runtime.restart(container.id, containerPort: repo?.port)
            } catch let error as CommandError {
                guard case .failed = error else { throw error }
                candidate = container
                return try await fail(sha: container.sha, reason: "docker could not start the sleeping container again: \(error)")
            } catch let error as PlacementFailure {
                candidate = container
                return try await fail(sha: container.sha, reason: "the sleeping app did not start again: \(error)")
            }
            var woken = container
            (woken.running, woken.hostPort, woken.address) = (true, upstream?.port, upstream?.nodeAddress)
            candidate = woken
            logger.info(
                "woke container",
                metadata: ["container": "\(container.name)", "upstream": "\(upstream.map(String.init(describing:)) ?? "-")"]
            )
        case .markAwake:
            try await markAwake()
        case .removeVhost:
            try await takeURLDown()
        case .deleteComment:
            try await announcer.removeComment(of: env)
        case .markRemoved:
            outcome = .removed
            try await announcer.deploymentsRetired(env)
            try await environments.update(key) {
                $0.deploymentID = nil
                $0.pendingDeploymentID = nil
                $0.status = .removed
                $0.admitted = false
                $0.waitingSince = nil
                $0.containerID = nil
                $0.containerName = nil
                $0.hostPort = nil
                $0.hostAddress = nil
                $0.deployedSha = nil
            }
            await wakes.forget(key)
            await announcer.removed(env)
            try await announcer.audit(env, .teardown, "environment removed")
            metrics.tornDown(duration: ContinuousClock.now - startedAt)
            logger.info("environment removed")
        }
        return true
    }

    /// A teardown's first move. The engine is asked for the PR's containers while nginx reloads without the
    /// vhost; once the reload is in, the containers go (the one serving at once, any other as soon as the
    /// engine names it) while nginx's old workers finish: a request that still reaches one meets a closed
    /// PR either way. The teardown goes on once nginx confirms.
    private mutating func takeURLDown() async throws {
        let (runtime, frontDoor, key, hostName, slug, serving) = (seams.runtime, seams.frontDoor, key, hostName, env.slug, env.containerID)
        if env.status != .removing { try await setStatus(.removing) }
        outcome = .removed
        try await withThrowingTaskGroup(of: [String].self) { group in
            group.addTask { try await runtime.ids(for: key) }
            try await frontDoor.remove(slug: slug)
            group.addTask {
                try await frontDoor.confirmUnrouted(hostName: hostName)
                return []
            }
            if let serving {
                group.addTask {
                    try await runtime.remove(serving)
                    return []
                }
            }
            while let listed = try await group.next() {
                for id in listed where !Self.same(id, serving) {
                    group.addTask {
                        try await runtime.remove(id)
                        return []
                    }
                }
            }
        }
        logger.info("took the URL down and removed the containers")
    }

    /// docker names a container by its full id or any unique prefix of it.
    private static func same(_ id: String, _ other: String?) -> Bool {
        guard let other, !id.isEmpty, !other.isEmpty else { return false }
        return id.hasPrefix(other) || other.hasPrefix(id)
    }

    private var hostName: String { "\(env.slug).\(config.preview.domain)" }

    /// The vhost for `app`: to where it answers, or (asleep) to the wake path, naming it either way.
    private func route(to app: ContainerInfo, asleep: Bool = false) -> Route {
        Route(
            key: key,
            slug: env.slug,
            hostName: hostName,
            upstreamPort: app.hostPort ?? 0,
            containerName: app.name,
            sha: app.sha,
            branch: env.branch,
            access: repo?.access ?? .open,
            asleep: asleep,
            upstreamHost: app.address ?? Upstream.loopback
        )
    }

}

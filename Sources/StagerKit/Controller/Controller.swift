import Foundation
import Logging
import ServiceLifecycle

/// What the controller needs from the world, gathered so tests can build one with other parts.
public struct ControllerDependencies: Sendable {
    public var config: StagerConfig
    public var store: Store
    public var runtime: any ContainerRuntime
    public var frontDoor: NginxFrontDoor
    public var publisher: any CommentPublisher
    public var templates: Templates
    public var probe: HTTPProbe
    public var metrics: StagerMetrics
    public var engineHealth: EngineHealth
    /// nil without a token: then no label can be verified, and fork PRs stay blocked.
    public var github: GitHubClient?
    var deployments: DeploymentTracker { DeploymentTracker(client: github, config: config) }
    /// Builds images of repositories with a `build:` block; one set of build slots for the whole process.
    public var builder: ImageBuilder
    /// `docker run`s at a time (`limits.concurrent_deploys`); teardowns and comments are not held back by it.
    public var deploySlots: Slots
    public var logger: Logger

    public init(config: StagerConfig, store: Store, runtime: any ContainerRuntime, frontDoor: NginxFrontDoor,
                publisher: any CommentPublisher, templates: Templates, probe: HTTPProbe, metrics: StagerMetrics,
                github: GitHubClient? = nil, builder: ImageBuilder? = nil, logger: Logger) {
        self.github = github
        self.deploySlots = Slots(limit: config.limits.concurrentDeploys)
        self.builder = builder ?? ImageBuilder(config: config, runner: SubprocessRunner(), slots: Slots(limit: config.limits.concurrentBuilds))
        self.config = config
        self.store = store
        self.runtime = runtime
        self.frontDoor = frontDoor
        self.publisher = publisher
        self.templates = templates
        self.probe = probe
        self.metrics = metrics
        self.engineHealth = EngineHealth()
        self.logger = logger
    }
}

/// Converges each PR's environment to its newest desired state: one worker per PR at a time, many PRs in
/// parallel (container starts limited to `limits.concurrent_deploys`, so a burst of closes is torn down
/// together and shares nginx reloads), and a reconciler at start-up and every interval.
public final class Controller: Service, Sendable {
    public let queue = WorkQueue()
    private let fresh = FreshKeys()
    private let deps: ControllerDependencies
    private let retries = Retries()

    public init(_ deps: ControllerDependencies) {
        self.deps = deps
    }

    /// `firstIntent`: this process just created the PR's environment from a webhook, so the engine cannot
    /// hold a container of it yet and its first plan need not ask (one `docker ps` less on the way to live).
    public func enqueue(_ key: PullRequestKey, firstIntent: Bool = false) async {
        if firstIntent { await fresh.insert(key) }
        await queue.enqueue(key)
        deps.metrics.queueDepth(await queue.depth)
    }

    /// Room freed up: PRs waiting under `max_environments` try again, oldest first.
    func enqueueWaiting() async {
        do {
            for key in try deps.store.waitingKeys() { await enqueue(key) }
        } catch {
            deps.logger.error("cannot list the PRs waiting for room; the reconciler tries again", metadata: ["error": "\(error)"])
        }
    }

    public var engineHealth: EngineHealth { deps.engineHealth }

    public func run() async throws {
        await reloadNginxIfOwed()
        do {
            try await converging()
        } catch is CancellationError {
            // A graceful shutdown: whatever was mid-way is finished by the next start's reconcile.
        }
        // Commands waiting for this serve learn at once that it is gone. In a task of its own: this one is
        // cancelled, and GRDB does not start a write for a cancelled task.
        let store = deps.store
        await Task { try? await store.setFact(Self.heartbeatFact, "stopped", at: .distantPast) }.value
    }

    private func converging() async throws {
        try await cancelWhenGracefulShutdown {
            try await withThrowingTaskGroup(of: Void.self) { group in
                for _ in 0..<max(Self.workers, self.deps.config.limits.concurrentDeploys) {
                    group.addTask { await self.work() }
                }
                group.addTask { try await self.reconcileForever() }
                group.addTask { try await self.watchStore() }
                group.addTask { try await self.retryWhenDue() }
                defer { group.cancelAll() }
                try await withTaskCancellationHandler {
                    try await group.next()
                } onCancel: {
                    Task { await self.queue.close() }
                }
            }
        }
    }

    /// A change to the sites folder that a killed process never reloaded would leave nginx routing to what
    /// is gone: reload it first. nginx being down is no reason not to start; the next change or reconcile retries.
    func reloadNginxIfOwed() async {
        do {
            if try await deps.frontDoor.reloadIfOwed() { deps.logger.info("reloaded nginx: a change to the sites folder had not been reloaded") }
        } catch {
            deps.logger.warning("nginx owes a reload and could not be reloaded; retrying later", metadata: ["error": "\(error)"])
        }
    }

    private func work() async {
        while let key = await queue.next() {
            await converge(key)
            await queue.done(key)
            deps.metrics.queueDepth(await queue.depth)
        }
    }

    /// PRs whose convergence failed for a passing reason go back to the queue when their backoff is over.
    /// A task of the controller's group, so a shutdown cancels every pending retry with it.
    private func retryWhenDue() async throws {
        while !Task.isCancelled {
            for key in await retries.takeDue() { await enqueue(key) }
            try await Task.sleep(for: .milliseconds(100))
        }
    }

    private func reconcileForever() async throws {
        while !Task.isCancelled {
            do {
                _ = try await Reconciler(deps: deps, controller: self).reconcile()
                await engineHealth.answered()
            } catch is CancellationError {
                return
            } catch let error as EngineUnavailable {
                await engineHealth.failed(error.message)
                deps.logger.error("reconcile failed", metadata: ["error": "\(error)"])
            } catch {
                deps.logger.error("reconcile failed", metadata: ["error": "\(error)"])
            }
            try await Task.sleep(for: deps.config.reconcileInterval)
        }
    }

    /// `stager deploy`, `destroy`, `sync` and `gc` run as other processes and change desired state in the
    /// store; this notices within a second, and keeps a heartbeat those commands read to know serve is up.
    private func watchStore() async throws {
        var seen = try deps.store.pendingVersions()
        var lastBeat = ContinuousClock.now - Self.heartbeatEvery
        while !Task.isCancelled {
            // A store that fails for a moment (a locked database) is tried again next second; a lasting failure shows in the log.
            do {
                if ContinuousClock.now - lastBeat >= Self.heartbeatEvery {
                    try await deps.store.setFact(Self.heartbeatFact, "pid \(ProcessInfo.processInfo.processIdentifier)")
                    lastBeat = ContinuousClock.now
                }
                let pending = try deps.store.pendingVersions()
                let changed = pending.filter { seen[$0.key] != $0.value }.keys
                for key in changed.sorted(by: { $0.description < $1.description }) { await enqueue(key) }
                if !changed.isEmpty { await enqueueWaiting() }
                seen = pending
            } catch is CancellationError {
                return
            } catch {
                deps.logger.error("cannot read the store for other commands' changes", metadata: ["error": "\(error)"])
            }
            try await Task.sleep(for: .seconds(1))
        }
    }

    /// PRs converged at once; what is expensive (docker run, docker build) has slots of its own.
    static let workers = 64
    /// A redeploy waits until no push has come for this long (at most `longestSettle`), so a storm of pushes
    /// to one PR costs a deploy every few seconds, not one per push. A first deploy and a teardown never wait.
    static let quietBeforeRedeploy: Duration = .milliseconds(250)
    static let longestSettle: Duration = .seconds(2)

    /// A burst of closes (a release merging many PRs) is more than the workers take at once: the URLs of
    /// the teardowns still queued go down with this one's, in one nginx batch, instead of a reload each.
    private func takeDownQueuedTeardowns(with env: Environment) async throws {
        var slugs: [String] = []
        for key in [env.key] + (await queue.queued) {
            guard let other = try deps.store.environment(key), other.desired == .absent, await deps.frontDoor.routed(slug: other.slug) != nil else { continue }
            slugs.append(other.slug)
        }
        guard slugs.count > 1 else { return }
        deps.logger.info("taking down queued teardowns together", metadata: ["vhosts": "\(slugs.count)"])
        try await deps.frontDoor.remove(slugs: slugs)
    }

    /// The PR's newest intent, once pushes to it have paused (see `quietBeforeRedeploy`).
    private func settledIntent(_ key: PullRequestKey, since taken: ContinuousClock.Instant) async throws -> Environment? {
        while true {
            guard let env = try deps.store.environment(key) else { return nil }
            let redeploy = env.desired == .present && env.deployedSha != nil && env.deployedSha != env.desiredSha
            // lastActivityAt moves with every accepted delivery.
            let quietFor = Date().timeIntervalSince(env.lastActivityAt ?? .distantPast)
            guard redeploy, quietFor < Self.quietBeforeRedeploy.seconds, ContinuousClock.now - taken < Self.longestSettle else { return env }
            try await Task.sleep(for: .milliseconds(50))
        }
    }

    public static let heartbeatFact = "serve.heartbeat"
    static let heartbeatEvery: Duration = .seconds(5)

    // MARK: Converging one PR

    /// Runs the plan for the PR's newest desired state until nothing is left to do, starting over when
    /// a newer intent arrives mid-way. A transient failure (engine down, GitHub unreachable) is retried
    /// later with backoff; the accepted intent stays in the store meanwhile.
    func converge(_ key: PullRequestKey) async {
        var logger = deps.logger
        logger[metadataKey: "repo"] = "\(key.repo)"
        logger[metadataKey: "pr"] = "\(key.number)"
        let taken = ContinuousClock.now
        while !Task.isCancelled {
            do {
                guard let env = try await settledIntent(key, since: taken) else { return }
                if env.desired == .absent { try await takeDownQueuedTeardowns(with: env) }
                logger[metadataKey: "delivery"] = "\(env.lastDeliveryID ?? "-")"
                var execution = Execution(deps: deps, env: env, logger: logger)
                execution.nothingRunsYet = await fresh.take(key) && env.desiredVersion == 1 && env.appliedVersion == 0
                let ending = try await execution.run()
                await engineHealth.answered()
                if ending == .superseded { continue }
                await retries.clear(key)
                deps.metrics.converged(outcome: execution.outcome)
                // A waiting PR stays behind its desired version; freed room or the reconciler brings it back.
                if ending == .waiting { return }
                try await deps.store.markApplied(key, version: env.desiredVersion)
                if execution.outcome == "removed" { await enqueueWaiting() }
                if try deps.store.desiredVersion(key) == env.desiredVersion { return }
            } catch is CancellationError {
                return
            } catch {
                if let unavailable = error as? EngineUnavailable { await engineHealth.failed(unavailable.message) }
                let delay = await retries.schedule(key)
                logger.error("converging failed; will retry", metadata: ["error": "\(error)", "retry_in": "\(delay)"])
                do {
                    try await deps.store.audit(key, kind: "error", message: "\(error)")
                } catch {
                    logger.error("cannot record the failure in the audit trail", metadata: ["error": "\(error)"])
                }
                deps.metrics.converged(outcome: "error")
                return
            }
        }
    }
}

/// PRs whose environment this process created from a webhook and has not converged yet.
actor FreshKeys {
    private var keys: Set<PullRequestKey> = []

    func insert(_ key: PullRequestKey) { keys.insert(key) }

    /// Whether the key was fresh; it is not any more.
    func take(_ key: PullRequestKey) -> Bool { keys.remove(key) != nil }
}

/// Backoff per PR for transient failures (`Backoff.convergence`), and when each retry is due.
actor Retries {
    private var attempts: [PullRequestKey: Int] = [:]
    private var due: [PullRequestKey: ContinuousClock.Instant] = [:]

    /// Counts a failure and schedules the retry; returns its delay.
    func schedule(_ key: PullRequestKey) -> Duration {
        let attempt = attempts[key, default: 0]
        attempts[key] = attempt + 1
        let delay = Backoff.convergence.delay(after: attempt + 1)
        due[key] = ContinuousClock.now + delay
        return delay
    }

    /// The PRs whose retry is due now; they are no longer scheduled.
    func takeDue() -> [PullRequestKey] {
        let now = ContinuousClock.now
        let ready = due.filter { $0.value <= now }.keys.sorted { $0.description < $1.description }
        for key in ready { due[key] = nil }
        return ready
    }

    /// A success: the next failure starts from the shortest delay again.
    func clear(_ key: PullRequestKey) {
        attempts[key] = nil
    }
}

import Foundation
import Logging
import ServiceLifecycle

/// Converges each PR's environment to its newest desired state: one worker per PR at a time, many PRs in
/// parallel (container starts limited to `limits.concurrent_deploys`, so a burst of closes is torn down
/// together and shares nginx reloads), and a reconciler at start-up and every interval.
public final class Controller: Service, Sendable {
    public let queue = WorkQueue()
    private let fresh = FreshKeys()
    let retries = Retries()
    let seams: ControllerSeams
    let config: StagerConfig
    let metrics: StagerMetrics
    let logger: Logger
    public let engineHealth = EngineHealth()
    /// Requests held for sleeping environments wait here for the wake.
    public let wakes = WakeSignals()
    /// `docker run`s at a time (`limits.concurrent_deploys`); teardowns and comments are not held back by it.
    private let deploySlots: Slots

    public init(config: StagerConfig, seams: ControllerSeams, metrics: StagerMetrics, logger: Logger) {
        self.config = config
        self.seams = seams
        self.metrics = metrics
        self.logger = logger
        self.deploySlots = Slots(limit: config.limits.concurrentDeploys)
    }

    private var environments: any EnvironmentRepository { seams.environments }

    /// `firstIntent`: this process just created the PR's environment from a webhook, so the engine cannot
    /// hold a container of it yet and its first plan need not ask (one `docker ps` less on the way to live).
    public func enqueue(_ key: PullRequestKey, firstIntent: Bool = false) async {
        if firstIntent { await fresh.insert(key) }
        await queue.enqueue(key)
        metrics.queueDepth(await queue.depth)
    }

    /// Room freed up: PRs waiting under `max_environments` try again, oldest first.
    func enqueueWaiting() async {
        do {
            for key in try await environments.waitingKeys() { await enqueue(key) }
        } catch {
            logger.error("cannot list the PRs waiting for room; the reconciler tries again", metadata: ["error": "\(error)"])
        }
    }

    public func run() async throws {
        await reloadNginxIfOwed()
        do {
            try await converging()
        } catch is CancellationError {
            // A graceful shutdown: whatever was mid-way is finished by the next start's reconcile.
        }
    }

    private func converging() async throws {
        try await cancelWhenGracefulShutdown {
            try await withThrowingTaskGroup(of: Void.self) { group in
                for _ in 0..<max(Self.workers, self.config.limits.concurrentDeploys) {
                    group.addTask { await self.work() }
                }
                group.addTask { try await self.reconcileForever() }
                group.addTask { try await self.watchStore() }
                group.addTask { try await self.retryWhenDue() }
                group.addTask { try await self.watchForTheEngine() }
                // Only with something to decide: every task of this group runs until serve stops.
                if self.config.sleeps { group.addTask { try await self.sleepWhenIdle() } }
                if self.seams.runtime.appsMove { group.addTask { try await self.followTasks() } }
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
            if try await seams.frontDoor.reloadIfOwed() { logger.info("reloaded nginx: a change to the sites folder had not been reloaded") }
        } catch is CancellationError {
            return  // serve is stopping: the marker stays, and its next start reloads
        } catch {
            logger.warning("nginx owes a reload and could not be reloaded; retrying later", metadata: ["error": "\(error)"])
        }
    }

    private func work() async {
        while let key = await queue.next() {
            await converge(key)
            await queue.done(key)
            metrics.queueDepth(await queue.depth)
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

    /// While the engine is down, asks it every second whether it is back; when it is, the PRs waiting out a
    /// backoff go at once and a reconcile finds what the outage stopped, instead of at the next interval.
    private func watchForTheEngine() async throws {
        while !Task.isCancelled {
            try await Task.sleep(for: Self.engineWatchEvery)
            await checkTheEngine()
        }
    }

    static let engineWatchEvery: Duration = .seconds(1)

    /// One look of `watchForTheEngine`.
    func checkTheEngine() async {
        guard await engineHealth.down != nil else { return }
        do {
            try await seams.runtime.ping()
        } catch {
            return
        }
        await engineHealth.answered()
        logger.info("the Docker engine answers again; retrying now what waited for it")
        await retries.bringForward()
        do {
            _ = try await Reconciler(controller: self).reconcile()
        } catch {
            logger.error("reconcile after the engine came back failed; the next interval tries again", metadata: ["error": "\(error)"])
        }
    }

    /// Puts idle environments to sleep (`sleep_after`) and the least recently used beyond `max_awake`, as
    /// changes of desired state like any other.
    private func sleepWhenIdle() async throws {
        while !Task.isCancelled {
            try await Task.sleep(for: Self.idleCheckEvery)
            await putIdleToSleep()
        }
    }

    static let idleCheckEvery: Duration = .seconds(2)

    /// One look of `sleepWhenIdle`.
    func putIdleToSleep(now: Date = Date()) async {
        do {
            for env in SleepPolicy.due(try await environments.allEnvironments(), config: config, now: now) {
                if case .accepted = try await environments.recordChange(Intents.sleep(env, source: .idle, actor: Self.idleActor)) {
                    await enqueue(env.key)
                }
            }
        } catch {
            logger.error("cannot put idle environments to sleep; trying again shortly", metadata: ["error": "\(error)"])
        }
    }

    static let idleActor = "stager serve (idle)"

    /// An app moves on its own where the engine places it (swarm, off a drained or lost node): the vhost
    /// follows it within seconds rather than at the next reconcile.
    private func followTasks() async throws {
        while !Task.isCancelled {
            try await Task.sleep(for: Self.taskFollowEvery)
            await followMovedTasks()
        }
    }

    static let taskFollowEvery: Duration = .seconds(2)

    /// One look of `followTasks`: an app running elsewhere than its vhost routes goes to the queue.
    func followMovedTasks() async {
        // An engine that does not answer is the reconciler's and the engine watch's to report.
        guard let apps = try? await seams.runtime.observeAll().apps else { return }
        for app in apps where app.running {
            guard let routed = await seams.frontDoor.routed(slug: app.slug), routed.container == app.name, !routed.asleep,
                !app.answers(atPort: routed.port, host: routed.host)
            else { continue }
            logger.info(
                "the app's task moved; routing to it again",
                metadata: ["container": "\(app.name)", "to": "\(app.upstream.map(String.init(describing:)) ?? "-")"]
            )
            await enqueue(app.key)
        }
    }

    private func reconcileForever() async throws {
        while !Task.isCancelled {
            do {
                _ = try await Reconciler(controller: self).reconcile()
                metrics.reconciled()
                await engineHealth.answered()
            } catch is CancellationError {
                return
            } catch let error as EngineUnavailable {
                await engineHealth.failed(error.message)
                logger.error("reconcile failed", metadata: ["error": "\(error)"])
            } catch {
                logger.error("reconcile failed", metadata: ["error": "\(error)"])
            }
            try await Task.sleep(for: config.reconcileInterval)
        }
    }

    /// What is recorded in the store without being handed to this controller (a store restored or written
    /// by an older Stager) is noticed within a second, and so is gc's request to reconcile now.
    private func watchStore() async throws {
        var seen = try await environments.pendingVersions()
        var reconcileRequest = try await environments.fact(Self.reconcileRequestFact)
        while !Task.isCancelled {
            // A store that fails for a moment (a locked database) is tried again next second; a lasting failure shows in the log.
            do {
                let pending = try await environments.pendingVersions()
                let changed = pending.filter { seen[$0.key] != $0.value }.keys
                for key in changed.sorted(by: { $0.description < $1.description }) { await enqueue(key) }
                if !changed.isEmpty { await enqueueWaiting() }
                seen = pending
                // gc asks for orphans to go now rather than at the next interval.
                let request = try await environments.fact(Self.reconcileRequestFact)
                if request != reconcileRequest {
                    reconcileRequest = request
                    do {
                        _ = try await Reconciler(controller: self).reconcile()
                    } catch {
                        logger.error("reconcile asked for by gc failed; the next interval tries again", metadata: ["error": "\(error)"])
                    }
                }
            } catch is CancellationError {
                return
            } catch {
                logger.error("cannot read the store for other commands' changes", metadata: ["error": "\(error)"])
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
            guard let other = try await environments.environment(key), other.desired == .absent, await seams.frontDoor.routed(slug: other.slug) != nil
            else { continue }
            slugs.append(other.slug)
        }
        guard slugs.count > 1 else { return }
        logger.info("taking down queued teardowns together", metadata: ["vhosts": "\(slugs.count)"])
        try await seams.frontDoor.remove(slugs: slugs)
    }

    /// The PR's newest intent, once pushes to it have paused (see `quietBeforeRedeploy`).
    private func settledIntent(_ key: PullRequestKey, since taken: ContinuousClock.Instant) async throws -> Environment? {
        while true {
            guard let env = try await environments.environment(key) else { return nil }
            let redeploy = env.desired == .present && env.deployedSha != nil && env.deployedSha != env.desiredSha
            // lastActivityAt moves with every accepted delivery.
            let quietFor = Date().timeIntervalSince(env.lastActivityAt ?? .distantPast)
            guard redeploy, quietFor < Self.quietBeforeRedeploy.seconds, ContinuousClock.now - taken < Self.longestSettle else { return env }
            try await Task.sleep(for: .milliseconds(50))
        }
    }

    /// Changed by `stager gc` when it recorded work: serve reconciles at once.
    public static let reconcileRequestFact = "serve.reconcile-requested"

    // MARK: Converging one PR

    /// Runs the plan for the PR's newest desired state until nothing is left to do, starting over when
    /// a newer intent arrives mid-way. A transient failure (engine down, GitHub unreachable) is retried
    /// later with backoff; the accepted intent stays in the store meanwhile.
    func converge(_ key: PullRequestKey) async {
        let logger = logger(for: key)
        do {
            try await convergeNow(key, logger: logger)
            await retries.clear(key)
        } catch  where error is CancellationError || Task.isCancelled {
            // A shutdown: a docker process it stopped ends with a signal's exit status, not a failure worth a retry.
            return
        } catch {
            if let unavailable = error as? EngineUnavailable { await engineHealth.failed(unavailable.message) }
            let delay = await retries.schedule(key)
            logger.error("converging failed; will retry", metadata: ["error": "\(error)", "retry_in": "\(delay)"])
            do {
                try await environments.audit(key, kind: .error, message: "\(error)")
            } catch {
                logger.error("cannot record the failure in the audit trail", metadata: ["error": "\(error)"])
            }
            metrics.converged(outcome: ConvergenceOutcome.error.rawValue)
        }
    }

    /// Converges the PR in this task until its newest intent is applied (or it waits for approval or room),
    /// and throws what stops it (the controller's tests drive it this way).
    public func convergeNow(_ key: PullRequestKey) async throws {
        try await convergeNow(key, logger: logger(for: key))
    }

    private func convergeNow(_ key: PullRequestKey, logger: Logger) async throws {
        var logger = logger
        let taken = ContinuousClock.now
        while true {
            try Task.checkCancellation()
            guard let env = try await settledIntent(key, since: taken) else { return }
            if env.desired == .absent { try await takeDownQueuedTeardowns(with: env) }
            logger[metadataKey: "delivery"] = "\(env.lastDeliveryID ?? "-")"
            var execution = Execution(
                seams: seams,
                config: config,
                env: env,
                deploySlots: deploySlots,
                metrics: metrics,
                wakes: wakes,
                logger: logger
            )
            execution.nothingRunsYet = await fresh.take(key) && env.desiredVersion == 1 && env.appliedVersion == 0
            let ending = try await execution.run()
            await engineHealth.answered()
            if ending == .superseded { continue }
            metrics.converged(outcome: execution.outcome.rawValue)
            // A waiting PR stays behind its desired version; freed room or the reconciler brings it back.
            if ending == .waiting { return }
            try await environments.markApplied(key, version: env.desiredVersion)
            if execution.outcome == .removed { await enqueueWaiting() }
            if try await environments.desiredVersion(key) == env.desiredVersion { return }
        }
    }

    private func logger(for key: PullRequestKey) -> Logger {
        var logger = logger
        logger[metadataKey: "repo"] = "\(key.repo)"
        logger[metadataKey: "pr"] = "\(key.number)"
        return logger
    }
}

import Foundation
import Logging

/// The step handlers of a deploy: start or adopt a candidate, check it, route to it, say it is ready.
extension Execution {
    var healthPath: String { repo?.healthPath ?? "/" }

    /// The repository's image for this PR at `sha` (the tag a build makes, for repositories that build).
    func image(of repo: StagerConfig.Repo, sha: String) throws -> String {
        config.runnableImage(
            try ImageReference.render(repo.image, names: PullRequestNames(env, sha: sha)),
            builds: repo.build != nil
        )
    }

    /// The app's container spec at `sha`; a repository no longer configured cannot be deployed.
    func appSpec(sha: String) throws -> ContainerSpec {
        guard let repo else { throw TerminalError("the repository \(env.repo) is no longer configured") }
        return ContainerSpec.app(of: env, repo: repo, sha: sha, image: try image(of: repo, sha: sha), config: config)
    }

    mutating func startCandidate(sha: String) async throws {
        if let repo, let spec = repo.build { try await ensureBuilt(sha: sha, spec: spec, repo: repo) }
        try await setStatus(.deploying)
        outcome = .deployed
        // GitHub's deployment is created while the container starts: neither waits for the other.
        async let deploying = announcer.deploymentStarted(env, sha: sha)
        let started = await Result { try await deploySlots.withSlot { try await startContainer(sha: sha) } }
        if let deploymentID = await deploying {
            try await environments.update(key) { $0.pendingDeploymentID = deploymentID }
        }
        candidate = try started.get()
    }

    private func startContainer(sha: String) async throws -> ContainerInfo {
        let spec = try appSpec(sha: sha)
        let started = try await TerminalError.naming("docker could not start the container") { try await seams.runtime.deployCandidate(spec) }
        logger.info("started container", metadata: ["container": "\(spec.name)", "image": "\(spec.image)", "upstream": "\(started.upstream)"])
        try await announcer.audit(env, .deploy, "started \(spec.name) from \(spec.image) at \(sha.prefix(12))", sha: sha)
        return ContainerInfo(
            id: started.id,
            name: spec.name,
            repo: env.repo,
            number: env.number,
            sha: sha,
            slug: env.slug,
            running: true,
            hostPort: started.upstream.port,
            address: started.upstream.nodeAddress
        )
    }

    mutating func adopt(_ container: ContainerInfo) async throws {
        try await setStatus(.deploying)
        outcome = .deployed
        candidate = container
    }

    /// The health path, then the smoke paths: nothing switches to a candidate that fails them. Requests held
    /// for a sleeping environment go to it as soon as it answers, while nginx is told.
    mutating func awaitHealthy() async throws {
        guard let candidate, let upstream = candidate.upstream else { throw TerminalError("the app's container publishes no port to route to") }
        let (probe, path) = (seams.probe, healthPath)
        // Starts at 5 ms: a small app listens within tens of milliseconds of `docker run` returning.
        let healthy = try await Poller(first: .milliseconds(5), longest: .milliseconds(500)).until(timeout: repo?.healthTimeout ?? .seconds(60)) {
            do {
                return try await probe.get(host: upstream.host, port: upstream.port, path: path).status < 500
            } catch {
                return false  // not answering yet is what the loop waits out
            }
        }
        guard healthy else {
            let seconds = (repo?.healthTimeout ?? .zero).seconds
            // Whole seconds as configured ("30s"); a sub-second timeout keeps its fraction ("0.3s").
            let shown = seconds.rounded() == seconds ? String(Int(seconds)) : String(seconds)
            throw TerminalError("the container did not answer \(healthPath) below 500 within \(shown)s")
        }
        if let problem = await smokeProblem(upstream) { throw TerminalError(problem) }
        if env.status == .sleeping { wokeAfter = ContinuousClock.now - startedAt }
        await wakes.post(.awake(upstream), for: key)
    }

    /// The first smoke path that does not answer 2xx, said as a failure reason; nil when all do.
    private func smokeProblem(_ upstream: Upstream) async -> String? {
        for path in repo?.smoke ?? [] {
            do {
                let answer = try await seams.probe.get(host: upstream.host, port: upstream.port, path: path)
                guard (200..<300).contains(answer.status) else {
                    return "smoke check GET \(path) answered \(answer.status); it must answer 2xx before traffic switches"
                }
            } catch {
                return "smoke check GET \(path) failed: \(error)"
            }
        }
        return nil
    }

    /// The vhost for the candidate, tested, reloaded, and confirmed through nginx. A vhost nginx's test
    /// rejects is terminal; an nginx that cannot be reloaded is retried.
    func routeToCandidate() async throws {
        guard let candidate else { throw TerminalError("no container to route to") }
        try await seams.frontDoor.apply(route(to: candidate))
        try await seams.frontDoor.confirmRouted(hostName: hostName, to: candidate.name)
    }

    /// The container that served before finishes the requests it has (the repo's `drain`).
    func drain() async throws {
        let drain = repo?.drain ?? .seconds(2)
        logger.info("draining the previous container", metadata: ["for": "\(drain)"])
        try await Task.sleep(for: drain)
    }

    func remove(_ container: ContainerInfo) async throws {
        try await seams.runtime.remove(container.id)
        logger.info("removed container", metadata: ["container": "\(container.name)"])
    }

    /// The vhost for `app`: to where it answers, or (asleep) to the wake path, naming it either way.
    func route(to app: ContainerInfo, asleep: Bool = false) -> Route {
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

    func announceReady() async throws {
        // The candidate when this plan deployed one; only a plan that merely re-announces asks the engine again.
        let serving: ContainerInfo
        if let candidate {
            serving = candidate
        } else if let running = try await seams.runtime.observe(key).apps.first(where: { $0.running && $0.sha == env.desiredSha }) {
            serving = running
        } else {
            return
        }
        logger.info("environment ready", metadata: ["url": "\(config.preview.url(forSlug: env.slug))", "sha": "\(serving.sha)"])
        let seconds: Double? = candidate == nil ? nil : (ContinuousClock.now - startedAt).seconds
        // Measured here, not when the plan ends: a redeploy's plan goes on to drain the old container.
        if candidate != nil { metrics.deployed(outcome: "ready", duration: ContinuousClock.now - startedAt) }
        // GitHub's deployment first: once the comment is there, everything about this deploy is said.
        try await announcer.deploymentEnded(env, success: true, reason: "")
        try await announcer.announce(.ready(sha: serving.sha), for: env) {
            if let seconds { $0.lastDeploySeconds = seconds }
            Self.record(serving, in: &$0)
            $0.failureReason = nil
            $0.failedSha = nil
        }
    }

    /// The container that serves now, as the environment records it; a deploy or a wake is use.
    static func record(_ serving: ContainerInfo, in env: inout Environment) {
        env.lastActivityAt = Date()
        env.deployedSha = serving.sha
        env.containerID = serving.id
        env.containerName = serving.name
        env.hostPort = serving.hostPort
        env.hostAddress = serving.address
    }

    /// Records a failed deploy: the candidate goes (with its log tail kept for the comment), whatever
    /// served before keeps serving, and the same sha is not retried until a newer intent arrives.
    mutating func recordFailure(_ failure: TerminalError) async throws {
        outcome = .failed
        let sha = candidate?.sha ?? env.desiredSha
        var log = failure.log
        let routed = await seams.frontDoor.routed(slug: env.slug)?.container
        let stillServing = routed != nil && routed != candidate?.name ? try await environments.environment(key)?.deployedSha : nil
        if let candidate {
            do {
                log = FailureLog(.container, try await seams.runtime.logTail(candidate.id, lines: 30))
            } catch {
                logger.warning("the failed container's log could not be read", metadata: ["error": "\(error)"])
            }
            try await seams.runtime.remove(candidate.id)
            self.candidate = nil
        }
        logger.warning("deploy failed", metadata: ["reason": "\(failure.reason)"])
        metrics.deployed(outcome: "failed", duration: ContinuousClock.now - startedAt)
        if env.status == .sleeping { metrics.woke(outcome: "failed", duration: ContinuousClock.now - startedAt) }
        await wakes.post(.failed(reason: failure.reason), for: key)
        try await announcer.deploymentEnded(env, success: false, reason: failure.reason)
        try await announcer.announce(.failed(sha: sha, reason: failure.reason, log: log, serving: stillServing), for: env) {
            $0.failureReason = failure.reason
            $0.failedSha = sha
        }
    }
}

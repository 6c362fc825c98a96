import Foundation
import Logging

extension Execution {
    // MARK: Services beside the app

    var layout: StackLayout? { StackLayout.of(env, config: config) }

    func stackSteps(_ layout: StackLayout) -> StackSteps {
        StackSteps(layout: layout, seams: seams, seedImage: config.seedImage, logger: logger)
    }

    /// The release command in the new image with the app's variables, on the network; exit 0 or the deploy fails.
    mutating func runRelease(_ command: [String], layout: StackLayout, sha: String) async throws -> Bool {
        guard let repo else { return false }
        if env.status != .deploying { try await setStatus(.deploying) }
        let app = ContainerSpec.app(of: env, repo: repo, sha: sha, image: try image(of: repo, sha: sha), config: config)
        let release = try await stackSteps(layout).release(command, app: app, sha: sha)
        guard release.exitCode == 0 else {
            return try await fail(
                sha: sha,
                reason: "the release command `\(command.joined(separator: " "))` exited \(release.exitCode)",
                log: FailureLog(.release, release.output)
            )
        }
        return true
    }

    var healthPath: String { repo?.healthPath ?? "/" }

    func setStatus(_ status: EnvironmentStatus) async throws {
        try await environments.update(key) { $0.status = status }
    }

    /// The repository's image for this PR at `sha` (the tag a build makes, for repositories that build).
    func image(of repo: StagerConfig.Repo, sha: String) throws -> String {
        config.runnableImage(
            try ImageReference.render(repo.image, names: PullRequestNames(env, sha: sha)),
            builds: repo.build != nil
        )
    }

    func startContainer(sha: String) async throws -> ContainerInfo {
        guard let repo else { throw ImageReference.Failure.invalid("(repository \(env.repo) is no longer configured)") }
        let spec = ContainerSpec.app(of: env, repo: repo, sha: sha, image: try image(of: repo, sha: sha), config: config)
        let started = try await seams.runtime.start(spec)
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

    func awaitHealthy(_ container: ContainerInfo) async throws -> Bool {
        guard let upstream = container.upstream else { return false }
        let (probe, path) = (seams.probe, healthPath)
        // Starts at 5 ms: a small app listens within tens of milliseconds of `docker run` returning.
        return try await Poller(first: .milliseconds(5), longest: .milliseconds(500)).until(timeout: repo?.healthTimeout ?? .seconds(60)) {
            // not answering yet is what the loop waits out
            guard let answer = try? await probe.get(host: upstream.host, port: upstream.port, path: path) else { return false }
            return answer.status < 500
        }
    }

    /// Makes sure the image of `sha` exists: an image built before is reused; else the build runs (its
    /// comment says `building`), stopped if a newer intent arrives meanwhile. False when the build failed
    /// (recorded, with the log's tail in the comment).
    mutating func ensureBuilt(sha: String, spec: StagerConfig.RepoBuild, repo: StagerConfig.Repo) async throws -> Bool {
        let tag = try image(of: repo, sha: sha)
        if try await seams.runtime.imageExists(tag) {
            try await announcer.audit(env, .build, "\(tag) was built before: nothing to build", sha: sha)
            return try await distribute(tag, sha: sha)
        }
        let serving = try await environments.environment(key)?.deployedSha
        try await announcer.announce(.building(sha: sha, image: tag, serving: serving), for: env)
        logger.info("building", metadata: ["image": "\(tag)"])
        let (builder, environments, key, version, snapshot, token) = (seams.builder, environments, key, env.desiredVersion, env, config.github.token)
        do {
            // The build, and a watcher that ends first when a push arrives: only the newest commit is worth building.
            let built = try await withThrowingTaskGroup(of: Bool.self) { group in
                group.addTask {
                    try await builder.build(snapshot, repo: repo, spec: spec, sha: sha, tag: tag, token: token)
                    return true
                }
                group.addTask {
                    while try await environments.desiredVersion(key) == version { try await Task.sleep(for: .milliseconds(200)) }
                    return false
                }
                defer { group.cancelAll() }
                return try await group.next() ?? false
            }
            if !built {
                _ = try await seams.runtime.removeImage(tag)
                try await announcer.audit(env, .build, "build of \(sha.prefix(12)) stopped: a newer commit arrived", sha: sha)
                throw Superseded()
            }
        } catch is CancellationError {
            // A shutdown: the next start builds again. A stopped build may have tagged its image already, and it
            // must not be taken for a finished one; what stays behind is gc's.
            do {
                _ = try await seams.runtime.removeImage(tag)
            } catch {
                logger.warning("the stopped build's image was not removed", metadata: ["image": "\(tag)", "error": "\(error)"])
            }
            throw CancellationError()
        } catch let error as BuildError {
            return try await fail(sha: sha, reason: error.description, log: FailureLog(.build, seams.builder.logTail(key, lines: 50)))
        }
        try await announcer.audit(env, .build, "built \(tag)", sha: sha)
        return try await distribute(tag, sha: sha)
    }

    /// Makes the built image pullable where the app runs (on swarm, a push to `swarm.registry`); false when
    /// it could not be (recorded as the deploy's failure).
    private mutating func distribute(_ tag: String, sha: String) async throws -> Bool {
        do {
            try await seams.runtime.distribute(tag)
        } catch let error as CommandError {
            guard case .failed = error else { throw error }
            return try await fail(sha: sha, reason: "the image \(tag) could not be pushed for the swarm's nodes: \(error)")
        }
        return true
    }

    /// The first smoke path that does not answer 2xx on the candidate, said as a failure reason; nil when all do.
    func smokeProblem(_ container: ContainerInfo) async -> String? {
        guard let upstream = container.upstream else { return nil }
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

    func announceReady() async throws {
        // The candidate when this plan deployed one; only a plan that merely re-announces asks the engine again.
        let serving: ContainerInfo
        if let candidate {
            serving = candidate
        } else if let running = try await observe().containers.first(where: { $0.running && $0.sha == env.desiredSha }) {
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

    /// Ready again at the sha it slept with; said in the audit trail and the metrics, not on the PR.
    func markAwake() async throws {
        guard let serving = candidate else { return }
        try await environments.update(key) {
            $0.status = .ready
            Self.record(serving, in: &$0)
        }
        let took = wokeAfter ?? (ContinuousClock.now - startedAt)
        metrics.woke(outcome: "awake", duration: took)
        try await announcer.audit(
            env,
            .wake,
            "awake: \(serving.name) answered \(healthPath) \(Int(took.seconds * 1000)) ms after the wake began",
            sha: serving.sha
        )
        logger.info("awake", metadata: ["ms": "\(Int(took.seconds * 1000))"])
    }

    /// Records a failed deploy: the candidate goes (with its log tail kept for the comment), whatever
    /// served before keeps serving, and the same sha is not retried until a newer intent arrives. Always
    /// false: the rest of the plan must not run.
    mutating func fail(sha: String, reason: String, log: FailureLog? = nil) async throws -> Bool {
        outcome = .failed
        var log = log
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
        logger.warning("deploy failed", metadata: ["reason": "\(reason)"])
        metrics.deployed(outcome: "failed", duration: ContinuousClock.now - startedAt)
        if env.status == .sleeping { metrics.woke(outcome: "failed", duration: ContinuousClock.now - startedAt) }
        await wakes.post(.failed(reason: reason), for: key)
        try await announcer.deploymentEnded(env, success: false, reason: reason)
        try await announcer.announce(.failed(sha: sha, reason: reason, log: log, serving: stillServing), for: env) {
            $0.failureReason = reason
            $0.failedSha = sha
        }
        return false
    }
}

import Foundation
import Logging

/// Carries out the plan for one PR once: observes, plans, and runs the steps, checking before each one
/// that no newer intent has arrived.
struct Execution {
    let deps: ControllerDependencies
    let env: Environment
    var logger: Logger
    /// The container the plan started or adopted.
    private var candidate: ContainerInfo?
    private(set) var outcome = "noop"
    /// The environment is brand new in this process: no container of it can exist, so the engine is not asked.
    var nothingRunsYet = false
    private let startedAt = ContinuousClock.now

    init(deps: ControllerDependencies, env: Environment, logger: Logger) {
        self.deps = deps
        self.env = env
        self.logger = logger
    }

    private var key: PullRequestKey { env.key }
    private var store: Store { deps.store }

    enum Ending: Equatable {
        /// The plan ran to its end, or ended in a recorded failure.
        case finished
        /// A newer intent arrived mid-way.
        case superseded
        /// `max_environments` is reached; the PR waits for room.
        case waiting
    }

    mutating func run() async throws -> Ending {
        if env.desired == .present, needsApproval, env.approvedSha != env.desiredSha, try await !approve() { return .waiting }
        if env.desired == .present, !env.admitted, try await !admit() { return .waiting }
        // A teardown takes the URL down before asking the engine anything: closes that come together then reach
        // nginx together and share a reload, and the URL is gone at once.
        if env.desired == .absent, await deps.frontDoor.routed(slug: env.slug) != nil {
            guard try await perform(.removeVhost) else { return .finished }
        }
        let observed = nothingRunsYet
            ? Observation(of: env, containers: [], routed: await deps.frontDoor.routed(slug: env.slug))
            : try await Self.observe(env, deps: deps)
        let steps = Planner.plan(desired: env.desiredState, observed: observed)
        if !steps.isEmpty {
            logger.info("converging", metadata: ["desired": "\(env.desiredState)", "steps": "\(steps.count)"])
        }
        for step in steps {
            guard try store.desiredVersion(key) == env.desiredVersion else {
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

    /// Fork PRs (unless the repository allows forks) and every PR under `require_label` run only a head sha
    /// a writer approved with the deploy label.
    private var needsApproval: Bool {
        guard let repo = deps.config.repo(env.repo) else { return false }
        return repo.requireLabel || (env.isFork && !repo.allowForks)
    }

    /// Checks a pending deploy label against its sender's permission; without an approval for this sha the
    /// PR is blocked, and says so on the PR once.
    private mutating func approve() async throws -> Bool {
        var ignored = ""
        if let sender = env.labelSender, !sender.isEmpty, env.labelSha == env.desiredSha {
            guard let github = deps.github else {
                try await audit("approval", "label by \(sender) not checked: no GitHub token configured")
                return try await block(ignored: "")
            }
            let permission = try await github.permission(of: sender, in: env.repo)
            if ["admin", "maintain", "write"].contains(permission) {
                let sha = env.desiredSha
                try await store.update(key) {
                    $0.approvedSha = sha
                    $0.approvedBy = sender
                    $0.labelSender = nil
                }
                try await audit("approval", "\(sender) (\(permission)) approved \(sha.prefix(12))", actor: sender)
                logger.info("approved", metadata: ["by": "\(sender)", "permission": "\(permission)"])
                return true
            }
            try await store.update(key) { $0.labelSender = nil }
            try await audit("approval", "label by \(sender) ignored: permission \(permission)", actor: sender)
            logger.warning("deploy label ignored", metadata: ["by": "\(sender)", "permission": "\(permission)"])
            ignored = sender
        }
        return try await block(ignored: ignored)
    }

    private mutating func block(ignored: String) async throws -> Bool {
        outcome = "blocked"
        guard env.status != .blocked || !ignored.isEmpty else { return false }
        try await settle(.blocked, comment: [
            "blocked": true, "fork": env.isFork, "head_repo": MarkdownEscaping.codeSpan(env.headRepo.isEmpty ? "(deleted)" : env.headRepo),
            "label": MarkdownEscaping.codeSpan(deps.config.forks.label), "new_commits": env.approvedSha != nil,
            "ignored": ignored.isEmpty ? "" : MarkdownEscaping.codeSpan("@" + ignored),
        ], audit: ("blocked", "waiting for the \(deps.config.forks.label) label from a writer"))
        return false
    }

    /// Takes one of the `max_environments` places, or records the PR as waiting and says so on the PR once.
    private mutating func admit() async throws -> Bool {
        let limits = deps.config.limits
        let admission = try await store.admit(key, limit: limits.maxEnvironments, repoLimit: deps.config.repo(env.repo)?.maxEnvironments)
        guard case .waiting(let position, let inUse, let limit, let scope) = admission else { return true }
        outcome = "waiting"
        guard env.status != .waiting else { return false }
        logger.info("waiting for room", metadata: ["position": "\(position)", "limit": "\(scope)=\(limit)"])
        try await settle(.waiting, comment: ["waiting": true, "position": position, "in_use": inUse, "limit": limit, "scope": scope],
                         audit: ("waiting", "\(inUse) of \(limit) environments in use (\(scope)); position \(position)"))
        return false
    }

    static func observe(_ env: Environment, deps: ControllerDependencies) async throws -> Observation {
        Observation(of: env, containers: try await deps.runtime.list(for: env.key), routed: await deps.frontDoor.routed(slug: env.slug))
    }

    /// Runs one step; false when the deploy failed and the rest of the plan must not run.
    private mutating func perform(_ step: Step) async throws -> Bool {
        switch step {
        case .startContainer(let sha):
            if let repo = deps.config.repo(env.repo), let spec = repo.build {
                guard try await ensureBuilt(sha: sha, spec: spec, repo: repo) else { return false }
            }
            try await setStatus(.deploying)
            outcome = "deployed"
            // GitHub's deployment is created while the container starts: neither waits for the other.
            let snapshot = self
            async let deploying = snapshot.courtesy("deployment not created") { try await snapshot.deps.deployments.start(snapshot.env, sha: sha) }
            let started = await Result { try await deps.deploySlots.withSlot { try await startContainer(sha: sha) } }
            if let deploymentID = await deploying ?? nil {
                try await store.update(key) { $0.pendingDeploymentID = deploymentID }
            }
            do {
                candidate = try started.get()
            } catch let error as CommandError {
                guard case .failed = error else { throw error }
                // The engine answered but refused this container (bad image, bad option): a real failure.
                try await fail(sha: sha, reason: "docker could not start the container: \(error)")
                return false
            } catch let error as ImageReference.Failure {
                try await fail(sha: sha, reason: error.description)
                return false
            } catch let error as ContainerSpecError {
                try await fail(sha: sha, reason: error.description)
                return false
            }
        case .adoptContainer(let container):
            try await setStatus(.deploying)
            outcome = "deployed"
            candidate = container
        case .awaitHealthy:
            guard let candidate else { return false }
            guard try await awaitHealthy(candidate) else {
                let seconds = deps.config.repo(env.repo)?.healthTimeout.components.seconds ?? 0
                try await fail(sha: candidate.sha, reason: "the container did not answer \(healthPath) below 500 within \(seconds)s")
                return false
            }
            if let problem = await smokeProblem(candidate) {
                try await fail(sha: candidate.sha, reason: problem)
                return false
            }
        case .drain:
            let drain = deps.config.repo(env.repo)?.drain ?? .seconds(2)
            logger.info("draining the previous container", metadata: ["for": "\(drain)"])
            try await Task.sleep(for: drain)
        case .routeToCandidate:
            guard let candidate, let port = candidate.hostPort else { return false }
            let route = Route(key: key, slug: env.slug, hostName: hostName, upstreamPort: port, containerName: candidate.name, sha: candidate.sha,
                              branch: env.branch, access: deps.config.repo(env.repo)?.access ?? .open)
            do {
                try await deps.frontDoor.apply(route)
            } catch let error as NginxError where error.isPermanent {
                // A vhost nginx's test rejects fails for good; an nginx that cannot be reloaded is retried.
                try await fail(sha: candidate.sha, reason: error.description)
                return false
            }
            try await confirmRouted(to: candidate.name)
        case .removeContainer(let container):
            try await deps.runtime.remove(container.id)
            logger.info("removed container", metadata: ["container": "\(container.name)"])
        case .announceReady:
            try await announceReady()
        case .removeVhost:
            try await setStatus(.removing)
            outcome = "removed"
            try await deps.frontDoor.remove(slug: env.slug)
            try await confirmUnrouted()
        case .deleteComment:
            let commentID = try store.environment(key)?.commentID
            try await deps.publisher.remove(on: key, knownID: commentID)
            try await store.update(key) { $0.commentID = nil; $0.commentBody = nil; $0.commentPending = false }
        case .markRemoved:
            outcome = "removed"
            if let current = try store.environment(key) {
                let tracker = deps.deployments
                for id in [current.deploymentID, current.pendingDeploymentID].compactMap({ $0 }) {
                    _ = await courtesy("deployment not marked inactive") { try await tracker.deactivate(current, deployment: id, because: "Preview removed") }
                }
            }
            try await store.update(key) {
                $0.deploymentID = nil
                $0.pendingDeploymentID = nil
                $0.status = .removed
                $0.admitted = false
                $0.waitingSince = nil
                $0.containerID = nil
                $0.containerName = nil
                $0.hostPort = nil
                $0.deployedSha = nil
            }
            try await audit("teardown", "environment removed")
            deps.metrics.tornDown(duration: ContinuousClock.now - startedAt)
            logger.info("environment removed")
        }
        return true
    }

    // MARK: Steps

    private var hostName: String { "\(env.slug).\(deps.config.preview.domain)" }
    private var url: String { deps.config.preview.url(forSlug: env.slug) }
    private var healthPath: String { deps.config.repo(env.repo)?.healthPath ?? "/" }

    private func setStatus(_ status: EnvironmentStatus) async throws {
        try await store.update(key) { $0.status = status }
    }

    /// The repository's image for this PR at `sha` (the tag a build makes, for repositories that build).
    private func image(of repo: StagerConfig.Repo, sha: String) throws -> String {
        try ImageReference.render(repo.image, repo: env.repo, number: env.number, branch: env.branch, sha: sha, slug: env.slug)
    }

    private func startContainer(sha: String) async throws -> ContainerInfo {
        guard let repo = deps.config.repo(env.repo) else {
            throw ImageReference.Failure.invalid("(repository \(env.repo) is no longer configured)")
        }
        let image = try image(of: repo, sha: sha)
        let limits = deps.config.limits
        // A random tail keeps names unique even when an exited container of the same sha lingers.
        let name = "stager-\(deps.config.instance)-\(env.slug.prefix(40))-\(sha.prefix(7))-\(UUID().uuidString.prefix(4).lowercased())"
        let spec = ContainerSpec(
            name: name, image: image, command: repo.command, containerPort: repo.port,
            labels: [
                ContainerLabels.managed: "true", ContainerLabels.instance: deps.config.instance,
                ContainerLabels.repo: env.repo, ContainerLabels.pr: String(env.number),
                ContainerLabels.branch: env.branch, ContainerLabels.sha: sha, ContainerLabels.slug: env.slug,
            ],
            environment: repo.env.merging([
                "STAGER_REPO": env.repo, "STAGER_PR": String(env.number), "STAGER_BRANCH": env.branch,
                "STAGER_SHA": sha, "STAGER_URL": url,
            ]) { _, stager in stager },
            memory: repo.memory ?? limits.memory, cpus: repo.cpus ?? limits.cpus, pids: repo.pids ?? limits.pids,
            capAdd: repo.capAdd, readOnly: repo.readOnly
        )
        let started = try await deps.runtime.start(spec)
        logger.info("started container", metadata: ["container": "\(name)", "image": "\(image)", "port": "\(started.hostPort)"])
        try await audit("deploy", "started \(name) from \(image) at \(sha.prefix(12))", sha: sha)
        return ContainerInfo(id: started.id, name: name, repo: env.repo, number: env.number, sha: sha, slug: env.slug,
                             running: true, hostPort: started.hostPort)
    }

    private func awaitHealthy(_ container: ContainerInfo) async throws -> Bool {
        guard let port = container.hostPort else { return false }
        let timeout = deps.config.repo(env.repo)?.healthTimeout ?? .seconds(60)
        let probe = deps.probe
        let path = healthPath
        // Starts at 5 ms: a small app listens within tens of milliseconds of `docker run` returning.
        return try await Poller(first: .milliseconds(5), longest: .milliseconds(500)).until(timeout: timeout) {
            guard let answer = try? await probe.get(host: "127.0.0.1", port: port, path: path) else { return false }
            return answer.status < 500
        }
    }

    /// Makes sure the image of `sha` exists: an image built before is reused; else the build runs (its
    /// comment says `building`), stopped if a newer intent arrives meanwhile. False when the build failed
    /// (recorded, with the log's tail in the comment).
    private mutating func ensureBuilt(sha: String, spec: StagerConfig.RepoBuild, repo: StagerConfig.Repo) async throws -> Bool {
        let tag = try image(of: repo, sha: sha)
        let builder = deps.builder
        if try await deps.runtime.imageExists(tag) {
            try await audit("build", "\(tag) was built before: nothing to build", sha: sha)
            return true
        }
        let serving = try store.environment(key)?.deployedSha
        try await settle(.building, comment: [
            "building": true, "sha": sha, "branch": MarkdownEscaping.codeSpan(env.branch), "url": url,
            "serving": serving.map { String($0.prefix(12)) } ?? "",
        ], audit: ("build", "building \(tag)"), sha: sha)
        logger.info("building", metadata: ["image": "\(tag)"])
        let (store, key, version, snapshot, token) = (store, key, env.desiredVersion, env, deps.config.github.token)
        do {
            // The build, and a watcher that ends first when a push arrives: only the newest commit is worth building.
            let built = try await withThrowingTaskGroup(of: Bool.self) { group in
                group.addTask {
                    try await builder.build(snapshot, repo: repo, spec: spec, sha: sha, tag: tag, token: token)
                    return true
                }
                group.addTask {
                    while try store.desiredVersion(key) == version { try await Task.sleep(for: .milliseconds(200)) }
                    return false
                }
                defer { group.cancelAll() }
                return try await group.next() ?? false
            }
            if !built {
                try await removeStoppedBuild(tag)
                try await audit("build", "build of \(sha.prefix(12)) stopped: a newer commit arrived", sha: sha)
                throw Superseded()
            }
        } catch is CancellationError {
            // A shutdown: the next start builds again. Best effort: what stays behind is gc's.
            do {
                try await removeStoppedBuild(tag)
            } catch {
                logger.warning("the stopped build's image was not removed", metadata: ["image": "\(tag)", "error": "\(error)"])
            }
            throw CancellationError()
        } catch let error as BuildError {
            let log = ImageBuilder.tail(ImageBuilder.logFile(dataDir: deps.config.dataDir, key: key), lines: 50,
                                        secrets: [deps.config.github.token].compactMap { $0 })
            try await fail(sha: sha, reason: error.description, buildLog: log)
            return false
        }
        try await audit("build", "built \(tag)", sha: sha)
        return true
    }

    /// A stopped build may have tagged its image already: it must not be taken for a finished one.
    private func removeStoppedBuild(_ tag: String) async throws {
        _ = try await deps.runtime.removeImage(tag)
    }

    /// The first smoke path that does not answer 2xx on the candidate, said as a failure reason; nil when all do.
    private func smokeProblem(_ container: ContainerInfo) async -> String? {
        guard let port = container.hostPort else { return nil }
        for path in deps.config.repo(env.repo)?.smoke ?? [] {
            do {
                let answer = try await deps.probe.get(host: "127.0.0.1", port: port, path: path)
                guard (200..<300).contains(answer.status) else {
                    return "smoke check GET \(path) answered \(answer.status); it must answer 2xx before traffic switches"
                }
            } catch {
                return "smoke check GET \(path) failed: \(error)"
            }
        }
        return nil
    }

    /// nginx's reload returns before its new workers serve: ask nginx itself, with the environment's
    /// Host header, until the answer comes from the new container.
    private func confirmRouted(to containerName: String) async throws {
        // The header alone is not proof when the container keeps its name (re-routed to a new port): nginx
        // adds it to its own 502 too, so the answer must come from the container.
        let confirmed = try await pollNginx { $0.headers["x-stager-upstream"] == containerName && ![502, 504].contains($0.status) }
        guard confirmed else { throw NginxError.reloadFailed("nginx did not route \(hostName) to \(containerName) in time") }
    }

    /// A teardown is removed only once nginx stopped routing its URL.
    private func confirmUnrouted() async throws {
        guard try await pollNginx({ $0.headers["x-stager-upstream"] == nil }) else {
            throw NginxError.reloadFailed("nginx still routes \(hostName) after its vhost was removed")
        }
    }

    /// nginx's old workers keep accepting for a moment after a reload, so one good answer is not proof:
    /// it takes several in a row, each on a fresh connection.
    private func pollNginx(_ accept: @escaping @Sendable (ProbeAnswer) -> Bool) async throws -> Bool {
        let nginx = deps.config.nginx
        let host = ["0.0.0.0", "*", "::"].contains(nginx.listenHost) ? "127.0.0.1" : nginx.listenHost
        let clock = ContinuousClock()
        let deadline = clock.now + nginx.confirmTimeout
        var streak = 0
        while clock.now < deadline {
            let answer = try? await deps.probe.get(host: host, port: nginx.listenPort, path: "/.stager-probe", hostHeader: hostName)
            streak = answer.map(accept) == true ? streak + 1 : 0
            if streak >= Self.confirmations { return true }
            try await Task.sleep(for: .milliseconds(streak > 0 ? 2 : 10))
        }
        return false
    }

    static let confirmations = 5

    private func announceReady() async throws {
        // The candidate when this plan deployed one; only a plan that merely re-announces asks the engine again.
        let serving: ContainerInfo
        if let candidate {
            serving = candidate
        } else if let running = try await Self.observe(env, deps: deps).containers.first(where: { $0.running && $0.sha == env.desiredSha }) {
            serving = running
        } else {
            return
        }
        logger.info("environment ready", metadata: ["url": "\(url)", "sha": "\(serving.sha)"])
        let seconds: Double? = candidate == nil ? nil : (ContinuousClock.now - startedAt).seconds
        // Measured here, not when the plan ends: a redeploy's plan goes on to drain the old container.
        if candidate != nil { deps.metrics.deployed(outcome: "ready", duration: ContinuousClock.now - startedAt) }
        // GitHub's deployment first: once the comment is there, everything about this deploy is said.
        try await reportDeployment(success: true, reason: "")
        try await settle(.ready, comment: ["ready": true, "url": url, "sha": serving.sha, "branch": MarkdownEscaping.codeSpan(env.branch)],
                         audit: ("ready", "\(url) serves \(serving.sha.prefix(12))"), sha: serving.sha) {
            if let seconds { $0.lastDeploySeconds = seconds }
            $0.lastActivityAt = Date()
            $0.deployedSha = serving.sha
            $0.containerID = serving.id
            $0.containerName = serving.name
            $0.hostPort = serving.hostPort
            $0.failureReason = nil
            $0.failedSha = nil
        }
    }

    /// Tells GitHub how the deploy under way ended: success retires the deployment it replaces.
    private func reportDeployment(success: Bool, reason: String) async throws {
        guard let current = try store.environment(key), let pending = current.pendingDeploymentID else { return }
        let tracker = deps.deployments
        if success {
            _ = await courtesy("deployment status not sent") { try await tracker.succeeded(current, deployment: pending, url: url) }
            if let replaced = current.deploymentID, replaced != pending {
                _ = await courtesy("deployment not marked inactive") { try await tracker.deactivate(current, deployment: replaced, because: "Replaced by a newer deploy") }
            }
        } else {
            _ = await courtesy("deployment status not sent") { try await tracker.failed(current, deployment: pending, reason: reason) }
        }
        try await store.update(key) {
            if success { $0.deploymentID = pending }
            $0.pendingDeploymentID = nil
        }
    }

    /// Runs a call whose failure must not fail the deploy (GitHub Deployments): the error goes to the log
    /// and the audit trail, and nil comes back.
    private func courtesy<T: Sendable>(_ what: String, _ body: @Sendable () async throws -> T) async -> T? {
        do {
            return try await body()
        } catch {
            logger.warning("\(what)", metadata: ["error": "\(error)"])
            try? await audit("github", "\(what): \(error)")
            return nil
        }
    }

    /// An audit line for this PR, tied to the delivery being carried out (its trigger and sender).
    private func audit(_ kind: String, _ message: String, sha: String? = nil, actor: String? = nil) async throws {
        try await store.audit(key, kind: kind, message: message, deliveryID: env.lastDeliveryID, sha: sha, actor: actor)
    }

    /// Records a failed deploy: the candidate goes (with its log tail kept for the comment), whatever
    /// served before keeps serving, and the same sha is not retried until a newer intent arrives.
    private mutating func fail(sha: String, reason: String, buildLog: String? = nil) async throws {
        outcome = "failed"
        var log = buildLog ?? ""
        let routed = await deps.frontDoor.routedContainer(slug: env.slug)
        let stillServing = routed != nil && routed != candidate?.name ? try store.environment(key)?.deployedSha : nil
        if let candidate {
            log = (try? await deps.runtime.logTail(candidate.id, lines: 30)) ?? ""
            try await deps.runtime.remove(candidate.id)
            self.candidate = nil
        }
        let tail = String(log.suffix(buildLog == nil ? 4000 : 8000))
        logger.warning("deploy failed", metadata: ["reason": "\(reason)"])
        deps.metrics.deployed(outcome: "failed", duration: ContinuousClock.now - startedAt)
        try await reportDeployment(success: false, reason: reason)
        try await settle(.failed, comment: [
            "failed": true, "sha": sha, "reason": reason, "reason_fence": MarkdownEscaping.fence(for: reason),
            "log": tail, "log_fence": MarkdownEscaping.fence(for: tail), "url": url,
            "log_title": buildLog == nil ? "Last lines of the container log" : "Last lines of the build log",
            "serving": stillServing.map { String($0.prefix(12)) } ?? "",
        ], audit: ("failure", reason), sha: sha) {
            $0.failureReason = reason
            $0.failedSha = sha
        }
    }

    /// Records a status with its comment (rendered from `comment`, stamped now) and the audit line, then
    /// publishes the comment; `change` sets whatever else goes with that status, in the same transaction.
    private func settle(_ status: EnvironmentStatus, comment: [String: Any], audit auditLine: (kind: String, message: String), sha: String? = nil,
                        change: @escaping @Sendable (inout Environment) -> Void = { _ in }) async throws {
        let common: [String: Any] = ["updated": Self.timestamp(), "status": status.rawValue, "logs_url": deps.config.server.environmentPage(key)]
        let body = renderComment(comment.merging(common) { mine, _ in mine })
        let updated = try await store.update(key) {
            $0.status = status
            $0.commentBody = body
            $0.commentPending = true
            change(&$0)
        }
        try await audit(auditLine.kind, auditLine.message, sha: sha)
        try await publish(body, knownID: updated?.commentID)
    }

    private func publish(_ body: String, knownID: Int64?) async throws {
        let id = try await deps.publisher.publish(body, on: key, knownID: knownID)
        try await store.update(key) {
            $0.commentID = id ?? $0.commentID
            $0.commentPending = false
        }
    }

    private func renderComment(_ context: [String: Any]) -> String {
        deps.templates.comment.render(emptyAsMissing: context).trimmingCharacters(in: .whitespacesAndNewlines) + "\n"
    }

    private static func timestamp() -> String {
        ISO8601DateFormatter().string(from: Date())
    }
}

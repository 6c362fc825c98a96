import Foundation
import Logging
import Mustache

/// What the controller has to say about an environment. Each one sets the environment's status and is
/// said on the PR's sticky comment and in the audit trail, by `Announcer`, in one place.
public enum Announcement: Sendable, Equatable {
    /// The image of `sha` is being built; `serving` (a sha) keeps serving meanwhile.
    case building(sha: String, image: String, serving: String?)
    case ready(sha: String)
    /// The deploy of `sha` failed; `serving` (a sha) still serves. `log` is the container's or the build's tail.
    case failed(sha: String, reason: String, log: FailureLog?, serving: String?)
    /// Waits for the deploy label from a writer; `ignored` is a reader whose label was not taken.
    case blocked(ignored: String?)
    case waiting(position: Int, inUse: Int, limit: Int, scope: String)

    public var status: EnvironmentStatus {
        switch self {
        case .building: return .building
        case .ready: return .ready
        case .failed: return .failed
        case .blocked: return .blocked
        case .waiting: return .waiting
        }
    }
}

/// The last lines of what failed: the candidate container's log or the build's.
public struct FailureLog: Sendable, Equatable {
    public enum Source: Sendable, Equatable {
        case container, build, release
        case service(String)
    }
    public var source: Source
    public var text: String

    public init(_ source: Source, _ text: String) {
        self.source = source
        self.text = text
    }
}

/// The sticky comment's context: one key per name `comment.md.mustache` uses (in snake case).
struct CommentContext: Codable, Equatable {
    var status: String
    var updated: String
    var logsUrl: String
    var ready: Bool?
    var building: Bool?
    var waiting: Bool?
    var blocked: Bool?
    var failed: Bool?
    var url: String?
    /// The repository's shared host, choosing this PR's environment.
    var sharedUrl: String?
    var sha: String?
    var branch: String?
    var serving: String?
    var position: Int?
    var inUse: Int?
    var limit: Int?
    var scope: String?
    var fork: Bool?
    var headRepo: String?
    var label: String?
    var newCommits: Bool?
    var ignored: String?
    var reason: String?
    var reasonFence: String?
    var log: String?
    var logFence: String?
    var logTitle: String?
}

/// Owns what people see of an environment: its status, the PR comment, GitHub's deployment and the audit
/// trail. Everything the controller says goes through here.
public struct Announcer: Sendable {
    let environments: any EnvironmentRepository
    let publisher: any CommentPublisher
    let deployments: any DeploymentRecording
    let comment: MustacheTemplate
    let config: StagerConfig
    let logger: Logger
    /// Slack notifications wait here to be sent by `SlackNotifier`; nil: none.
    let outbox: (any NoticeOutbox)?

    public init(
        environments: any EnvironmentRepository,
        publisher: any CommentPublisher,
        deployments: any DeploymentRecording,
        comment: MustacheTemplate,
        config: StagerConfig,
        logger: Logger,
        outbox: (any NoticeOutbox)? = nil
    ) {
        self.outbox = outbox
        self.environments = environments
        self.publisher = publisher
        self.deployments = deployments
        self.comment = comment
        self.config = config
        self.logger = logger
    }

    /// Records the announcement's status with its comment (stamped now) and audit line, then publishes the
    /// comment; `change` sets whatever else goes with that status, in the same transaction.
    public func announce(
        _ announcement: Announcement,
        for env: Environment,
        change: @escaping @Sendable (inout Environment) -> Void = { _ in }
    ) async throws {
        let status = announcement.status
        // A branch's environment has no PR to comment on: its status, the audit trail and Slack say it.
        let body = env.key.isBranch ? nil : try render(context(announcement, env))
        let updated = try await environments.update(env.key) {
            $0.status = status
            $0.commentBody = body
            $0.commentPending = body != nil
            change(&$0)
        }
        let line = auditLine(announcement, env)
        try await audit(env, line.kind, line.message, sha: line.sha)
        switch announcement {
        case .ready(let sha):
            await notify(env, "ready \(sha)", "\(link(env)) is ready: \(SlackText.code(String(sha.prefix(12)))) of \(SlackText.code(env.branch))")
        case .failed(let sha, let reason, _, _):
            await notify(
                env,
                "failed \(sha)",
                "\(SlackText.escaped(env.displayName)) failed at \(SlackText.code(String(sha.prefix(12)))): \(SlackText.escaped(reason)) (\(SlackText.link(config.server.environmentPage(env.key), "history and logs")))"
            )
        case .building, .blocked, .waiting:
            break
        }
        guard let body else { return }
        let id = try await publisher.publish(body, on: env.key, knownID: updated?.commentID)
        try await environments.update(env.key) {
            $0.commentID = id ?? $0.commentID
            $0.commentPending = false
        }
    }

    /// The environment is gone: said on Slack.
    func removed(_ env: Environment) async {
        await notify(env, "removed", "\(SlackText.escaped(env.displayName)) was removed (\(SlackText.code(env.branch)))")
    }

    /// Leaves a Slack notice for the event, once (its key names the event and the desired version). A store
    /// that fails here costs the notice, never the deploy.
    private func notify(_ env: Environment, _ event: String, _ text: String) async {
        guard let outbox, config.slackWebhook(for: env.repo) != nil else { return }
        do {
            try await outbox.enqueue(Notice(eventKey: "\(env.key) \(event) v\(env.desiredVersion)", repo: env.repo, text: text), at: Date())
        } catch {
            logger.error("could not record a Slack notification", metadata: ["error": "\(error)"])
        }
    }

    private func link(_ env: Environment) -> String {
        SlackText.link(config.preview.url(forSlug: env.slug), env.displayName)
    }

    /// Deletes the sticky comment (it may exist on GitHub even when its id was never stored).
    func removeComment(of env: Environment) async throws {
        guard !env.key.isBranch else { return }
        let commentID = try await environments.environment(env.key)?.commentID
        try await publisher.remove(on: env.key, knownID: commentID)
        try await environments.update(env.key) {
            $0.commentID = nil
            $0.commentBody = nil
            $0.commentPending = false
        }
    }

    /// An audit line for this PR, tied to the delivery being carried out (its trigger and sender).
    func audit(_ env: Environment, _ kind: AuditKind, _ message: String, sha: String? = nil, actor: String? = nil) async throws {
        try await environments.audit(env.key, kind: kind, message: message, deliveryID: env.lastDeliveryID, sha: sha, actor: actor)
    }

    // MARK: GitHub deployments (a courtesy: a failure goes to the log and the audit trail, never fails a deploy)

    /// A deployment of `sha` in progress; nil when deployments are off or GitHub did not take it.
    func deploymentStarted(_ env: Environment, sha: String) async -> Int64? {
        await courtesy(env, "deployment not created") { try await deployments.start(env, sha: sha) } ?? nil
    }

    /// Tells GitHub how the deploy under way ended: success retires the deployment it replaces.
    func deploymentEnded(_ env: Environment, success: Bool, reason: String) async throws {
        guard let current = try await environments.environment(env.key), let pending = current.pendingDeploymentID else { return }
        if success {
            let url = config.preview.url(forSlug: env.slug)
            await courtesy(env, "deployment status not sent") { try await deployments.succeeded(current, deployment: pending, url: url) }
            if let replaced = current.deploymentID, replaced != pending {
                await courtesy(env, "deployment not marked inactive") {
                    try await deployments.deactivate(current, deployment: replaced, because: "Replaced by a newer deploy")
                }
            }
        } else {
            await courtesy(env, "deployment status not sent") { try await deployments.failed(current, deployment: pending, reason: reason) }
        }
        try await environments.update(env.key) {
            if success { $0.deploymentID = pending }
            $0.pendingDeploymentID = nil
        }
    }

    /// Every deployment of a removed environment shows as destroyed.
    func deploymentsRetired(_ env: Environment) async throws {
        guard let current = try await environments.environment(env.key) else { return }
        for id in [current.deploymentID, current.pendingDeploymentID].compactMap({ $0 }) {
            await courtesy(env, "deployment not marked inactive") {
                try await deployments.deactivate(current, deployment: id, because: "Preview removed")
            }
        }
    }

    @discardableResult
    private func courtesy<T: Sendable>(_ env: Environment, _ what: String, _ body: @Sendable () async throws -> T) async -> T? {
        do {
            return try await body()
        } catch {
            logger.warning("\(what)", metadata: ["repo": "\(env.repo)", "pr": "\(env.number)", "error": "\(error)"])
            do {
                try await audit(env, .github, "\(what): \(error)")
            } catch {
                logger.warning("the audit line was not recorded either", metadata: ["error": "\(error)"])
            }
            return nil
        }
    }

    // MARK: Rendering

    func context(_ announcement: Announcement, _ env: Environment, now: Date = Date()) -> CommentContext {
        var context = CommentContext(
            status: announcement.status.rawValue,
            updated: ISO8601DateFormatter().string(from: now),
            logsUrl: config.server.environmentPage(env.key)
        )
        let url = config.preview.url(forSlug: env.slug)
        let branch = MarkdownEscaping.codeSpan(env.branch)
        switch announcement {
        case .building(let sha, _, let serving):
            context.building = true
            (context.sha, context.branch, context.url, context.serving) = (sha, branch, url, serving.map { String($0.prefix(12)) })
        case .ready(let sha):
            context.ready = true
            (context.sha, context.branch, context.url) = (sha, branch, url)
            context.sharedUrl = config.sharedURL(for: env)
        case .failed(let sha, let reason, let log, let serving):
            context.failed = true
            let tail = String((log?.text ?? "").suffix(log?.source == .build ? 8000 : 4000))
            (context.sha, context.url, context.serving) = (sha, url, serving.map { String($0.prefix(12)) })
            (context.reason, context.reasonFence) = (reason, MarkdownEscaping.fence(for: reason))
            (context.log, context.logFence) = (tail, MarkdownEscaping.fence(for: tail))
            context.logTitle =
                switch log?.source {
                case .build: "Last lines of the build log"
                case .release: "Last lines of the release command's output"
                case .service(let name): "Last lines of the log of service \(name)"
                case .container, nil: "Last lines of the container log"
                }
        case .blocked(let ignored):
            context.blocked = true
            context.fork = env.isFork
            context.headRepo = MarkdownEscaping.codeSpan(env.headRepo.isEmpty ? "(deleted)" : env.headRepo)
            context.label = MarkdownEscaping.codeSpan(config.forks.label)
            context.newCommits = env.approvedSha != nil
            context.ignored = ignored.map { MarkdownEscaping.codeSpan("@" + $0) }
        case .waiting(let position, let inUse, let limit, let scope):
            context.waiting = true
            (context.position, context.inUse, context.limit, context.scope) = (position, inUse, limit, scope)
        }
        return context
    }

    /// The comment's text; empty strings count as missing, so `{{#reason}}` hides an empty one.
    func render(_ context: CommentContext) throws -> String {
        try comment.render(encoded: context, emptyAsMissing: true).trimmingCharacters(in: .whitespacesAndNewlines) + "\n"
    }

    private func auditLine(_ announcement: Announcement, _ env: Environment) -> (kind: AuditKind, message: String, sha: String?) {
        switch announcement {
        case .building(let sha, let image, _): return (.build, "building \(image)", sha)
        case .ready(let sha): return (.ready, "\(config.preview.url(forSlug: env.slug)) serves \(sha.prefix(12))", sha)
        case .failed(let sha, let reason, _, _): return (.failure, reason, sha)
        case .blocked: return (.blocked, "waiting for the \(config.forks.label) label from a writer", nil)
        case .waiting(let position, let inUse, let limit, let scope):
            return (.waiting, "\(inUse) of \(limit) environments in use (\(scope)); position \(position)", nil)
        }
    }
}

/// `DeploymentTracker` is the real GitHub Deployments seam.
extension DeploymentTracker: DeploymentRecording {}

import Foundation

/// An environment as the JSON API, `stager ls` and the dashboard show it. Field names are stable.
public struct EnvironmentView: Codable, Sendable, Equatable {
    public var repo: String
    /// A PR's number; a branch environment's is negative (given by Stager).
    public var number: Int
    /// `pr`, or `branch` for a branch's long-lived environment (`repos.X.branches`).
    public var kind: String
    /// `pr-<N>`, or the branch's slug: what `?stager-env=` chooses on the shared host.
    public var name: String

    /// A branch's environment: shown as its branch where a PR shows `#N`.
    var isBranch: Bool { kind == Environment.Kind.branch.rawValue }
    public var branch: String
    public var title: String
    public var author: String
    /// The pull request on GitHub; the branch, for a branch's environment.
    public var pr_url: String
    /// This environment's page on the dashboard: history and logs.
    public var page_url: String
    public var slug: String
    public var url: String?
    public var status: String
    public var sha: String
    public var deployed_sha: String?
    public var container_id: String?
    public var container_name: String?
    public var failure_reason: String?
    public var comment_id: Int64?
    public var comment_body: String?
    public var created_at: String
    public var updated_at: String
    /// The last webhook event, manual action or deploy (what `limits.idle_ttl` counts from).
    public var last_activity_at: String
    /// Seconds the last successful deploy took, from the controller taking it to the comment.
    public var last_deploy_seconds: Double?
    /// Set while the Docker engine does not answer: the status shown is the last one known.
    public var degraded: String?
    /// The newest request through nginx to `url` (Stager knows of it within a second); nil before the first.
    public var last_request_at: String?
    /// The services beside the app (`repos.X.services`), as the last deploy left them.
    public var services: [ServiceView]

    public struct ServiceView: Codable, Sendable, Equatable {
        public var name: String
        public var status: String
        public var container_id: String?
    }

    /// Environments that exist or are on their way; removed ones are history.
    public static func current(in store: Store, config: StagerConfig, degraded: String? = nil) async throws -> [EnvironmentView] {
        let routed = Set(NginxFrontDoor.routedEnvironments(in: config.nginx.sitesDir).values.joined().map(\.slug))
        return try await store.environments.allEnvironments().filter { $0.status != .removed }.map {
            EnvironmentView($0, config: config, degraded: degraded, routed: routed.contains($0.slug))
        }
    }

    /// Whether nginx has a vhost Stager wrote for the slug.
    public static func isRouted(_ slug: String, config: StagerConfig) -> Bool {
        NginxFrontDoor.routedEnvironments(in: config.nginx.sitesDir, names: ["\(slug).conf"]).values.contains { $0.contains { $0.slug == slug } }
    }

    /// `routed`: nginx has a vhost for it, so its URL answers even before it is recorded ready.
    public init(_ env: Environment, config: StagerConfig, degraded: String? = nil, routed: Bool = false) {
        let formatter = ISO8601DateFormatter()
        repo = env.repo
        number = env.number
        kind = env.kind.rawValue
        name = env.name
        branch = env.branch
        title = env.title
        author = env.author
        pr_url = env.key.isBranch ? config.github.branchPage(env.repo, env.branch) : config.github.pullRequestPage(env.key)
        page_url = config.server.environmentPage(env.key)
        slug = env.slug
        url = env.status == .ready || env.deployedSha != nil || (routed && env.desired == .present) ? config.preview.url(forSlug: env.slug) : nil
        last_deploy_seconds = env.lastDeploySeconds
        status = env.status.rawValue
        sha = env.desiredSha
        deployed_sha = env.deployedSha
        container_id = env.containerID
        container_name = env.containerName
        failure_reason = env.failureReason
        comment_id = env.commentID
        comment_body = env.commentBody
        created_at = formatter.string(from: env.createdAt)
        updated_at = formatter.string(from: env.updatedAt)
        last_activity_at = formatter.string(from: env.lastActivityAt ?? env.updatedAt)
        last_request_at = env.lastRequestAt.map(formatter.string(from:))
        self.degraded = degraded
        services = env.services.map { ServiceView(name: $0.name, status: $0.status, container_id: $0.containerID) }
    }
}

/// One line of the audit trail as `/api/events` and the environment page show it. Field names are stable.
public struct EventView: Codable, Sendable, Equatable {
    public var id: Int64
    public var repo: String
    public var number: Int
    /// webhook, deploy, ready, failure, teardown, approval, blocked, waiting, github, error, gc, sync, deploy…
    public var kind: String
    public var message: String
    public var sha: String?
    /// webhook, manual, sync, gc or controller.
    public var trigger: String
    public var actor: String?
    public var delivery_id: String?
    public var at: String

    public init(_ event: AuditEvent) {
        id = event.id ?? 0
        repo = event.repo
        number = event.number
        kind = event.kind
        message = event.message
        sha = event.sha
        trigger = event.trigger ?? AuditTrigger.controller.rawValue
        actor = event.actor
        delivery_id = event.deliveryID
        at = ISO8601DateFormatter().string(from: event.at)
    }
}

/// `GET /api/environments/OWNER/NAME/N`: the environment and its history, newest first.
public struct EnvironmentDetail: Codable, Sendable, Equatable {
    public var environment: EnvironmentView
    public var events: [EventView]
}

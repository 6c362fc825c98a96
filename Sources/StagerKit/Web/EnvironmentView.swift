import Foundation

/// An environment as the JSON API, `stager ls` and the dashboard show it. Field names are stable.
public struct EnvironmentView: Codable, Sendable, Equatable {
    public var repo: String
    public var number: Int
    public var branch: String
    public var title: String
    public var author: String
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
    /// Set while the Docker engine does not answer: the status shown is the last one known.
    public var degraded: String?

    /// Environments that exist or are on their way; removed ones are history.
    public static func current(in store: Store, preview: StagerConfig.Preview, degraded: String? = nil) throws -> [EnvironmentView] {
        try store.allEnvironments().filter { $0.status != .removed }.map { EnvironmentView($0, preview: preview, degraded: degraded) }
    }

    public init(_ env: Environment, preview: StagerConfig.Preview, degraded: String? = nil) {
        let formatter = ISO8601DateFormatter()
        repo = env.repo
        number = env.number
        branch = env.branch
        title = env.title
        author = env.author
        slug = env.slug
        url = env.status == .ready || env.deployedSha != nil ? preview.url(forSlug: env.slug) : nil
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
        self.degraded = degraded
    }
}

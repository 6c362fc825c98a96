import Foundation

/// Desired-state changes that come from a command instead of a webhook. They go through the same
/// `Store.accept` as deliveries, so ordering, staleness and the audit trail work the same way.
enum Intents {
    /// A deploy of `pull` (as GitHub reports it) at `sha`, or at its head when `sha` is nil.
    /// `approvedBy`: an operator deploying by hand vouches for the code, fork or not.
    static func deploy(_ pull: GitHubClient.PullRequest, repo: String, sha: String? = nil, source: String, approvedBy: String? = nil) -> IncomingDelivery {
        let event = PullRequestEvent(
            action: "synchronize", number: pull.number,
            pull_request: .init(head: .init(ref: pull.head.ref, sha: sha ?? pull.head.sha, repo: pull.head.repo),
                                title: pull.title, user: pull.user, updated_at: pull.updated_at, state: pull.state, merged: pull.merged),
            repository: .init(full_name: repo, clone_url: nil), sender: nil
        )
        var result = delivery(event, intent: .deploy(sha: sha ?? pull.head.sha), source: source)
        result.approvedBy = approvedBy
        return result
    }

    /// A redeploy of a known environment without asking GitHub (no token configured).
    static func redeploy(_ env: Environment, sha: String, source: String, approvedBy: String) -> IncomingDelivery {
        var result = delivery(event(for: env, action: "synchronize", sha: sha, updatedAt: nil), intent: .deploy(sha: sha), source: source)
        result.approvedBy = approvedBy
        return result
    }

    /// A teardown of a known environment. `updatedAt` is GitHub's, when the PR was seen closed there.
    /// A command's teardown is the newest word on the PR (GitHub says it is closed now, or an operator
    /// says so): it is never ignored as older than a webhook.
    static func teardown(_ env: Environment, updatedAt: String? = nil, source: String) -> IncomingDelivery {
        var result = delivery(event(for: env, action: "closed", sha: env.desiredSha, updatedAt: updatedAt), intent: .teardown, source: source)
        result.isCurrentState = true
        return result
    }

    private static func event(for env: Environment, action: String, sha: String, updatedAt: String?) -> PullRequestEvent {
        PullRequestEvent(
            action: action, number: env.number,
            pull_request: .init(head: .init(ref: env.branch, sha: sha, repo: env.headRepo.isEmpty ? nil : .init(full_name: env.headRepo, clone_url: nil)),
                                title: env.title, user: env.author.isEmpty ? nil : .init(login: env.author), updated_at: updatedAt,
                                state: nil, merged: nil),
            repository: .init(full_name: env.repo, clone_url: nil), sender: nil
        )
    }

    private static func delivery(_ event: PullRequestEvent, intent: Intent, source: String) -> IncomingDelivery {
        IncomingDelivery(id: "\(source)-\(UUID().uuidString.lowercased())", event: event, intent: intent, receivedAt: Date(), source: source)
    }
}

import Foundation

/// Desired-state changes that come from a command instead of a webhook. They go through the same
/// `Store.accept` as deliveries, so ordering, staleness and the audit trail work the same way.
enum Intents {
    /// A deploy of `pull` (as GitHub reports it) at `sha`, or at its head when `sha` is nil.
    /// `approvedBy`: an operator deploying by hand vouches for the code, fork or not.
    static func deploy(
        _ pull: GitHubClient.PullRequest,
        repo: String,
        sha: String? = nil,
        source: ChangeSource,
        approvedBy: String? = nil
    ) -> DesiredStateChange {
        let head = sha ?? pull.head.sha
        let facts = PullRequestFacts(
            branch: pull.head.ref,
            headSha: head,
            title: pull.title,
            author: pull.user?.login,
            headRepo: pull.head.repo?.full_name,
            cloneURL: pull.head.repo?.clone_url,
            updatedAt: pull.updated_at
        )
        var change = change(PullRequestKey(repo: repo, number: pull.number), .deploy(sha: head), facts, source: source)
        change.approvedBy = approvedBy
        return change
    }

    /// A redeploy of a known environment without asking GitHub (no token configured).
    static func redeploy(_ env: Environment, sha: String, source: ChangeSource, approvedBy: String) -> DesiredStateChange {
        var change = change(env.key, .deploy(sha: sha), facts(of: env, sha: sha, updatedAt: nil), source: source)
        change.approvedBy = approvedBy
        return change
    }

    /// A teardown of a known environment. `updatedAt` is GitHub's, when the PR was seen closed there.
    /// A command's teardown is the newest word on the PR (GitHub says it is closed now, or an operator
    /// says so): it is never ignored as older than a webhook.
    static func teardown(_ env: Environment, updatedAt: String? = nil, source: ChangeSource) -> DesiredStateChange {
        var change = change(env.key, .teardown, facts(of: env, sha: env.desiredSha, updatedAt: updatedAt), source: source)
        change.isCurrentState = true
        return change
    }

    /// Sleep (idle, or by hand) or wake (a request, or by hand) at the sha it has. Not a PR's event: never
    /// compared with webhooks' `updated_at`.
    static func sleep(_ env: Environment, source: ChangeSource, actor: String) -> DesiredStateChange {
        var change = change(env.key, .sleep, facts(of: env, sha: env.desiredSha, updatedAt: nil), source: source)
        change.actor = actor
        return change
    }

    static func wake(_ env: Environment, source: ChangeSource, actor: String) -> DesiredStateChange {
        var change = change(env.key, .wake, facts(of: env, sha: env.desiredSha, updatedAt: nil), source: source)
        change.actor = actor
        return change
    }

    /// What Stager knows of the PR, at `sha`.
    private static func facts(of env: Environment, sha: String, updatedAt: String?) -> PullRequestFacts {
        PullRequestFacts(
            branch: env.branch,
            headSha: sha,
            title: env.title,
            author: env.author.isEmpty ? nil : env.author,
            headRepo: env.headRepo.isEmpty ? nil : env.headRepo,
            updatedAt: updatedAt
        )
    }

    private static func change(_ key: PullRequestKey, _ intent: Intent, _ facts: PullRequestFacts, source: ChangeSource) -> DesiredStateChange {
        let action: String
        switch intent {
        case .deploy: action = "synchronize"
        case .teardown: action = "closed"
        case .sleep: action = "sleep"
        case .wake: action = "wake"
        }
        return DesiredStateChange(
            id: "\(source.rawValue)-\(UUID().uuidString.lowercased())",
            key: key,
            intent: intent,
            pullRequest: facts,
            action: action,
            source: source
        )
    }
}

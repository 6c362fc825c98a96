import Foundation

/// What GitHub says about one pull request. Only a definite answer counts: any error is `unknown`, and an
/// unknown PR is never treated as closed (an expired token must not wipe every environment).
public enum PullRequestState: Sendable, Equatable {
    case open
    case closed(merged: Bool, updatedAt: String?)
    case unknown(String)
}

/// Asks GitHub about the configured repositories: their open PRs (one paginated list per repository) and
/// the state of each PR Stager has an environment for.
struct PullRequestStates {
    let client: GitHubClient?

    /// Open PRs per repository; a repository GitHub did not answer for maps to the reason.
    func openPullRequests(_ repos: [String]) async -> [String: Result<[GitHubClient.PullRequest], GitHubLookupFailure>] {
        var answers: [String: Result<[GitHubClient.PullRequest], GitHubLookupFailure>] = [:]
        for repo in repos {
            guard let client else {
                answers[repo] = .failure(.init(reason: "no GitHub token configured"))
                continue
            }
            do {
                answers[repo] = .success(try await client.openPullRequests(repo))
            } catch {
                answers[repo] = .failure(.init(reason: "\(error)"))
            }
        }
        return answers
    }

    /// The state of each PR in `keys`. A PR missing from its repository's open list is confirmed one by one,
    /// since a list can lag behind a PR opened a moment ago.
    func states(
        of keys: [PullRequestKey],
        open: [String: Result<[GitHubClient.PullRequest], GitHubLookupFailure>]
    ) async -> [PullRequestKey: PullRequestState] {
        var states: [PullRequestKey: PullRequestState] = [:]
        // A branch's environment is no pull request: no PR state removes it, only its branch's deletion.
        for key in keys where !key.isBranch {
            switch open[key.repo] {
            case .none:
                states[key] = .unknown("the repository is no longer configured")
            case .failure(let failure):
                states[key] = .unknown(failure.reason)
            case .success(let pulls) where pulls.contains(where: { $0.number == key.number }):
                states[key] = .open
            case .success:
                states[key] = await confirm(key)
            }
        }
        return states
    }

    private func confirm(_ key: PullRequestKey) async -> PullRequestState {
        guard let client else { return .unknown("no GitHub token configured") }
        do {
            let pull = try await client.pullRequest(key)
            return pull.isOpen ? .open : .closed(merged: pull.merged ?? false, updatedAt: pull.updated_at)
        } catch {
            return .unknown("\(error)")
        }
    }

    /// Open PRs with no live environment whose activity on GitHub is newer than anything Stager applied:
    /// their `opened` (or `reopened`) event was lost. A PR torn down by hand or for idleness stays down
    /// until it changes on GitHub.
    static func missing(open pulls: [GitHubClient.PullRequest], repo: String, environments: [Environment]) -> [GitHubClient.PullRequest] {
        pulls.filter { pull in
            guard let env = environments.first(where: { $0.repo == repo && $0.number == pull.number }) else { return true }
            guard env.desired == .absent else { return false }
            return (pull.updated_at ?? "") > env.sourceUpdatedAt
        }.sorted { $0.number < $1.number }
    }
}

public struct GitHubLookupFailure: Error, Sendable, Equatable {
    public var reason: String
}

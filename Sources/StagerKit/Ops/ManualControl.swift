import Foundation

/// Why a manual command could not do what was asked (exit status 1, the message says what to do).
public struct ManualControlError: Error, CustomStringConvertible, Equatable {
    public var message: String
    public var description: String { message }
}

/// `stager deploy`, `destroy` and `sync`: they record desired state through `Store.accept`, like a
/// webhook, and a running `stager serve` converges it within a second.
public struct ManualControl: Sendable {
    let config: StagerConfig
    let store: Store
    let github: GitHubClient?
    /// Who the audit trail says asked: the operator at the command line, or who used the API or Slack.
    let actor: String

    public init(config: StagerConfig, store: Store, github: GitHubClient?, actor: String = Self.operatorName) {
        self.config = config
        self.store = store
        self.github = github
        self.actor = actor
    }

    public static let operatorName = "operator (command line)"

    /// The environment `reference` names.
    public func key(_ reference: EnvironmentReference) async throws -> PullRequestKey {
        try await store.key(reference)
    }

    /// The same control, recording `actor` as who asked.
    public func acting(as actor: String) -> ManualControl {
        ManualControl(config: config, store: store, github: github, actor: actor)
    }

    /// Records a deploy of the PR's head (read from GitHub), or of `sha`. Without a token only a PR Stager
    /// already knows can be redeployed.
    public func deploy(_ key: PullRequestKey, sha: String?) async throws -> (env: Environment, version: Int) {
        try requireConfigured(key)
        let delivery: DesiredStateChange
        if key.isBranch {
            // A branch's environment has no PR to read: it deploys again at the sha it has, or at `sha`.
            guard let env = try await store.environments.environment(key) else { throw ManualControlError(message: "\(key) has no environment") }
            delivery = Intents.redeploy(env, sha: sha ?? env.desiredSha, source: .deploy, approvedBy: actor)
        } else if let github {
            let pull: GitHubClient.PullRequest
            do {
                pull = try await github.pullRequest(key)
            } catch GitHubError.status(404, _) {
                throw ManualControlError(message: "\(key): GitHub knows no such pull request, or the token cannot read it")
            }
            guard pull.isOpen else {
                throw ManualControlError(
                    message: "\(key) is \(pull.merged == true ? "merged" : "closed") on GitHub; only open pull requests are deployed"
                )
            }
            delivery = Intents.deploy(pull, repo: key.repo, sha: sha, source: .deploy, approvedBy: actor)
        } else if let env = try await store.environments.environment(key) {
            delivery = Intents.redeploy(env, sha: sha ?? env.desiredSha, source: .deploy, approvedBy: actor)
        } else {
            throw ManualControlError(message: "\(key): Stager has no environment for it and no GitHub token to read it (set github.token_env)")
        }
        return try await record(delivery)
    }

    /// Records a teardown of the PR's environment. A later push to the PR deploys it again.
    public func destroy(_ key: PullRequestKey) async throws -> (env: Environment, version: Int) {
        guard let env = try await store.environments.environment(key), env.isLive else {
            throw ManualControlError(message: "\(key) has no environment")
        }
        var delivery = Intents.teardown(env, source: .destroy)
        delivery.actor = actor
        return try await record(delivery)
    }

    /// Records that the environment sleeps (`stager sleep`); nil when it already does.
    public func sleep(_ key: PullRequestKey) async throws -> (env: Environment, version: Int)? {
        let env = try await deployed(key)
        return try await recordUnlessUnchanged(Intents.sleep(env, source: .sleep, actor: actor))
    }

    /// Records that the environment wakes (`stager wake`); nil when it is awake.
    public func wake(_ key: PullRequestKey) async throws -> (env: Environment, version: Int)? {
        let env = try await deployed(key)
        return try await recordUnlessUnchanged(Intents.wake(env, source: .wake, actor: actor))
    }

    /// An environment that is meant to run: only it can sleep or wake.
    private func deployed(_ key: PullRequestKey) async throws -> Environment {
        guard let env = try await store.environments.environment(key), env.isLive, env.desired == .present else {
            throw ManualControlError(message: "\(key) has no environment")
        }
        return env
    }

    private func recordUnlessUnchanged(_ change: DesiredStateChange) async throws -> (env: Environment, version: Int)? {
        if try await store.accept(change) == .unchanged { return nil }
        guard let env = try await store.environments.environment(change.key) else {
            throw ManualControlError(message: "\(change.key) has no environment")
        }
        return (env, env.desiredVersion)
    }

    public struct SyncLine: Sendable, Equatable {
        public var key: PullRequestKey
        public var branch: String
        public var sha: String
    }

    /// Creates the desired state of every open PR of the configured repositories that has no environment
    /// (its `opened` event was lost). Returns what was queued and the repositories GitHub did not answer for.
    public func sync() async throws -> (queued: [SyncLine], failures: [String: String]) {
        guard github != nil else {
            throw ManualControlError(message: "sync asks GitHub for open pull requests: set a token (github.token_env or github.token_file)")
        }
        let repos = config.repos.keys.sorted()
        let open = await PullRequestStates(client: github).openPullRequests(repos)
        let environments = try await store.environments.allEnvironments()
        var queued: [SyncLine] = []
        var failures: [String: String] = [:]
        for repo in repos {
            switch open[repo] {
            case .success(let pulls):
                for pull in PullRequestStates.missing(open: pulls, repo: repo, environments: environments) {
                    if case .accepted = try await store.accept(Intents.deploy(pull, repo: repo, source: .sync)) {
                        queued.append(SyncLine(key: PullRequestKey(repo: repo, number: pull.number), branch: pull.head.ref, sha: pull.head.sha))
                    }
                }
            case .failure(let failure):
                failures[repo] = failure.reason
            case .none:
                break
            }
        }
        return (queued, failures)
    }

    /// Waits until serve has applied `version` (ready, failed or removed) or the PR waits for room.
    public func waitApplied(_ key: PullRequestKey, version: Int, timeout: Duration) async throws -> Environment? {
        let environments = store.environments
        _ = try await Poller(first: .milliseconds(50), longest: .milliseconds(500)).first(timeout: timeout) { () async throws -> Bool? in
            guard let env = try await environments.environment(key) else { return nil }
            return env.appliedVersion >= version || env.status == .waiting ? true : nil
        }
        return try await environments.environment(key)
    }

    private func requireConfigured(_ key: PullRequestKey) throws {
        guard config.repo(key.repo) != nil else {
            let known = config.repos.keys.sorted().joined(separator: ", ")
            throw ManualControlError(message: "\(key.repo) is not a configured repository (configured: \(known.isEmpty ? "none" : known))")
        }
    }

    private func record(_ delivery: DesiredStateChange) async throws -> (env: Environment, version: Int) {
        let outcome = try await store.accept(delivery)
        guard case .accepted(let version) = outcome, let env = try await store.environments.environment(delivery.key) else {
            throw ManualControlError(message: "\(delivery.key): a newer event is already applied; nothing changed")
        }
        return (env, version)
    }
}

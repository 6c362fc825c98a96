import Logging

/// GitHub Deployments beside the sticky comment (`github.deployments: true`): each deploy is a transient
/// deployment of the PR's environment (`pr-N`), so the PR shows GitHub's own "View deployment" button.
/// A failing call never holds back the preview: the comment and the dashboard are the record, this is a
/// courtesy, so errors are handed back for the audit trail rather than retried forever.
struct DeploymentTracker: Sendable {
    let client: GitHubClient?
    let config: StagerConfig

    var enabled: Bool { client != nil && config.github.deployments }

    /// A branch's environment is named by its branch (`main`); a PR's by `github.deployment_environment`.
    func environmentName(_ env: Environment) -> String {
        guard !env.key.isBranch else { return env.branch }
        // validated at start-up; pr-N is the fallback
        let template = try? ImageReference.template(config.github.deploymentEnvironment)
        return (try? template?.render(encoded: PullRequestNames(env, sha: env.desiredSha))) ?? "pr-\(env.number)"
    }

    /// A new deployment of `sha`, marked in progress.
    func start(_ env: Environment, sha: String) async throws -> Int64? {
        guard enabled, let client else { return nil }
        let id = try await client.createDeployment(
            env.repo,
            sha: sha,
            environment: environmentName(env),
            description: env.key.isBranch ? "Stager environment of branch \(env.branch)" : "Stager preview of #\(env.number)",
            transient: !env.key.isBranch
        )
        try await client.createDeploymentStatus(
            env.repo,
            deployment: id,
            state: "in_progress",
            logURL: config.server.environmentPage(env.key),
            description: "Deploying \(sha.prefix(12))"
        )
        return id
    }

    func succeeded(_ env: Environment, deployment id: Int64, url: String) async throws {
        guard enabled, let client else { return }
        try await client.createDeploymentStatus(
            env.repo,
            deployment: id,
            state: "success",
            environmentURL: url,
            logURL: config.server.environmentPage(env.key),
            description: "Preview ready"
        )
    }

    func failed(_ env: Environment, deployment id: Int64, reason: String) async throws {
        guard enabled, let client else { return }
        try await client.createDeploymentStatus(
            env.repo,
            deployment: id,
            state: "failure",
            logURL: config.server.environmentPage(env.key),
            description: reason
        )
    }

    /// Shown as destroyed on the PR: the environment is gone, or a newer deployment replaced this one.
    func deactivate(_ env: Environment, deployment id: Int64, because reason: String) async throws {
        guard enabled, let client else { return }
        try await client.createDeploymentStatus(env.repo, deployment: id, state: "inactive", description: reason)
    }
}

import Foundation

// The narrow seams the controller works through. Each has its real implementation (SQLite, nginx, the
// docker CLI, GitHub, HTTP) and an in-memory one the controller's unit tests use.

/// The environments' records: `Store` (SQLite) in production, `InMemoryEnvironments` in tests.
public protocol EnvironmentRepository: Sendable {
    func environment(_ key: PullRequestKey) async throws -> Environment?
    func allEnvironments() async throws -> [Environment]
    func desiredVersion(_ key: PullRequestKey) async throws -> Int?
    /// PRs whose desired version is ahead of the applied one, with that version.
    func pendingVersions() async throws -> [PullRequestKey: Int]
    /// PRs waiting for room, oldest first.
    func waitingKeys() async throws -> [PullRequestKey]
    /// Records a change of desired state as `Store.accept` does (serve's own: sleeping what is idle).
    func recordChange(_ change: DesiredStateChange) async throws -> AcceptOutcome
    /// Changes one environment in one transaction; nil when there is none.
    @discardableResult
    func update(_ key: PullRequestKey, _ change: @escaping @Sendable (inout Environment) -> Void) async throws -> Environment?
    /// The controller converged the PR to `version`, unless a newer intent arrived meanwhile.
    func markApplied(_ key: PullRequestKey, version: Int) async throws
    /// Takes one of the `max_environments` places, or records the PR as waiting.
    func admit(_ key: PullRequestKey, limit: Int, repoLimit: Int?, at date: Date) async throws -> Admission
    /// One line of the audit trail; trigger and actor come from `deliveryID`'s delivery unless `actor` is given.
    func audit(_ key: PullRequestKey, kind: AuditKind, message: String, deliveryID: String?, sha: String?, actor: String?) async throws
    func setFact(_ name: String, _ value: String, at date: Date) async throws
    /// A small fact kept in the store (gc's request to reconcile now).
    func fact(_ name: String) async throws -> String?
}

extension EnvironmentRepository {
    func admit(_ key: PullRequestKey, limit: Int, repoLimit: Int?) async throws -> Admission {
        try await admit(key, limit: limit, repoLimit: repoLimit, at: Date())
    }

    func audit(_ key: PullRequestKey, kind: AuditKind, message: String) async throws {
        try await audit(key, kind: kind, message: message, deliveryID: nil, sha: nil, actor: nil)
    }
}

/// Where requests come in: nginx in production. A route is applied, tested and reloaded; `confirm…` asks
/// the front door itself until it answers the new way.
public protocol FrontDoor: Sendable {
    /// The container and port the slug's vhost routes to; nil without one.
    func routed(slug: String) async -> RoutedUpstream?
    /// Slugs of the vhosts Stager wrote, and the other files it leaves alone.
    func inventory() async -> (managed: [String], foreign: [String])
    func apply(_ route: Route) async throws
    func remove(slugs: [String]) async throws
    /// Returns once requests for `hostName` reach `container`, or its wake path when `asleep` (several
    /// answers in a row).
    func confirmRouted(hostName: String, to container: String, asleep: Bool) async throws
    /// Returns once requests for `hostName` no longer reach any environment.
    func confirmUnrouted(hostName: String) async throws
    /// Reloads when a change was written but never reloaded (a crash between the two); true when it did.
    func reloadIfOwed() async throws -> Bool
}

extension FrontDoor {
    public func remove(slug: String) async throws { try await remove(slugs: [slug]) }

    public func confirmRouted(hostName: String, to container: String) async throws {
        try await confirmRouted(hostName: hostName, to: container, asleep: false)
    }
}

/// One HTTP GET on this machine: health checks, smoke checks and confirmations through nginx.
public protocol Prober: Sendable {
    func get(host: String, port: Int, path: String, hostHeader: String?, headers: [String: String]) async throws -> ProbeAnswer
    /// Whether a TCP connection to the port is accepted (a service that speaks no HTTP).
    func accepts(host: String, port: Int) async -> Bool
}

extension Prober {
    public func get(host: String, port: Int, path: String, hostHeader: String? = nil) async throws -> ProbeAnswer {
        try await get(host: host, port: port, path: path, hostHeader: hostHeader, headers: [:])
    }
}

/// Builds a repository's image at a sha (`build:` blocks): the docker CLI's classic builder in production.
public protocol ImageBuilding: Sendable {
    /// Throws `BuildError` for a failed build and `CancellationError` when stopped.
    func build(_ env: Environment, repo: StagerConfig.Repo, spec: StagerConfig.RepoBuild, sha: String, tag: String, token: String?) async throws
    /// The last lines of the PR's build log, secrets masked.
    func logTail(_ key: PullRequestKey, lines: Int) -> String
}

/// Who may approve a PR's code: GitHub's collaborator permission (`admin`, `maintain`, `write`, `triage`, `read`, `none`).
public protocol PermissionLookup: Sendable {
    func permission(of user: String, in repo: String) async throws -> String
    /// Whether GitHub itself says the PR carries `label` with its head at `sha` now: a delivery signed with a
    /// secret other repositories share could claim a label that was never added.
    func confirmsLabel(_ label: String, sha: String, on key: PullRequestKey) async throws -> Bool
}

/// GitHub Deployments beside the comment: a courtesy, whose failures never fail a deploy.
public protocol DeploymentRecording: Sendable {
    /// A new deployment of `sha`, in progress; nil when deployments are off.
    func start(_ env: Environment, sha: String) async throws -> Int64?
    func succeeded(_ env: Environment, deployment id: Int64, url: String) async throws
    func failed(_ env: Environment, deployment id: Int64, reason: String) async throws
    func deactivate(_ env: Environment, deployment id: Int64, because reason: String) async throws
}

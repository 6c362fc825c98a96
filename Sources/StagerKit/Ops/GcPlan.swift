import Foundation

/// One line of what `stager gc` did or would do.
public struct GcItem: Sendable, Codable, Equatable {
    public enum Action: String, Sendable, Codable {
        case removed
        case wouldRemove = "would remove"
        case kept
        case reported
        case failed
    }

    public enum Kind: String, Sendable, Codable {
        case environment
        case container
        case vhost
        case file
        case pullRequest = "pull request"
        case image
        case workFolder = "work folder"
        /// A service's container, network or volume (services beside the app).
        case service, network, volume
    }

    public var action: Action
    public var kind: Kind
    /// `OWNER/NAME#N`, a container name or a file name.
    public var item: String
    public var reason: String
}

/// What `stager gc` removes, decided from facts gathered before anything changes. Pure.
public struct GcPlan: Sendable, Equatable {
    public struct Removal: Sendable, Equatable {
        public var env: Environment
        public var reason: String
        /// GitHub's `updated_at` of the closed PR, so older redeliveries stay ignored afterwards.
        public var closedAt: String?
    }

    public var environments: [Removal] = []
    public var containers: [ContainerInfo] = []
    /// Slugs of vhost files Stager wrote that belong to no environment.
    public var vhosts: [String] = []
    /// Live environments kept; the unknown ones (GitHub gave no definite answer) carry the reason.
    public var kept: [Kept] = []
    /// Files in the sites folder Stager did not write: reported, never deleted.
    public var foreignFiles: [String] = []
    /// Open PRs with no environment (`stager sync` creates them).
    public var missing: [PullRequestKey] = []
    /// Per-PR images of the removed environments that no kept environment uses (`gc.remove_images`).
    public var images: [String] = []
    /// Images Stager built for PRs that have no live environment any more.
    public var builtImages: [String] = []
    /// Build work folders no running build uses (left by a crash).
    public var workFolders: [String] = []
    /// Networks and volumes of PRs with no live environment.
    public var resources: [StackResource] = []

    public struct Kept: Sendable, Equatable {
        public var env: Environment
        /// Why GitHub's answer was not definite; nil when the PR is open.
        public var unknown: String?
    }

    public struct Facts: Sendable {
        public var environments: [Environment]
        public var containers: [ContainerInfo]
        public var managedVhosts: [String]
        public var foreignFiles: [String]
        public var states: [PullRequestKey: PullRequestState]
        public var missing: [PullRequestKey]
        public var configuredRepos: Set<String>
        /// Each environment's per-PR image, when gc is configured to remove images.
        public var images: [PullRequestKey: String] = [:]
        public var builtImages: [(image: String, key: PullRequestKey)] = []
        public var workFolders: [String] = []
        public var stackResources: [StackResource] = []
        public var idleTTL: Duration?
        public var now: Date
    }

    public init() {}

    public init(_ facts: Facts) {
        let live = facts.environments.filter { $0.isLive }
        for env in live {
            if let reason = Self.removalReason(env, facts: facts) {
                var closedAt: String?
                if case .closed(_, let updatedAt) = facts.states[env.key] { closedAt = updatedAt }
                environments.append(Removal(env: env, reason: reason, closedAt: closedAt))
            } else if case .unknown(let why) = facts.states[env.key] {
                kept.append(Kept(env: env, unknown: "PR state unknown (\(why))"))
            } else {
                kept.append(Kept(env: env, unknown: nil))
            }
        }
        let keptKeys = Set(kept.map(\.env.key))
        // Only this instance's containers of configured repositories: another tool's are not ours to judge.
        let liveKeys = Set(live.map(\.key))
        containers = facts.containers.filter { facts.configuredRepos.contains($0.repo) && !liveKeys.contains($0.key) }
        resources = facts.stackResources.filter { facts.configuredRepos.contains($0.repo) && !liveKeys.contains($0.key) }
        let keptSlugs = Set(kept.map(\.env.slug))
        let removedSlugs = Set(environments.map(\.env.slug))
        vhosts = facts.managedVhosts.filter { !keptSlugs.contains($0) && !removedSlugs.contains($0) }
        foreignFiles = facts.foreignFiles
        missing = facts.missing.filter { !keptKeys.contains($0) }
        let keptImages = Set(kept.compactMap { facts.images[$0.env.key] })
        var seen = Set<String>()
        images = environments.compactMap { facts.images[$0.env.key] }.filter { !keptImages.contains($0) && seen.insert($0).inserted }
        builtImages = facts.builtImages.filter { !keptKeys.contains($0.key) && facts.configuredRepos.contains($0.key.repo) }.map(\.image)
            .filter { seen.insert($0).inserted }
        let building = facts.environments.filter { $0.status == .building }.map(\.key)
        workFolders = facts.workFolders.filter { name in !building.contains { ImageBuilder.isWorkFolder(name, of: $0) } }
    }

    private static func removalReason(_ env: Environment, facts: Facts) -> String? {
        if env.desired == .absent { return "torn down, but the teardown did not finish" }
        if case .closed(let merged, _) = facts.states[env.key] { return merged ? "PR merged on GitHub" : "PR closed on GitHub" }
        // A branch's environment is long-lived by design: only its branch's deletion removes it.
        if let ttl = facts.idleTTL, !env.key.isBranch {
            let idle = facts.now.timeIntervalSince(env.lastActivityAt ?? env.updatedAt)
            if idle > ttl.seconds {
                return "idle for \(EnvironmentTable.age(idle)) (limits.idle_ttl: no event or deploy for \(EnvironmentTable.age(ttl.seconds)))"
            }
        }
        return nil
    }
}

/// Why gc could not remove an environment it planned to remove.
enum GcFailure: Error, CustomStringConvertible {
    case notRecorded(AcceptOutcome)
    case superseded

    var description: String {
        switch self {
        case .notRecorded(let outcome): return "the store did not record the teardown (\(outcome))"
        case .superseded: return "a newer event for the PR arrived meanwhile; it is left to it"
        }
    }
}

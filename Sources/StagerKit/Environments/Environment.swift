import Foundation

/// Identifies one pull request of one repository: the unit of desired state.
public struct PullRequestKey: Hashable, Sendable, Codable, CustomStringConvertible {
    public var repo: String
    public var number: Int

    public init(repo: String, number: Int) {
        self.repo = repo
        self.number = number
    }

    /// Parses `OWNER/NAME#N`.
    public init?(parsing text: String) {
        let parts = text.split(separator: "#")
        guard parts.count == 2, let number = Int(parts[1]), number > 0, parts[0].split(separator: "/").count == 2 else { return nil }
        self.init(repo: String(parts[0]), number: number)
    }

    public var description: String { "\(repo)#\(number)" }

    /// A branch environment's key has a negative number, given by the store (`Store.branchKey`); PRs count from 1.
    public var isBranch: Bool { number < 0 }
}

public enum EnvironmentStatus: String, Sendable, Codable, CaseIterable {
    /// Accepted, waiting for the controller.
    case queued
    /// Waiting for room under `max_environments`; deployed when an environment frees up.
    case waiting
    /// A fork PR (or any PR under `require_label`) waiting for the deploy label from a writer.
    case blocked
    /// Building the image from the PR's head (repositories with a `build:` block).
    case building
    case deploying
    case ready
    /// Stopped while idle (its containers and volumes kept); a request to its URL wakes it.
    case sleeping
    case failed
    case removing
    /// Torn down; the row stays so an older redelivery cannot bring it back.
    case removed
}

/// One service of an environment: `healthy`, or `unhealthy` when it did not become healthy in time.
public struct ServiceState: Sendable, Equatable, Codable {
    public var name: String
    public var status: String
    public var containerID: String?

    public init(name: String, status: String, containerID: String?) {
        self.name = name
        self.status = status
        self.containerID = containerID
    }
}

/// What the PR should look like: running `sha`, `sha` stopped until a request wakes it, or nothing at all.
public enum DesiredState: Sendable, Equatable {
    case present(sha: String)
    case asleep(sha: String)
    case absent
}

/// Whether the PR should have an environment at all; stored as its raw value.
public enum Desire: String, Sendable, Codable {
    case present
    case absent
}

/// One environment as Stager records it: the PR's desired state, and what was last done about it.
public struct Environment: Sendable, Equatable, Codable {
    public var repo: String
    public var number: Int
    public var slug: String
    public var branch: String
    public var title: String
    public var author: String
    public var headRepo: String

    public var desired: Desire
    public var desiredSha: String
    /// Bumped by every accepted intent; the controller converges until `appliedVersion` catches up.
    public var desiredVersion: Int
    public var appliedVersion: Int
    /// `pull_request.updated_at` of the newest applied delivery; older deliveries never roll state back.
    public var sourceUpdatedAt: String

    public var status: EnvironmentStatus
    public var deployedSha: String?
    public var containerID: String?
    public var containerName: String?
    public var hostPort: Int?
    /// The swarm node the app answers on; nil: loopback.
    public var hostAddress: String?
    public var failureReason: String?
    /// The sha whose deploy failed; not retried until a newer intent arrives.
    public var failedSha: String?
    public var commentID: Int64?
    public var commentBody: String?
    /// The comment should show the current status but GitHub has not taken it yet.
    public var commentPending: Bool
    public var lastDeliveryID: String?
    public var createdAt: Date
    public var updatedAt: Date
    /// The last webhook event, manual action or deploy: what `limits.idle_ttl` measures from.
    public var lastActivityAt: Date?
    /// Holds one of the `max_environments` places.
    public var admitted: Bool
    /// When the PR started waiting for a place; nil when it is not waiting.
    public var waitingSince: Date?
    /// The head sha a writer approved with the deploy label (or an operator deployed by hand).
    public var approvedSha: String?
    public var approvedBy: String?
    /// The last deploy label, not yet checked: who added it, at which head sha.
    public var labelSha: String?
    public var labelSender: String?
    /// The GitHub deployment that serves now, and the one of a deploy under way (`github.deployments`).
    public var deploymentID: Int64? = nil
    public var pendingDeploymentID: Int64? = nil
    /// How long the last successful deploy took, from the controller taking it to the comment.
    public var lastDeploySeconds: Double? = nil
    /// `pull_request.head.repo.clone_url` of the newest delivery: where a build fetches from.
    public var cloneURL: String? = nil
    /// The services beside the app as the last deploy left them.
    public var services: [ServiceState] = []
    /// The newest request through nginx to the environment's URL.
    public var lastRequestAt: Date? = nil
    /// Should sleep (idle, or `stager sleep`); a request, `stager wake` or a push clears it.
    public var asleep = false
    /// Recorded by a webhook of a PR that waits for the deploy label (`forks.max_blocked` counts it).
    public var waitsForLabel = false

    /// A PR whose head lives in another repository (or in a deleted fork).
    public var isFork: Bool { headRepo != repo }

    public enum Kind: String, Sendable, Codable {
        case pullRequest = "pr"
        case branch
    }

    /// A PR's environment, or a branch's (`repos.X.branches`, from pushes).
    public var kind: Kind { key.isBranch ? .branch : .pullRequest }

    /// How the shared host and the API name it: `pr-<N>`, or the branch's slug.
    public var name: String { Self.name(of: key, branch: branch) }

    static func name(of key: PullRequestKey, branch: String) -> String {
        key.isBranch ? Slug.readable(branch: branch) : "pr-\(key.number)"
    }

    /// For people: `owner/name#N`, or `owner/name@branch`.
    public var displayName: String { key.isBranch ? "\(repo)@\(branch)" : key.description }

    public var key: PullRequestKey { PullRequestKey(repo: repo, number: number) }

    public var desiredState: DesiredState {
        guard desired == .present else { return .absent }
        return asleep ? .asleep(sha: desiredSha) : .present(sha: desiredSha)
    }

    /// The last sign of use: a request through nginx, a deploy or an event. What `sleep_after` and
    /// `max_awake` measure from.
    public var lastUsedAt: Date {
        max(lastRequestAt ?? .distantPast, lastActivityAt ?? .distantPast, createdAt)
    }

    /// Not torn down: it holds, or is about to hold, a slug, a vhost or containers.
    public var isLive: Bool { status != .removed || desired == .present }
}

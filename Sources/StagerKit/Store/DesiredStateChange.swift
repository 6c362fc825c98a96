import Foundation

/// Who asked for a change of desired state; stored with the delivery, and the audit trail's kind for it.
public enum ChangeSource: String, Sendable, Codable {
    /// A GitHub `pull_request` webhook.
    case webhook = "pull_request"
    /// A GitHub `push` webhook to a branch of `repos.X.branches`.
    case push
    case deploy
    case destroy
    case sync
    case gc
    /// `stager sleep` and `stager wake`.
    case sleep
    case wake
    /// serve put an idle environment to sleep (`sleep_after`, `max_awake`).
    case idle
    /// A request to a sleeping environment's URL woke it.
    case request

    /// The audit line that records the change.
    var auditKind: AuditKind {
        switch self {
        case .webhook, .push: return .webhook
        case .deploy: return .deploy
        case .destroy: return .destroy
        case .sync: return .sync
        case .gc: return .gc
        case .sleep, .idle: return .sleep
        case .wake, .request: return .wake
        }
    }

    /// The audit trail's trigger: what set the work off.
    var trigger: AuditTrigger {
        switch self {
        case .webhook, .push: return .webhook
        case .deploy, .destroy, .sleep, .wake: return .manual
        case .sync: return .sync
        case .gc: return .gc
        case .idle: return .controller
        case .request: return .request
        }
    }
}

/// A PR as the change describes it: what GitHub said of it, or what Stager knew.
public struct PullRequestFacts: Sendable, Equatable {
    public var branch: String
    public var headSha: String
    public var title: String?
    public var author: String?
    /// The head's repository (`owner/name`); nil when a fork was deleted or the change does not say.
    public var headRepo: String?
    public var cloneURL: String?
    /// GitHub's `updated_at`: what orders changes of one PR.
    public var updatedAt: String?

    public init(
        branch: String,
        headSha: String,
        title: String? = nil,
        author: String? = nil,
        headRepo: String? = nil,
        cloneURL: String? = nil,
        updatedAt: String? = nil
    ) {
        self.branch = branch
        self.headSha = headSha
        self.title = title
        self.author = author
        self.headRepo = headRepo
        self.cloneURL = cloneURL
        self.updatedAt = updatedAt
    }
}

/// A change to one PR's desired state, from a webhook or a command: the one thing `Store.accept` records.
public struct DesiredStateChange: Sendable {
    /// `X-GitHub-Delivery` for a webhook; a fresh id for a command. A second change with the same id is a duplicate.
    public var id: String
    public var key: PullRequestKey
    public var intent: Intent
    public var pullRequest: PullRequestFacts
    /// What happened, for the audit trail: the webhook's action (`opened`, `closed`, …) or the command's verb.
    public var action: String
    public var source: ChangeSource
    public var receivedAt: Date
    /// The sender of the deploy label; the controller checks their permission.
    public var labeledBy: String? = nil
    /// Set for a PR that will wait for the deploy label: a new one is not recorded while this many of its
    /// repository wait already (`forks.max_blocked`).
    public var waitingLimit: Int? = nil
    /// An operator's own deploy (`stager deploy`) needs no label.
    public var approvedBy: String? = nil
    /// Who caused it: the webhook's sender, or the operator or command.
    public var actor: String? = nil
    /// A command's teardown (gc on GitHub's word that the PR is closed now, or an operator's `destroy`): the
    /// newest state there is, never compared with webhooks' `updated_at`. Its `updated_at` still raises the
    /// mark older redeliveries are measured against.
    public var isCurrentState = false

    public init(
        id: String,
        key: PullRequestKey,
        intent: Intent,
        pullRequest: PullRequestFacts,
        action: String,
        source: ChangeSource,
        receivedAt: Date = Date()
    ) {
        self.id = id
        self.key = key
        self.intent = intent
        self.pullRequest = pullRequest
        self.action = action
        self.source = source
        self.receivedAt = receivedAt
    }
}

extension DesiredStateChange {
    /// A webhook's change: the delivery's id, the event's PR, its sender as the actor.
    public init(delivery id: String, event: PullRequestEvent, intent: Intent, receivedAt: Date = Date()) {
        let pull = event.pull_request
        self.init(
            id: id,
            key: event.key,
            intent: intent,
            pullRequest: PullRequestFacts(
                branch: pull.head.ref,
                headSha: pull.head.sha,
                title: pull.title,
                author: pull.user?.login,
                headRepo: pull.head.repo?.full_name,
                cloneURL: pull.head.repo?.clone_url,
                updatedAt: pull.updated_at
            ),
            action: event.action.description,
            source: .webhook,
            receivedAt: receivedAt
        )
        actor = event.sender?.login
    }
}

import Foundation
import GRDB

/// The outcome of offering a delivery to the store.
public enum AcceptOutcome: Sendable, Equatable {
    /// Stored; the PR's desired state moved to `version`.
    case accepted(version: Int)
    /// This `X-GitHub-Delivery` was stored before; nothing changed.
    case duplicate
    /// Older than what was already applied for the PR (by `pull_request.updated_at`); recorded, ignored.
    case stale
    /// A sleep for what already sleeps (or is not deployed), a wake for what is awake: nothing to record.
    case unchanged
    /// A new PR that would wait for the label while `waiting` of its repository wait already
    /// (`DesiredStateChange.waitingLimit`): nothing recorded.
    case backlogFull(waiting: Int)
}

/// Whether a PR may take an environment now, or waits for room (`max_environments`).
public enum Admission: Sendable, Equatable {
    case admitted
    /// `position` counts from 1 among the waiting PRs; `scope` names the limit that is full.
    case waiting(position: Int, inUse: Int, limit: Int, scope: String)
}

/// What an audit line records.
public enum AuditKind: String, Sendable, Codable {
    /// A recorded change of desired state, by its source.
    case webhook, deploy, destroy, sync, gc
    case approval, blocked, waiting, build, release, ready, failure, teardown
    /// Put to sleep (idle or by hand), and woken (by a request or by hand).
    case sleep, wake
    /// A GitHub call whose failure did not fail the deploy (deployments).
    case github
    /// A convergence that failed for a passing reason and is retried.
    case error
}

/// What set off the work an audit line records.
public enum AuditTrigger: String, Sendable, Codable {
    case webhook, manual, sync, gc, controller
    /// A request to a sleeping environment's URL.
    case request
}

/// One line of the audit trail.
public struct AuditEvent: Sendable, Codable, Equatable {
    public var id: Int64?
    public var repo: String
    public var number: Int
    /// An `AuditKind`'s raw value: the record keeps what was written, whichever version wrote it.
    public var kind: String
    public var message: String
    public var deliveryID: String?
    public var at: Date
    /// The commit it concerns, when it concerns one.
    public var sha: String? = nil
    /// An `AuditTrigger`'s raw value.
    public var trigger: String? = nil
    /// Who: the webhook's sender, the operator, or the approving writer.
    public var actor: String? = nil
}

/// The one place that touches SQLite: deliveries, desired and applied state per PR, and the audit trail.
/// The store could not be opened as it must be.
public enum StoreError: Error, CustomStringConvertible {
    case notPrivate(String, String)

    public var description: String {
        switch self {
        case .notPrivate(let path, let reason): return "cannot make \(path) readable by its owner only: \(reason)"
        }
    }
}

public final class Store: Sendable {
    let db: DatabasePool
    /// Labels no environment's slug may take (the shared hosts').
    let reservedSlugs: Set<String>
    /// Labels only a branch environment may take (the configured branches' slugs).
    let branchSlugs: Set<String>

    public init(path: URL, reservedSlugs: Set<String> = [], branchSlugs: Set<String> = []) throws {
        self.reservedSlugs = reservedSlugs
        self.branchSlugs = branchSlugs
        try FileManager.default.createDirectory(at: path.deletingLastPathComponent(), withIntermediateDirectories: true)
        var configuration = Configuration()
        configuration.busyMode = .timeout(10)
        db = try DatabasePool(path: path.path, configuration: configuration)
        try Self.migrator.migrate(db)
        // The database holds delivery payload facts and comment bodies: keep it to its owner.
        // The -wal and -shm files may not exist yet; any other failure leaves secrets readable, and stops here.
        for suffix in ["", "-wal", "-shm"] where chmod(path.path + suffix, 0o600) != 0 && errno != ENOENT {
            throw StoreError.notPrivate(path.path + suffix, String(cString: strerror(errno)))
        }
    }

    // MARK: Deliveries

    /// Records the delivery and moves the PR's desired state, in one transaction. Once this returns
    /// `.accepted`, a crash loses nothing: the controller finds the version ahead of the applied one.
    public func accept(_ delivery: DesiredStateChange) async throws -> AcceptOutcome {
        // Async, so the HTTP server's event loop never blocks on SQLite.
        let reserved = delivery.key.isBranch ? reservedSlugs : reservedSlugs.union(branchSlugs)
        return try await db.write { db in
            if try Self.hasDelivery(db, id: delivery.id) { return .duplicate }
            let pull = delivery.pullRequest
            let key = delivery.key
            let updatedAt = pull.updatedAt ?? ""
            var outcome: AcceptOutcome
            var environment = try Self.environment(db, key)
            if environment == nil, let limit = delivery.waitingLimit {
                // Blocked already, or recorded to wait and not yet taken by the controller: several opened at
                // once must not all pass.
                let blocked = Column("status") == EnvironmentStatus.blocked.rawValue
                let recordedToWait =
                    Column("waitsForLabel") == true && Column("desired") == Desire.present.rawValue
                    && Column("status") == EnvironmentStatus.queued.rawValue
                    && (Column("approvedSha") == nil || Column("approvedSha") != Column("desiredSha"))
                let waiting = try EnvironmentRow.filter(Column("repo") == key.repo && (blocked || recordedToWait)).fetchCount(db)
                if waiting >= limit { return .backlogFull(waiting: waiting) }
            }

            if let current = environment, !delivery.isCurrentState, !updatedAt.isEmpty, updatedAt < current.sourceUpdatedAt {
                outcome = .stale
            } else if !Self.changes(delivery.intent, environment) {
                // Sleeping what sleeps, waking what is awake: twenty requests at once record one wake.
                return .unchanged
            } else {
                var env = try environment ?? Self.newEnvironment(db, delivery, reserved: reserved)
                if environment == nil, delivery.waitingLimit != nil { env.waitsForLabel = true }
                let wasGone = env.status == .removed && env.desired == .absent
                switch delivery.intent {
                case .deploy(let sha):
                    env.lastActivityAt = delivery.receivedAt
                    if let sender = delivery.labeledBy {
                        env.labelSender = sender
                        env.labelSha = sha
                    }
                    if let operatorName = delivery.approvedBy {
                        env.approvedSha = sha
                        env.approvedBy = operatorName
                    }
                    if wasGone {
                        // A reopened PR may have lost its slug to another environment meanwhile.
                        env.slug = try Self.freeSlug(db, branch: pull.branch, key: key, reserved: reserved)
                    }
                    env.desired = .present
                    env.desiredSha = sha
                    env.status = .queued
                    // A push to a sleeping PR deploys it awake.
                    env.asleep = false
                    // A new intent deserves a new attempt, even at a sha that failed before.
                    env.failedSha = nil
                case .teardown:
                    env.desired = .absent
                    env.asleep = false
                    if env.status != .removed { env.status = .removing }
                case .sleep:
                    env.asleep = true
                case .wake:
                    env.asleep = false
                    env.lastActivityAt = delivery.receivedAt
                }
                env.branch = pull.branch
                env.title = pull.title ?? env.title
                env.author = pull.author ?? env.author
                env.headRepo = pull.headRepo ?? env.headRepo
                env.cloneURL = pull.cloneURL ?? env.cloneURL
                if updatedAt > env.sourceUpdatedAt { env.sourceUpdatedAt = updatedAt }
                env.desiredVersion += 1
                env.lastDeliveryID = delivery.id
                env.updatedAt = delivery.receivedAt
                try EnvironmentRow(env).save(db)
                environment = env
                outcome = .accepted(version: env.desiredVersion)
            }
            let actor = delivery.actor ?? delivery.approvedBy
            try DeliveryRow(
                id: delivery.id,
                event: delivery.source.rawValue,
                action: delivery.action,
                repo: key.repo,
                number: key.number,
                outcome: outcome == .stale ? "stale" : "accepted",
                receivedAt: delivery.receivedAt,
                actor: actor
            ).insert(db)
            var audit = AuditRow(
                AuditEvent(
                    repo: key.repo,
                    number: key.number,
                    kind: delivery.source.auditKind.rawValue,
                    message: outcome == .stale
                        ? "\(delivery.action) ignored: older than the applied state" : "\(delivery.action) at \(pull.headSha.prefix(12))",
                    deliveryID: delivery.id,
                    at: delivery.receivedAt,
                    sha: pull.headSha,
                    trigger: delivery.source.trigger.rawValue,
                    actor: actor
                )
            )
            try audit.insert(db)
            return outcome
        }
    }

    /// Whether the intent changes the environment: a sleep needs one that is deployed and awake, a wake one
    /// that sleeps or is falling asleep.
    static func changes(_ intent: Intent, _ env: Environment?) -> Bool {
        switch intent {
        case .deploy, .teardown: return true
        case .sleep: return env.map { $0.desired == .present && !$0.asleep } ?? false
        case .wake: return env.map { $0.desired == .present && $0.asleep } ?? false
        }
    }

    /// The key of the branch's environment: the number it has, or with `create` a new one (-1, -2, … per
    /// repository); nil when it has none and `create` is false.
    public func branchKey(repo: String, branch: String, create: Bool) async throws -> PullRequestKey? {
        try await db.write { db in
            if let number = try Int.fetchOne(
                db,
                sql: "SELECT number FROM branchEnvironment WHERE repo = ? AND branch = ?",
                arguments: [repo, branch]
            ) {
                return PullRequestKey(repo: repo, number: number)
            }
            guard create else { return nil }
            let lowest = try Int.fetchOne(db, sql: "SELECT MIN(number) FROM branchEnvironment WHERE repo = ?", arguments: [repo]) ?? 0
            try db.execute(sql: "INSERT INTO branchEnvironment (repo, branch, number) VALUES (?, ?, ?)", arguments: [repo, branch, lowest - 1])
            return PullRequestKey(repo: repo, number: lowest - 1)
        }
    }

    public func deliveryCount() throws -> Int {
        try db.read { try DeliveryRow.fetchCount($0) }
    }

    // MARK: Environments

    public func environment(_ key: PullRequestKey) throws -> Environment? {
        try db.read { try Self.environment($0, key) }
    }

    /// Every environment, the removed ones included, oldest first.
    public func allEnvironments() throws -> [Environment] {
        try db.read(Self.allEnvironments)
    }

    /// Applies `change` to the stored environment in a transaction and returns the result.
    /// Async, like every write: waiting for SQLite's one writer suspends the task instead of blocking one of
    /// the few threads the webhook's answers also need.
    @discardableResult
    public func update(_ key: PullRequestKey, _ change: @escaping @Sendable (inout Environment) -> Void) async throws -> Environment? {
        try await db.write { db in
            guard var env = try Self.environment(db, key) else { return nil }
            change(&env)
            env.updatedAt = Date()
            try EnvironmentRow(env).update(db)
            return env
        }
    }

    /// The newest request through nginx to the live environment of each slug (`last_request_at`), in one
    /// transaction; an older time never replaces a newer one, and nothing else of the environment changes.
    public func recordRequests(_ requests: [String: Date]) async throws {
        guard !requests.isEmpty else { return }
        try await db.write { db in
            for (slug, at) in requests {
                try Self.moveForward("lastRequestAt", to: at, of: EnvironmentRow.filter(Column("slug") == slug), db)
            }
        }
    }

    /// A webhook event that changes nothing still counts as use (`sleep_after`, `max_awake`).
    public func recordActivity(_ key: PullRequestKey, at date: Date) async throws {
        try await db.write { db in
            try Self.moveForward(
                "lastActivityAt",
                to: date,
                of: EnvironmentRow.filter(Column("repo") == key.repo && Column("number") == key.number),
                db
            )
        }
    }

    /// Sets a time column of the live environments `request` selects, where it is older or unset: a time
    /// that arrives late never replaces a newer one, and nothing else changes.
    static func moveForward(_ column: String, to date: Date, of request: QueryInterfaceRequest<EnvironmentRow>, _ db: Database) throws {
        try request.filter(isLive).filter(Column(column) == nil || Column(column) < date).updateAll(db, Column(column).set(to: date))
    }

    // MARK: Helpers

    // The hot queries (every delivery, every step) use cached statements: compiling one costs more than running it.

    static func environment(_ db: Database, _ key: PullRequestKey) throws -> Environment? {
        let statement = try db.cachedStatement(sql: "SELECT * FROM environment WHERE repo = ? AND number = ?")
        return try EnvironmentRow.fetchOne(statement, arguments: [key.repo, key.number])?.environment
    }

    static func allEnvironments(_ db: Database) throws -> [Environment] {
        try EnvironmentRow.order(Column("createdAt"), Column("repo"), Column("number")).fetchAll(db).map(\.environment)
    }

    static func desiredVersion(_ db: Database, _ key: PullRequestKey) throws -> Int? {
        try Int.fetchOne(db, sql: "SELECT desiredVersion FROM environment WHERE repo = ? AND number = ?", arguments: [key.repo, key.number])
    }

    static func pendingVersions(_ db: Database) throws -> [PullRequestKey: Int] {
        let rows = try Row.fetchAll(db, sql: "SELECT repo, number, desiredVersion FROM environment WHERE desiredVersion > appliedVersion")
        return Dictionary(rows.map { (PullRequestKey(repo: $0["repo"], number: $0["number"]), $0["desiredVersion"]) }) { first, _ in first }
    }

    static func waitingKeys(_ db: Database) throws -> [PullRequestKey] {
        try EnvironmentRow
            .filter(Column("desired") == Desire.present.rawValue && Column("admitted") == false && Column("waitingSince") != nil)
            .order(Column("waitingSince"), Column("createdAt"))
            .fetchAll(db).map(\.environment.key)
    }

    static func hasDelivery(_ db: Database, id: String) throws -> Bool {
        let statement = try db.cachedStatement(sql: "SELECT 1 FROM delivery WHERE id = ?")
        return try Bool.fetchOne(statement, arguments: [id]) ?? false
    }

    static func newEnvironment(_ db: Database, _ change: DesiredStateChange, reserved: Set<String>) throws -> Environment {
        let (pull, date) = (change.pullRequest, change.receivedAt)
        return Environment(
            repo: change.key.repo,
            number: change.key.number,
            slug: try freeSlug(db, branch: pull.branch, key: change.key, reserved: reserved),
            branch: pull.branch,
            title: pull.title ?? "",
            author: pull.author ?? "",
            headRepo: pull.headRepo ?? "",
            desired: .absent,
            desiredSha: pull.headSha,
            desiredVersion: 0,
            appliedVersion: 0,
            sourceUpdatedAt: "",
            status: .queued,
            commentPending: false,
            createdAt: date,
            updatedAt: date,
            lastActivityAt: date,
            admitted: false,
            waitingSince: nil,
            approvedSha: nil,
            approvedBy: nil,
            labelSha: nil,
            labelSender: nil
        )
    }

    static func freeSlug(_ db: Database, branch: String, key: PullRequestKey, reserved: Set<String>) throws -> String {
        try Slug.make(branch: branch, repo: key.repo, number: key.number) { candidate in
            try reserved.contains(candidate)
                || EnvironmentRow
                    .filter(Column("slug") == candidate)
                    .filter(!(Column("repo") == key.repo && Column("number") == key.number))
                    .filter(isLive)
                    .fetchCount(db) > 0
        }
    }
}

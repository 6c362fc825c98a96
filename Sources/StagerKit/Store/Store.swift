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
public final class Store: Sendable {
    fileprivate let db: DatabasePool
    /// Labels no environment's slug may take (the shared hosts').
    private let reservedSlugs: Set<String>
    /// Labels only a branch environment may take (the configured branches' slugs).
    private let branchSlugs: Set<String>

    public init(path: URL, reservedSlugs: Set<String> = [], branchSlugs: Set<String> = []) throws {
        self.reservedSlugs = reservedSlugs
        self.branchSlugs = branchSlugs
        try FileManager.default.createDirectory(at: path.deletingLastPathComponent(), withIntermediateDirectories: true)
        var configuration = Configuration()
        configuration.busyMode = .timeout(10)
        db = try DatabasePool(path: path.path, configuration: configuration)
        try Self.migrator.migrate(db)
        // The database holds delivery payload facts and comment bodies: keep it to its owner.
        for suffix in ["", "-wal", "-shm"] {
            try? FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: path.path + suffix)  // the -wal and -shm files may not exist yet
        }
    }

    private static var migrator: DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1") { db in
            try db.create(table: "delivery") { t in
                t.primaryKey("id", .text)
                t.column("event", .text).notNull()
                t.column("action", .text).notNull()
                t.column("repo", .text).notNull()
                t.column("number", .integer).notNull()
                t.column("outcome", .text).notNull()
                t.column("receivedAt", .datetime).notNull()
            }
            try db.create(table: "environment") { t in
                t.column("repo", .text).notNull()
                t.column("number", .integer).notNull()
                t.primaryKey(["repo", "number"])
                t.column("slug", .text).notNull()
                t.column("branch", .text).notNull()
                t.column("title", .text).notNull()
                t.column("author", .text).notNull()
                t.column("headRepo", .text).notNull()
                t.column("desired", .text).notNull()
                t.column("desiredSha", .text).notNull()
                t.column("desiredVersion", .integer).notNull()
                t.column("appliedVersion", .integer).notNull()
                t.column("sourceUpdatedAt", .text).notNull()
                t.column("status", .text).notNull()
                t.column("deployedSha", .text)
                t.column("containerID", .text)
                t.column("containerName", .text)
                t.column("hostPort", .integer)
                t.column("failureReason", .text)
                t.column("failedSha", .text)
                t.column("commentID", .integer)
                t.column("commentBody", .text)
                t.column("commentPending", .boolean).notNull()
                t.column("lastDeliveryID", .text)
                t.column("createdAt", .datetime).notNull()
                t.column("updatedAt", .datetime).notNull()
            }
            try db.create(index: "environment_slug", on: "environment", columns: ["slug"])
            try db.create(table: "auditEvent") { t in
                t.autoIncrementedPrimaryKey("id")
                t.column("repo", .text).notNull()
                t.column("number", .integer).notNull()
                t.column("kind", .text).notNull()
                t.column("message", .text).notNull()
                t.column("deliveryID", .text)
                t.column("at", .datetime).notNull()
            }
        }
        migrator.registerMigration("v2: activity, admission, facts") { db in
            try db.alter(table: "environment") { t in
                t.add(column: "lastActivityAt", .datetime)
                t.add(column: "admitted", .boolean).notNull().defaults(to: false)
                t.add(column: "waitingSince", .datetime)
            }
            try db.execute(sql: "UPDATE environment SET lastActivityAt = updatedAt, admitted = (desired = 'present')")
            // Small facts shared between processes: serve's heartbeat, the engine's state.
            try db.create(table: "fact") { t in
                t.primaryKey("name", .text)
                t.column("value", .text).notNull()
                t.column("at", .datetime).notNull()
            }
        }
        migrator.registerMigration("v3: approval") { db in
            try db.alter(table: "environment") { t in
                t.add(column: "approvedSha", .text)
                t.add(column: "approvedBy", .text)
                t.add(column: "labelSha", .text)
                t.add(column: "labelSender", .text)
            }
        }
        migrator.registerMigration("v4: visibility") { db in
            try db.alter(table: "environment") { t in
                t.add(column: "deploymentID", .integer)
                t.add(column: "pendingDeploymentID", .integer)
                t.add(column: "lastDeploySeconds", .double)
            }
            try db.alter(table: "delivery") { t in
                t.add(column: "actor", .text)
            }
            try db.alter(table: "auditEvent") { t in
                t.add(column: "sha", .text)
                t.add(column: "trigger", .text)
                t.add(column: "actor", .text)
            }
        }
        migrator.registerMigration("v5: builds") { db in
            try db.alter(table: "environment") { t in
                t.add(column: "cloneURL", .text)
            }
        }
        migrator.registerMigration("v6: services") { db in
            try db.alter(table: "environment") { t in
                t.add(column: "services", .text).notNull().defaults(to: "[]")
            }
        }
        migrator.registerMigration("v7: requests") { db in
            try db.alter(table: "environment") { t in
                t.add(column: "lastRequestAt", .datetime)
            }
        }
        migrator.registerMigration("v8: sleep") { db in
            try db.alter(table: "environment") { t in
                t.add(column: "asleep", .boolean).notNull().defaults(to: false)
            }
        }
        migrator.registerMigration("v9: notifications") { db in
            // Slack notifications to send: one row per event (its key is unique), kept until sent or given up.
            try db.create(table: "notification") { t in
                t.autoIncrementedPrimaryKey("id")
                t.column("eventKey", .text).notNull().unique()
                t.column("repo", .text).notNull()
                t.column("text", .text).notNull()
                t.column("createdAt", .datetime).notNull()
                t.column("attempts", .integer).notNull().defaults(to: 0)
                t.column("nextAttemptAt", .datetime).notNull()
                t.column("sentAt", .datetime)
                t.column("failure", .text)
            }
        }
        migrator.registerMigration("v10: swarm") { db in
            try db.alter(table: "environment") { t in
                t.add(column: "hostAddress", .text)
            }
        }
        migrator.registerMigration("v11: branch environments") { db in
            // A branch environment's number: negative, per repository, kept for good so that its history stays its own.
            try db.create(table: "branchEnvironment") { t in
                t.column("repo", .text).notNull()
                t.column("branch", .text).notNull()
                t.column("number", .integer).notNull()
                t.primaryKey(["repo", "branch"])
                t.uniqueKey(["repo", "number"])
            }
        }
        return migrator
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
                let waiting = try EnvironmentRow.filter(Column("repo") == key.repo && Column("status") == EnvironmentStatus.blocked.rawValue).fetchCount(db)
                if waiting >= limit { return .backlogFull(waiting: waiting) }
            }

            if let current = environment, !delivery.isCurrentState, !updatedAt.isEmpty, updatedAt < current.sourceUpdatedAt {
                outcome = .stale
            } else if !Self.changes(delivery.intent, environment) {
                // Sleeping what sleeps, waking what is awake: twenty requests at once record one wake.
                return .unchanged
            } else {
                var env = try environment ?? Self.newEnvironment(db, delivery, reserved: reserved)
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
                id: delivery.id, event: delivery.source.rawValue, action: delivery.action, repo: key.repo, number: key.number,
                outcome: outcome == .stale ? "stale" : "accepted", receivedAt: delivery.receivedAt, actor: actor
            ).insert(db)
            var audit = AuditRow(AuditEvent(
                repo: key.repo, number: key.number, kind: delivery.source.auditKind.rawValue,
                message: outcome == .stale ? "\(delivery.action) ignored: older than the applied state" : "\(delivery.action) at \(pull.headSha.prefix(12))",
                deliveryID: delivery.id, at: delivery.receivedAt, sha: pull.headSha,
                trigger: delivery.source.trigger.rawValue, actor: actor
            ))
            try audit.insert(db)
            return outcome
        }
    }

    /// Whether the intent changes the environment: a sleep needs one that is deployed and awake, a wake one
    /// that sleeps or is falling asleep.
    private static func changes(_ intent: Intent, _ env: Environment?) -> Bool {
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
            if let number = try Int.fetchOne(db, sql: "SELECT number FROM branchEnvironment WHERE repo = ? AND branch = ?", arguments: [repo, branch]) {
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
            try Self.moveForward("lastActivityAt", to: date, of: EnvironmentRow.filter(Column("repo") == key.repo && Column("number") == key.number), db)
        }
    }

    /// Sets a time column of the live environments `request` selects, where it is older or unset: a time
    /// that arrives late never replaces a newer one, and nothing else changes.
    private static func moveForward(_ column: String, to date: Date, of request: QueryInterfaceRequest<EnvironmentRow>, _ db: Database) throws {
        try request.filter(isLive).filter(Column(column) == nil || Column(column) < date).updateAll(db, Column(column).set(to: date))
    }

    // MARK: Notifications

    /// Records a notification to send, once per event: a second one with the same key is ignored.
    public func enqueue(_ notice: Notice, at date: Date = Date()) async throws {
        try await db.write { db in
            try db.execute(sql: "INSERT OR IGNORE INTO notification (eventKey, repo, text, createdAt, nextAttemptAt) VALUES (?, ?, ?, ?, ?)",
                           arguments: [notice.eventKey, notice.repo, notice.text, date, date])
        }
    }

    /// Notifications due now, oldest first.
    public func dueNotifications(now: Date = Date(), limit: Int = 20) async throws -> [PendingNotice] {
        try await db.read { db in
            try Row.fetchAll(db, sql: "SELECT id, eventKey, repo, text, attempts FROM notification WHERE sentAt IS NULL AND failure IS NULL AND nextAttemptAt <= ? ORDER BY id LIMIT ?",
                             arguments: [now, limit])
                .map { PendingNotice(id: $0["id"], notice: Notice(eventKey: $0["eventKey"], repo: $0["repo"], text: $0["text"]), attempts: $0["attempts"]) }
        }
    }

    /// Forgets notices sent or given up before `date`: the store keeps a week of them, not every one ever.
    public func pruneNotifications(before date: Date) async throws {
        try await db.write { db in
            try db.execute(sql: "DELETE FROM notification WHERE (sentAt IS NOT NULL OR failure IS NOT NULL) AND createdAt < ?", arguments: [date])
        }
    }

    /// Sent; or, with `retryAt`, to be tried again then; or given up, with why.
    public func notificationAttempted(_ id: Int64, sentAt: Date?, retryAt: Date?, failure: String?) async throws {
        try await db.write { db in
            try db.execute(sql: "UPDATE notification SET attempts = attempts + 1, sentAt = ?, nextAttemptAt = COALESCE(?, nextAttemptAt), failure = ? WHERE id = ?",
                           arguments: [sentAt, retryAt, failure, id])
        }
    }

    /// `Environment.isLive` in SQL: not torn down. Live environments never share a slug.
    private static let isLive = Column("status") != EnvironmentStatus.removed.rawValue || Column("desired") == Desire.present.rawValue

    /// Records that the controller converged the PR to `version`, unless a newer intent arrived meanwhile.
    public func markApplied(_ key: PullRequestKey, version: Int) async throws {
        try await db.write { db in
            try db.execute(
                sql: "UPDATE environment SET appliedVersion = ? WHERE repo = ? AND number = ? AND appliedVersion < ?",
                arguments: [version, key.repo, key.number, version]
            )
        }
    }

    public func desiredVersion(_ key: PullRequestKey) throws -> Int? {
        try db.read { try Self.desiredVersion($0, key) }
    }

    /// PRs whose desired version is ahead of the applied one, with that version.
    public func pendingVersions() throws -> [PullRequestKey: Int] {
        try db.read(Self.pendingVersions)
    }

    // MARK: Admission (max_environments)

    /// Admits the PR when the global and per-repo limits leave room and no PR that waits longer could take
    /// that room; otherwise records it as waiting. Oldest waiting first.
    public func admit(_ key: PullRequestKey, limit: Int, repoLimit: Int?, at date: Date = Date()) async throws -> Admission {
        try await db.write { db in
            guard var env = try Self.environment(db, key),
                  env.desired == .present, !env.admitted else { return .admitted }
            let holders = try EnvironmentRow.filter(Column("desired") == Desire.present.rawValue && Column("admitted") == true).fetchAll(db).map(\.environment)
            let inUse = holders.count
            func repoFits(_ repo: String) -> Bool {
                guard let repoLimit else { return true }
                return holders.filter { $0.repo == repo }.count < repoLimit
            }
            let waiters = try EnvironmentRow
                .filter(Column("desired") == Desire.present.rawValue && Column("admitted") == false && Column("waitingSince") != nil)
                .order(Column("waitingSince"), Column("createdAt"))
                .fetchAll(db).map(\.environment)
            let since = env.waitingSince ?? date
            let olderEligible = waiters.contains { other in
                other.key != key && (other.waitingSince ?? date, other.createdAt) < (since, env.createdAt) && repoFits(other.repo)
            }
            if inUse < limit, repoFits(key.repo), !olderEligible {
                env.admitted = true
                env.waitingSince = nil
                try EnvironmentRow(env).update(db)
                return .admitted
            }
            env.waitingSince = since
            try EnvironmentRow(env).update(db)
            let position = (waiters.firstIndex { $0.key == key } ?? waiters.count) + 1
            if inUse >= limit { return .waiting(position: position, inUse: inUse, limit: limit, scope: "limits.max_environments") }
            let repoInUse = holders.filter { $0.repo == key.repo }.count
            return .waiting(position: position, inUse: repoInUse, limit: repoLimit ?? limit, scope: "repos.\(key.repo).max_environments")
        }
    }

    /// PRs waiting for room, oldest first.
    public func waitingKeys() throws -> [PullRequestKey] {
        try db.read(Self.waitingKeys)
    }

    // MARK: Facts

    public func setFact(_ name: String, _ value: String, at date: Date = Date()) async throws {
        try await db.write { db in
            try db.execute(sql: "INSERT INTO fact (name, value, at) VALUES (?, ?, ?) ON CONFLICT(name) DO UPDATE SET value = excluded.value, at = excluded.at",
                           arguments: [name, value, date])
        }
    }

    public func fact(_ name: String) throws -> (value: String, at: Date)? {
        try db.read { db in try Self.fact(db, name) }
    }

    /// A random secret kept under `name`, made the first time it is asked for; every process sharing this
    /// store gets the same one.
    public func secret(named name: String) throws -> String {
        let fresh = RandomToken.hex()
        return try db.write { db in
            try db.execute(sql: "INSERT INTO fact (name, value, at) VALUES (?, ?, ?) ON CONFLICT(name) DO NOTHING", arguments: [name, fresh, Date()])
            return try Self.fact(db, name)?.value ?? fresh
        }
    }

    /// The live environment that owns `slug`: the one whose URL it is.
    public func liveEnvironment(slug: String) async throws -> Environment? {
        try await db.read { db in
            try EnvironmentRow.filter(Column("slug") == slug).filter(Self.isLive).fetchOne(db)?.environment
        }
    }

    fileprivate static func fact(_ db: Database, _ name: String) throws -> (value: String, at: Date)? {
        guard let row = try Row.fetchOne(db, sql: "SELECT value, at FROM fact WHERE name = ?", arguments: [name]) else { return nil }
        return (row["value"], row["at"])
    }

    // MARK: Audit

    /// Records what happened; the trigger and who caused it come from `deliveryID`'s delivery (the intent
    /// being carried out), unless `actor` names someone else (a writer approving, say).
    public func audit(_ key: PullRequestKey, kind: AuditKind, message: String, deliveryID: String? = nil, sha: String? = nil, actor: String? = nil) async throws {
        try await db.write { db in
            let delivery = try deliveryID.flatMap { try DeliveryRow.fetchOne(db, key: $0) }
            var row = AuditRow(AuditEvent(
                repo: key.repo, number: key.number, kind: kind.rawValue, message: message, deliveryID: deliveryID, at: Date(), sha: sha,
                trigger: (delivery.map { ChangeSource(rawValue: $0.event)?.trigger ?? .controller } ?? .controller).rawValue, actor: actor ?? delivery?.actor
            ))
            try row.insert(db)
        }
    }

    /// The audit trail, newest first: one PR's, or everyone's.
    public func auditEvents(for key: PullRequestKey? = nil, limit: Int = 100) throws -> [AuditEvent] {
        try db.read { db in
            var request = AuditRow.order(Column("id").desc).limit(limit)
            if let key { request = request.filter(Column("repo") == key.repo && Column("number") == key.number) }
            return try request.fetchAll(db).map(\.event)
        }
    }

    // MARK: Helpers

    // The hot queries (every delivery, every step) use cached statements: compiling one costs more than running it.

    fileprivate static func environment(_ db: Database, _ key: PullRequestKey) throws -> Environment? {
        let statement = try db.cachedStatement(sql: "SELECT * FROM environment WHERE repo = ? AND number = ?")
        return try EnvironmentRow.fetchOne(statement, arguments: [key.repo, key.number])?.environment
    }

    fileprivate static func allEnvironments(_ db: Database) throws -> [Environment] {
        try EnvironmentRow.order(Column("createdAt"), Column("repo"), Column("number")).fetchAll(db).map(\.environment)
    }

    fileprivate static func desiredVersion(_ db: Database, _ key: PullRequestKey) throws -> Int? {
        try Int.fetchOne(db, sql: "SELECT desiredVersion FROM environment WHERE repo = ? AND number = ?", arguments: [key.repo, key.number])
    }

    fileprivate static func pendingVersions(_ db: Database) throws -> [PullRequestKey: Int] {
        let rows = try Row.fetchAll(db, sql: "SELECT repo, number, desiredVersion FROM environment WHERE desiredVersion > appliedVersion")
        return Dictionary(rows.map { (PullRequestKey(repo: $0["repo"], number: $0["number"]), $0["desiredVersion"]) }) { first, _ in first }
    }

    fileprivate static func waitingKeys(_ db: Database) throws -> [PullRequestKey] {
        try EnvironmentRow
            .filter(Column("desired") == Desire.present.rawValue && Column("admitted") == false && Column("waitingSince") != nil)
            .order(Column("waitingSince"), Column("createdAt"))
            .fetchAll(db).map(\.environment.key)
    }

    private static func hasDelivery(_ db: Database, id: String) throws -> Bool {
        let statement = try db.cachedStatement(sql: "SELECT 1 FROM delivery WHERE id = ?")
        return try Bool.fetchOne(statement, arguments: [id]) ?? false
    }

    private static func newEnvironment(_ db: Database, _ change: DesiredStateChange, reserved: Set<String>) throws -> Environment {
        let (pull, date) = (change.pullRequest, change.receivedAt)
        return Environment(
            repo: change.key.repo, number: change.key.number,
            slug: try freeSlug(db, branch: pull.branch, key: change.key, reserved: reserved),
            branch: pull.branch, title: pull.title ?? "",
            author: pull.author ?? "", headRepo: pull.headRepo ?? "",
            desired: .absent, desiredSha: pull.headSha, desiredVersion: 0, appliedVersion: 0,
            sourceUpdatedAt: "", status: .queued, commentPending: false, createdAt: date, updatedAt: date,
            lastActivityAt: date, admitted: false, waitingSince: nil,
            approvedSha: nil, approvedBy: nil, labelSha: nil, labelSender: nil
        )
    }

    private static func freeSlug(_ db: Database, branch: String, key: PullRequestKey, reserved: Set<String>) throws -> String {
        try Slug.make(branch: branch, repo: key.repo, number: key.number) { candidate in
            try reserved.contains(candidate) || EnvironmentRow
                .filter(Column("slug") == candidate)
                .filter(!(Column("repo") == key.repo && Column("number") == key.number))
                .filter(isLive)
                .fetchCount(db) > 0
        }
    }
}

// MARK: Rows

private struct DeliveryRow: Codable, FetchableRecord, PersistableRecord {
    static let databaseTableName = "delivery"
    var id: String
    var event: String
    var action: String
    var repo: String
    var number: Int
    var outcome: String
    var receivedAt: Date
    var actor: String?
}

private struct EnvironmentRow: Codable, FetchableRecord, PersistableRecord {
    static let databaseTableName = "environment"
    var environment: Environment

    init(_ environment: Environment) { self.environment = environment }
    init(from decoder: any Decoder) throws { environment = try Environment(from: decoder) }
    func encode(to encoder: any Encoder) throws { try environment.encode(to: encoder) }
}

private struct AuditRow: Codable, FetchableRecord, MutablePersistableRecord {
    static let databaseTableName = "auditEvent"
    var event: AuditEvent

    init(_ event: AuditEvent) { self.event = event }
    init(from decoder: any Decoder) throws { event = try AuditEvent(from: decoder) }
    func encode(to encoder: any Encoder) throws { try event.encode(to: encoder) }
}

/// The store as the controller's repository of environments. Its reads suspend while SQLite answers (the
/// store's own reads, for the commands, block), so a slow read never holds one of the few threads the
/// webhook's answers need.
public struct SQLiteEnvironments: EnvironmentRepository {
    let store: Store
    private var db: DatabasePool { store.db }

    public func environment(_ key: PullRequestKey) async throws -> Environment? {
        try await db.read { db in try Store.environment(db, key) }
    }

    public func allEnvironments() async throws -> [Environment] {
        try await db.read { db in try Store.allEnvironments(db) }
    }

    public func desiredVersion(_ key: PullRequestKey) async throws -> Int? {
        try await db.read { db in try Store.desiredVersion(db, key) }
    }

    public func pendingVersions() async throws -> [PullRequestKey: Int] {
        try await db.read { db in try Store.pendingVersions(db) }
    }

    public func waitingKeys() async throws -> [PullRequestKey] {
        try await db.read { db in try Store.waitingKeys(db) }
    }

    public func recordChange(_ change: DesiredStateChange) async throws -> AcceptOutcome {
        try await store.accept(change)
    }

    @discardableResult
    public func update(_ key: PullRequestKey, _ change: @escaping @Sendable (inout Environment) -> Void) async throws -> Environment? {
        try await store.update(key, change)
    }

    public func markApplied(_ key: PullRequestKey, version: Int) async throws {
        try await store.markApplied(key, version: version)
    }

    public func admit(_ key: PullRequestKey, limit: Int, repoLimit: Int?, at date: Date) async throws -> Admission {
        try await store.admit(key, limit: limit, repoLimit: repoLimit, at: date)
    }

    public func audit(_ key: PullRequestKey, kind: AuditKind, message: String, deliveryID: String?, sha: String?, actor: String?) async throws {
        try await store.audit(key, kind: kind, message: message, deliveryID: deliveryID, sha: sha, actor: actor)
    }

    public func setFact(_ name: String, _ value: String, at date: Date) async throws {
        try await store.setFact(name, value, at: date)
    }

    public func fact(_ name: String) async throws -> String? {
        try await db.read { db in try Store.fact(db, name)?.value }
    }
}

extension Store {
    public var environments: SQLiteEnvironments { SQLiteEnvironments(store: self) }
}

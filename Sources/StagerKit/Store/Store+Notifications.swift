import Foundation
import GRDB

/// The outbox of Slack notifications: written with the change they tell of, sent by `SlackNotifier`.
extension Store {
    // MARK: Notifications

    /// Records a notification to send, once per event: a second one with the same key is ignored.
    public func enqueue(_ notice: Notice, at date: Date = Date()) async throws {
        try await db.write { db in
            try db.execute(
                sql: "INSERT OR IGNORE INTO notification (eventKey, repo, text, createdAt, nextAttemptAt) VALUES (?, ?, ?, ?, ?)",
                arguments: [notice.eventKey, notice.repo, notice.text, date, date]
            )
        }
    }

    /// Notifications due now, oldest first.
    public func dueNotifications(now: Date = Date(), limit: Int = 20) async throws -> [PendingNotice] {
        try await db.read { db in
            try Row.fetchAll(
                db,
                sql:
                    "SELECT id, eventKey, repo, text, attempts FROM notification WHERE sentAt IS NULL AND failure IS NULL AND nextAttemptAt <= ? ORDER BY id LIMIT ?",
                arguments: [now, limit]
            )
            .map {
                PendingNotice(id: $0["id"], notice: Notice(eventKey: $0["eventKey"], repo: $0["repo"], text: $0["text"]), attempts: $0["attempts"])
            }
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
            try db.execute(
                sql:
                    "UPDATE notification SET attempts = attempts + 1, sentAt = ?, nextAttemptAt = COALESCE(?, nextAttemptAt), failure = ? WHERE id = ?",
                arguments: [sentAt, retryAt, failure, id]
            )
        }
    }

    /// `Environment.isLive` in SQL: not torn down. Live environments never share a slug.
    static let isLive = Column("status") != EnvironmentStatus.removed.rawValue || Column("desired") == Desire.present.rawValue

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
}

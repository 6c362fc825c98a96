import Foundation
import GRDB

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

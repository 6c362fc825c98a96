import Foundation
import GRDB

/// `limits.max_environments`: who takes a place, who waits.
extension Store {
    // MARK: Admission (max_environments)

    /// Admits the PR when the global and per-repo limits leave room and no PR that waits longer could take
    /// that room; otherwise records it as waiting. Oldest waiting first.
    public func admit(_ key: PullRequestKey, limit: Int, repoLimit: Int?, at date: Date = Date()) async throws -> Admission {
        try await db.write { db in
            guard var env = try Self.environment(db, key),
                env.desired == .present, !env.admitted
            else { return .admitted }
            let present = Column("desired") == Desire.present.rawValue
            let holders = try EnvironmentRow.filter(present && Column("admitted") == true).fetchAll(db).map(\.environment)
            let waiters = try EnvironmentRow.filter(present && Column("admitted") == false && Column("waitingSince") != nil)
                .fetchAll(db).map(\.environment)
            let decision = AdmissionPolicy.decide(env, holders: holders, waiters: waiters, limit: limit, repoLimit: repoLimit, at: date)
            env.admitted = decision.admitted
            env.waitingSince = decision.waitingSince
            try EnvironmentRow(env).update(db)
            return decision.admission
        }
    }

    /// PRs waiting for room, oldest first.
    public func waitingKeys() throws -> [PullRequestKey] {
        try db.read(Self.waitingKeys)
    }
}

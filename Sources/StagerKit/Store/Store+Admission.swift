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
            let holders = try EnvironmentRow.filter(Column("desired") == Desire.present.rawValue && Column("admitted") == true).fetchAll(db).map(
                \.environment
            )
            let inUse = holders.count
            func repoFits(_ repo: String) -> Bool {
                guard let repoLimit else { return true }
                return holders.filter { $0.repo == repo }.count < repoLimit
            }
            let waiters =
                try EnvironmentRow
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
}

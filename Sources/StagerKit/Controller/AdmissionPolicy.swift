import Foundation

/// `limits.max_environments` and `repos.X.max_environments` as one pure decision: who takes a place and
/// who waits, oldest waiting first. The store runs it inside its write transaction, the in-memory twin
/// runs the same, and the repositories' shared contract tests hold both to it.
public enum AdmissionPolicy {
    public struct Decision: Sendable, Equatable {
        public var admission: Admission
        /// What the environment's `admitted` and `waitingSince` become.
        public var admitted: Bool
        public var waitingSince: Date?
    }

    /// `holders`: the environments that hold a place; `waiters`: those waiting (any order).
    public static func decide(
        _ env: Environment,
        holders: [Environment],
        waiters: [Environment],
        limit: Int,
        repoLimit: Int?,
        at date: Date
    ) -> Decision {
        func repoFits(_ repo: String) -> Bool {
            guard let repoLimit else { return true }
            return holders.filter { $0.repo == repo }.count < repoLimit
        }
        let queue = waiters.sorted { ($0.waitingSince ?? date, $0.createdAt) < ($1.waitingSince ?? date, $1.createdAt) }
        let since = env.waitingSince ?? date
        let olderEligible = queue.contains { other in
            other.key != env.key && (other.waitingSince ?? date, other.createdAt) < (since, env.createdAt) && repoFits(other.repo)
        }
        if holders.count < limit, repoFits(env.repo), !olderEligible {
            return Decision(admission: .admitted, admitted: true, waitingSince: nil)
        }
        let position = (queue.firstIndex { $0.key == env.key } ?? queue.count) + 1
        let waiting: Admission =
            holders.count >= limit
            ? .waiting(position: position, inUse: holders.count, limit: limit, scope: "limits.max_environments")
            : .waiting(
                position: position,
                inUse: holders.filter { $0.repo == env.repo }.count,
                limit: repoLimit ?? limit,
                scope: "repos.\(env.repo).max_environments"
            )
        return Decision(admission: waiting, admitted: false, waitingSince: since)
    }
}

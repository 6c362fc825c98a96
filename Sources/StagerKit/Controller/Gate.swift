/// Whether the PR's desired sha may run, decided from what is recorded: the approval policy beside
/// `Planner`. Pure: the permission lookup and the store's admission are the interpreter's.
public enum Gate {
    public enum Approval: Equatable, Sendable {
        /// The repository runs this PR's code without approval.
        case notNeeded
        /// A writer (or an operator) approved this very sha.
        case approved
        /// A deploy label for this sha waits for its sender's permission to be checked.
        case checkLabel(sender: String)
        /// No approval of this sha: the PR waits for the label.
        case blocked
    }

    /// Fork PRs (unless the repository allows forks) and every PR under `require_label` run only a head sha
    /// a writer approved with the deploy label.
    /// A branch environment runs what was pushed to the repository itself: only writers can push there.
    public static func approval(_ env: Environment, requireLabel: Bool, allowForks: Bool) -> Approval {
        guard !env.key.isBranch else { return .notNeeded }
        guard requireLabel || (env.isFork && !allowForks) else { return .notNeeded }
        if env.approvedSha == env.desiredSha { return .approved }
        if let sender = env.labelSender, !sender.isEmpty, env.labelSha == env.desiredSha { return .checkLabel(sender: sender) }
        return .blocked
    }

    /// GitHub permissions that may approve a PR's code.
    public static func mayApprove(_ permission: String) -> Bool {
        ["admin", "maintain", "write"].contains(permission)
    }
}

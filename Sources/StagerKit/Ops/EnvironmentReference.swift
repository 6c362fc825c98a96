/// How a command names an environment: `OWNER/NAME#N` for a pull request's, `OWNER/NAME@BRANCH` for a
/// branch's (`repos.X.branches`).
public enum EnvironmentReference: Sendable, Equatable, CustomStringConvertible {
    case pullRequest(PullRequestKey)
    case branch(repo: String, branch: String)

    public init?(parsing text: String) {
        if let key = PullRequestKey(parsing: text) {
            self = .pullRequest(key)
            return
        }
        guard let at = text.firstIndex(of: "@") else { return nil }
        let repo = String(text[..<at])
        let branch = String(text[text.index(after: at)...])
        guard repo.split(separator: "/", omittingEmptySubsequences: false).count == 2, !repo.hasPrefix("/"), !repo.hasSuffix("/"),
            !branch.isEmpty, !branch.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F })
        else { return nil }
        self = .branch(repo: repo, branch: branch)
    }

    public var description: String {
        switch self {
        case .pullRequest(let key): return key.description
        case .branch(let repo, let branch): return "\(repo)@\(branch)"
        }
    }
}

extension Store {
    /// The key `reference` names; a branch that never had an environment has none.
    public func key(_ reference: EnvironmentReference) async throws -> PullRequestKey {
        switch reference {
        case .pullRequest(let key):
            return key
        case .branch(let repo, let branch):
            guard let key = try await branchKey(repo: repo, branch: branch, create: false) else {
                throw ManualControlError(message: "\(reference) has no environment (a push to the branch makes one)")
            }
            return key
        }
    }
}

import Foundation

extension Execution {
    /// Whether the desired sha may run (`Gate.approval`); a pending label is checked against its sender's
    /// permission here. Without an approval the PR is blocked, and says so on the PR once.
    mutating func approved() async throws -> Bool {
        let sender: String
        switch Gate.approval(env, requireLabel: repo?.requireLabel ?? false, allowForks: repo?.allowForks ?? false) {
        case .notNeeded, .approved: return true
        case .blocked: return try await block(ignored: nil)
        case .checkLabel(let labelSender): sender = labelSender
        }
        guard let permissions = seams.permissions else {
            try await announcer.audit(env, .approval, "label by \(sender) not checked: no GitHub token configured")
            return try await block(ignored: nil)
        }
        guard try await permissions.confirmsLabel(config.forks.label, sha: env.desiredSha, on: key) else {
            try await environments.update(key) { $0.labelSender = nil }
            try await announcer.audit(
                env,
                .approval,
                "label by \(sender) ignored: GitHub does not show \(config.forks.label) on the PR at \(env.desiredSha.prefix(12))",
                actor: sender
            )
            logger.warning("deploy label not confirmed by GitHub", metadata: ["by": "\(sender)"])
            return try await block(ignored: nil)
        }
        let permission = try await permissions.permission(of: sender, in: env.repo)
        guard Gate.mayApprove(permission) else {
            try await environments.update(key) { $0.labelSender = nil }
            try await announcer.audit(env, .approval, "label by \(sender) ignored: permission \(permission)", actor: sender)
            logger.warning("deploy label ignored", metadata: ["by": "\(sender)", "permission": "\(permission)"])
            return try await block(ignored: sender)
        }
        let sha = env.desiredSha
        try await environments.update(key) {
            $0.approvedSha = sha
            $0.approvedBy = sender
            $0.labelSender = nil
        }
        try await announcer.audit(env, .approval, "\(sender) (\(permission)) approved \(sha.prefix(12))", actor: sender)
        logger.info("approved", metadata: ["by": "\(sender)", "permission": "\(permission)"])
        return true
    }

    /// Always false: the PR waits for approval. Said on the PR once, and again when a reader's label was ignored.
    private mutating func block(ignored: String?) async throws -> Bool {
        outcome = .blocked
        if env.status != .blocked || ignored != nil { try await announcer.announce(.blocked(ignored: ignored), for: env) }
        return false
    }

    /// Takes one of the `max_environments` places, or records the PR as waiting and says so on the PR once.
    mutating func admitted() async throws -> Bool {
        guard !env.admitted else { return true }
        let admission = try await environments.admit(key, limit: config.limits.maxEnvironments, repoLimit: repo?.maxEnvironments)
        guard case .waiting(let position, let inUse, let limit, let scope) = admission else { return true }
        outcome = .waiting
        guard env.status != .waiting else { return false }
        logger.info("waiting for room", metadata: ["position": "\(position)", "limit": "\(scope)=\(limit)"])
        try await announcer.announce(.waiting(position: position, inUse: inUse, limit: limit, scope: scope), for: env)
        return false
    }

}

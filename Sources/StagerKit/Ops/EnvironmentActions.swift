import Foundation

/// What the dashboard, the JSON API and Slack may do to an environment: the changes of desired state that
/// `stager deploy`, `destroy`, `sleep` and `wake` record, each by someone the audit trail names. serve
/// applies them as it applies a webhook.
public struct EnvironmentActions: Sendable {
    public enum Action: String, Sendable, CaseIterable {
        case deploy, destroy, sleep, wake
    }

    public enum Failure: Error, Equatable, CustomStringConvertible {
        case unknown(PullRequestKey)
        /// Not a sha, or not one this environment ever had.
        case badSha(String)
        /// GitHub or the environment's state says no (a closed PR, nothing to roll back to).
        case refused(String)

        public var description: String {
            switch self {
            case .unknown(let key): return "\(key) has no environment"
            case .badSha(let message), .refused(let message): return message
            }
        }
    }

    let control: ManualControl
    let store: Store
    /// serve's own controller: what serve records itself it takes up at once.
    let controller: Controller?

    public init(control: ManualControl, store: Store, controller: Controller?) {
        self.control = control
        self.store = store
        self.controller = controller
    }

    /// Records the action and returns the environment as recorded. `sha` (deploy only): a commit of the
    /// environment's history, whole or its first 7 or more characters; nil: the PR's head.
    @discardableResult
    public func perform(_ action: Action, on key: PullRequestKey, sha: String? = nil, actor: String) async throws -> Environment {
        guard let env = try await store.environments.environment(key), env.isLive || action == .deploy else { throw Failure.unknown(key) }
        let control = control.acting(as: actor)
        do {
            switch action {
            case .deploy: _ = try await control.deploy(key, sha: try sha.map { try historicalSha($0, of: env) })
            case .destroy: _ = try await control.destroy(key)
            case .sleep: _ = try await control.sleep(key)
            case .wake: _ = try await control.wake(key)
            }
        } catch let error as ManualControlError {
            throw Failure.refused(error.message)
        }
        await controller?.enqueue(key)
        return try await store.environments.environment(key) ?? env
    }

    /// The sha deployed before the one serving now: what `rollback` deploys.
    public func previousSha(of key: PullRequestKey) throws -> String {
        guard let env = try store.environment(key) else { throw Failure.unknown(key) }
        guard let previous = try deployedShas(of: key).first(where: { $0 != env.deployedSha }) else {
            throw Failure.refused("\(key) has no earlier deploy to roll back to")
        }
        return previous
    }

    /// Every sha that served the environment, newest first, each once.
    func deployedShas(of key: PullRequestKey) throws -> [String] {
        var shas: [String] = []
        for event in try store.auditEvents(for: key, limit: 1000) where event.kind == AuditKind.ready.rawValue {
            if let sha = event.sha, !shas.contains(sha) { shas.append(sha) }
        }
        return shas
    }

    /// The whole sha of the environment's history that `text` names.
    func historicalSha(_ text: String, of env: Environment) throws -> String {
        let wanted = text.lowercased()
        guard (7...40).contains(wanted.count), wanted.allSatisfy(\.isHexDigit) else {
            throw Failure.badSha("\"\(text.prefix(60))\" is not a commit sha (7 to 40 hexadecimal characters)")
        }
        let history = [env.desiredSha, env.deployedSha].compactMap { $0 } + (try store.auditEvents(for: env.key, limit: 1000).compactMap(\.sha))
        guard let sha = history.first(where: { $0.hasPrefix(wanted) }) else {
            throw Failure.badSha("\(wanted) is not in the history of \(env.key)")
        }
        return sha
    }
}

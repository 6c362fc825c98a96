/// What requests held for a sleeping environment wait for: where its woken app answers (as soon as
/// it answers its health path, before nginx is reloaded), or why it could not wake. The controller posts;
/// serve's wake route waits.
public actor WakeSignals {
    public enum Outcome: Sendable, Equatable {
        case awake(Upstream)
        case failed(reason: String)
    }

    private var outcomes: [PullRequestKey: Outcome] = [:]
    private var waiters: [PullRequestKey: [Int: CheckedContinuation<Outcome?, Never>]] = [:]
    private var nextWaiter = 0

    public init() {}

    /// Answers every request waiting for the environment, and any that asks later, until `forget`.
    public func post(_ outcome: Outcome, for key: PullRequestKey) {
        outcomes[key] = outcome
        for waiter in (waiters.removeValue(forKey: key) ?? [:]).values { waiter.resume(returning: outcome) }
    }

    /// The environment sleeps again, or a new wake begins: what was posted no longer holds.
    public func forget(_ key: PullRequestKey) {
        outcomes[key] = nil
    }

    public func outcome(for key: PullRequestKey) -> Outcome? { outcomes[key] }

    /// The outcome once posted; nil when none comes within `timeout`.
    public func wait(for key: PullRequestKey, timeout: Duration) async -> Outcome? {
        if let outcome = outcomes[key] { return outcome }
        let id = nextWaiter
        nextWaiter += 1
        let expiry = Task { [weak self] in
            try? await Task.sleep(for: timeout)  // cancelled once the outcome came first
            await self?.expire(key, id)
        }
        defer { expiry.cancel() }
        return await withCheckedContinuation { waiters[key, default: [:]][id] = $0 }
    }

    private func expire(_ key: PullRequestKey, _ id: Int) {
        waiters[key]?.removeValue(forKey: id)?.resume(returning: nil)
    }
}

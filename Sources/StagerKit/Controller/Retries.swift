import Foundation

/// PRs whose environment this process created from a webhook and has not converged yet.
actor FreshKeys {
    private var keys: Set<PullRequestKey> = []

    func insert(_ key: PullRequestKey) { keys.insert(key) }

    /// Whether the key was fresh; it is not any more.
    func take(_ key: PullRequestKey) -> Bool { keys.remove(key) != nil }
}

/// Backoff per PR for transient failures (`Backoff.convergence`), and when each retry is due.
actor Retries {
    private var attempts: [PullRequestKey: Int] = [:]
    private var due: [PullRequestKey: ContinuousClock.Instant] = [:]

    /// Counts a failure and schedules the retry; returns its delay.
    func schedule(_ key: PullRequestKey) -> Duration {
        let attempt = attempts[key, default: 0]
        attempts[key] = attempt + 1
        let delay = Backoff.convergence.delay(after: attempt + 1)
        due[key] = ContinuousClock.now + delay
        return delay
    }

    /// The PRs whose retry is due now; they are no longer scheduled.
    func takeDue() -> [PullRequestKey] {
        let now = ContinuousClock.now
        let ready = due.filter { $0.value <= now }.keys.sorted { $0.description < $1.description }
        for key in ready { due[key] = nil }
        return ready
    }

    /// What caused the failures has passed (the engine answers again): every scheduled retry is due now.
    func bringForward() {
        let now = ContinuousClock.now
        for key in due.keys { due[key] = now }
    }

    /// A success: the next failure starts from the shortest delay again.
    func clear(_ key: PullRequestKey) {
        attempts[key] = nil
    }
}

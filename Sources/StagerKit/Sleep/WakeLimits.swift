import Synchronization

/// Bounds what strangers can make serve do through sleeping previews: how many requests it holds at once
/// (each is a connection and a waiting task) and how many environments requests wake in a minute (each
/// starts containers). Past either, the request is told to retry instead.
public final class WakeLimits: Sendable {
    /// One held request's place, given back when it is answered.
    public struct Hold: Sendable {
        let limits: WakeLimits
        public func release() { limits.state.withLock { $0.held -= 1 } }
    }

    private struct State {
        var held = 0
        var recentWakes: [(key: PullRequestKey, at: ContinuousClock.Instant)] = []
    }

    private let state = Mutex(State())
    private let maxHeld: Int
    private let wakesPerMinute: Int
    private let clock: ContinuousClock

    public init(maxHeld: Int, wakesPerMinute: Int, clock: ContinuousClock = ContinuousClock()) {
        self.maxHeld = maxHeld
        self.wakesPerMinute = wakesPerMinute
        self.clock = clock
    }

    /// A place for one more held request; nil when `maxHeld` are held already.
    public func hold() -> Hold? {
        let granted = state.withLock { state -> Bool in
            guard state.held < maxHeld else { return false }
            state.held += 1
            return true
        }
        return granted ? Hold(limits: self) : nil
    }

    /// Whether a request may wake the environment now; counts it when it may. An environment counts once a
    /// minute, however many of its requests come.
    public func mayWake(_ key: PullRequestKey) -> Bool {
        let now = clock.now
        return state.withLock { state in
            state.recentWakes.removeAll { now - $0.at > .seconds(60) }
            if state.recentWakes.contains(where: { $0.key == key }) { return true }
            guard state.recentWakes.count < wakesPerMinute else { return false }
            state.recentWakes.append((key, now))
            return true
        }
    }
}

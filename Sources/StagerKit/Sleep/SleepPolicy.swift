import Foundation

/// Which awake environments should sleep now: each idle for its repository's `sleep_after`, and beyond
/// `limits.max_awake` the least recently used of the rest. Pure: the controller asks it every few seconds.
public enum SleepPolicy {
    public static func due(_ environments: [Environment], config: StagerConfig, now: Date) -> [Environment] {
        let awake = environments.filter { $0.desired == .present && !$0.asleep && $0.status == .ready && config.repo($0.repo) != nil }
        let idle = awake.filter { env in
            guard let after = config.repo(env.repo)?.sleepAfter else { return false }
            return now.timeIntervalSince(env.lastUsedAt) >= after.seconds
        }
        let idleKeys = Set(idle.map(\.key))
        let rest = awake.filter { !idleKeys.contains($0.key) }
        guard let limit = config.limits.maxAwake, rest.count > limit else { return idle }
        return idle + rest.sorted { $0.lastUsedAt < $1.lastUsedAt }.prefix(rest.count - limit)
    }
}

extension StagerConfig {
    /// Whether any environment may be put to sleep by serve (`sleep_after` or `max_awake`).
    public var sleeps: Bool { limits.maxAwake != nil || repos.values.contains { $0.sleepAfter != nil } }
}

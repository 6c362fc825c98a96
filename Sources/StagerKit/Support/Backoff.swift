import Foundation

/// The one backoff policy: delays that double from `first` up to `longest`, with optional jitter (each
/// delay drawn between half and all of it, so clients that failed together do not retry together).
public struct Backoff: Sendable, Equatable {
    public var first: Duration
    public var longest: Duration
    public var jitter: Bool

    public init(first: Duration, longest: Duration, jitter: Bool = false) {
        self.first = first
        self.longest = longest
        self.jitter = jitter
    }

    /// The delay before attempt `attempt + 1`, counting attempts from 1.
    public func delay(after attempt: Int) -> Duration {
        var delay = min(first, longest)
        var step = 1
        while step < attempt, delay < longest {
            delay = min(delay * 2, longest)
            step += 1
        }
        return jitter ? delay * Double.random(in: 0.5...1.0) : delay
    }

    /// GitHub's answers: about 0.5 s, 1 s, 2 s … up to 30 s, with jitter.
    public static let github = Backoff(first: .milliseconds(500), longest: .seconds(30), jitter: true)
    /// A PR whose convergence failed for a passing reason (engine or nginx down): 1 s doubling to 60 s.
    public static let convergence = Backoff(first: .seconds(1), longest: .seconds(60))
}

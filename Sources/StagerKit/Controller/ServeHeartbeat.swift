import Foundation

/// Whether a `stager serve` on this data folder is up: it records a heartbeat every few seconds, and the
/// commands that only record desired state read it to know whether serve will carry the change out.
public struct ServeHeartbeat: Sendable {
    let store: Store

    public init(store: Store) {
        self.store = store
    }

    /// A beat within three intervals. A store that cannot be read counts as no serve: the command then
    /// says serve is not running rather than waiting for nothing.
    public func isBeating(now: Date = Date()) -> Bool {
        guard let beat = try? store.fact(Controller.heartbeatFact) else { return false }  // an unreadable store means no serve to wait for
        return now.timeIntervalSince(beat.at) < 3 * Controller.heartbeatEvery.seconds
    }
}

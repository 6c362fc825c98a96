import Foundation

/// The Docker engine did not answer (not running, restarting, socket gone): a transient fault, retried
/// with backoff, never a reason to mark a deploy failed.
public struct EngineUnavailable: Error, CustomStringConvertible, Equatable {
    public var message: String

    public var description: String { "the Docker engine is unavailable: \(message)" }

    /// What the docker CLI prints when it cannot reach the engine.
    /// (A container's own "no such file or directory" is a failed deploy, so only the CLI's own words count.)
    static let signs = ["Cannot connect to the Docker daemon", "Is the docker daemon running", "error during connect"]

    static func matches(_ message: String) -> Bool {
        signs.contains { message.localizedCaseInsensitiveContains($0) }
    }
}

/// Whether the engine answered the last time Stager asked, shown by `/api/environments`, the dashboard
/// and `stager ls` while `/healthz` stays 200.
public actor EngineHealth {
    public struct Down: Sendable, Equatable {
        public var since: Date
        public var message: String
    }

    public private(set) var down: Down?

    public init() {}

    public func failed(_ message: String) {
        if down == nil { down = Down(since: Date(), message: message) } else { down?.message = message }
    }

    public func answered() {
        down = nil
    }

    public static func describe(_ down: Down) -> String {
        "the Docker engine has not answered since \(ISO8601DateFormatter().string(from: down.since)): \(down.message)"
    }
}

import Foundation

/// Where a sleeping environment's vhost sends its requests: serve's wake route, with a token only the
/// vhost files carry, so nothing but nginx wakes an environment through it.
public struct WakePath: Sendable {
    /// serve as nginx reaches it, `host:port`.
    public var address: String
    public var token: String
    /// How long serve holds a request while the environment wakes (`sleep.wake_timeout`).
    public var holdFor: Duration

    public init(address: String, token: String, holdFor: Duration) {
        self.address = address
        self.token = token
        self.holdFor = holdFor
    }

    /// serve's own listen address (loopback when it listens on every address), the token kept in the store.
    public init(config: StagerConfig, store: Store) throws {
        let host = ["0.0.0.0", "*", "::", ""].contains(config.server.host) ? "127.0.0.1" : config.server.host
        self.init(address: host.contains(":") ? "[\(host)]:\(config.server.port)" : "\(host):\(config.server.port)",
                  token: try store.secret(named: Self.tokenFact), holdFor: config.wakeTimeout)
    }

    public static let route = "/_stager/wake"
    public static let tokenHeader = "x-stager-wake-token"
    /// The held request's own method: nginx asks serve with GET whatever the client used.
    public static let methodHeader = "x-stager-method"
    static let tokenFact = "wake.token"

    public func url(slug: String) -> String { "http://\(address)\(Self.route)/\(slug)" }
}

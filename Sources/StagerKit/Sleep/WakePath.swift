import Crypto
import Foundation

/// Where a sleeping environment's vhost sends its requests: serve's wake route, with a key for that one
/// environment that only its vhost file carries, so nothing but nginx wakes it, and a vhost wakes nothing
/// but its own environment.
public struct WakePath: Sendable {
    /// serve as nginx reaches it, `host:port`.
    public var address: String
    /// The keys the vhosts carry, all derived from one secret kept in the store.
    public var keys: VhostKeys
    /// How long serve holds a request while the environment wakes (`sleep.wake_timeout`).
    public var holdFor: Duration

    public init(address: String, token: String, holdFor: Duration) {
        self.address = address
        self.keys = VhostKeys(secret: token)
        self.holdFor = holdFor
    }

    /// serve's own listen address (loopback when it listens on every address), the token kept in the store.
    public init(config: StagerConfig, store: Store) throws {
        let host = ["0.0.0.0", "*", "::", ""].contains(config.server.host) ? "127.0.0.1" : config.server.host
        self.init(
            address: host.contains(":") ? "[\(host)]:\(config.server.port)" : "\(host):\(config.server.port)",
            token: try store.secret(named: Self.tokenFact),
            holdFor: config.wakeTimeout
        )
    }

    public static let route = "/_stager/wake"
    public static let tokenHeader = "x-stager-wake-token"
    /// The held request's own method: nginx asks serve with GET whatever the client used.
    public static let methodHeader = "x-stager-method"
    static let tokenFact = "wake.token"

    /// The one path a sleeping vhost asks serve at, whatever the visitor asked for.
    public func path(slug: String) -> String { "\(Self.route)/\(slug)" }
}

/// The keys Stager's vhosts carry, each derived from one secret (HMAC-SHA256 with a purpose), so a key of
/// one kind or one environment is worth nothing for another:
/// - `wake(slug:)`: what a sleeping vhost sends serve; it wakes that slug and no other.
/// - `handBack(slug:)`: the path segment of the internal location serve hands a held request back to; an
///   app cannot name it (and its X-Accel headers are ignored anyway).
/// - `probe`: the header Stager's confirmation through nginx sends to `/.stager-probe`.
/// - `hop`: the header the shared host sends on its hop back into nginx, once it checked the visitor's
///   address against the allow-list.
public struct VhostKeys: Sendable {
    private let secret: Data
    /// The same for every vhost, and sent with each of the confirmation's many probes: derived once.
    public let probe: String
    public let hop: String

    public init(secret: String) {
        self.secret = Data(secret.utf8)
        probe = Self.derive("probe", from: self.secret)
        hop = String(Self.derive("hop", from: self.secret).prefix(32))
    }

    public func wake(slug: String) -> String { Self.derive("wake:\(slug)", from: secret) }
    public func handBack(slug: String) -> String { String(Self.derive("hand-back:\(slug)", from: secret).prefix(32)) }

    public static let probeHeader = "X-Stager-Probe"

    private static func derive(_ purpose: String, from secret: Data) -> String {
        HMAC<SHA256>.authenticationCode(for: Data(purpose.utf8), using: SymmetricKey(data: secret)).map { String(format: "%02x", $0) }.joined()
    }
}

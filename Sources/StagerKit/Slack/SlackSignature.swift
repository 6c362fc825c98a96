import Crypto
import Foundation

/// Slack's v0 request signing: `X-Slack-Signature` is `v0=` and the hex HMAC-SHA256, keyed by the signing
/// secret, of `v0:` + `X-Slack-Request-Timestamp` + `:` + the raw body; a timestamp more than 300 s from
/// now is a replay.
public struct SlackSignature: Sendable {
    private let secret: Data

    public init(secret: String) {
        self.secret = Data(secret.utf8)
    }

    static let window: TimeInterval = 300

    /// Constant-time check; anything malformed or stale is simply invalid.
    public func isValid(signature: String?, timestamp: String?, body: Data, now: Date = Date()) -> Bool {
        guard let signature, let timestamp, let seconds = Int(timestamp), abs(now.timeIntervalSince1970 - Double(seconds)) <= Self.window,
            signature.hasPrefix("v0="), let mac = WebhookSignature.decodeHex(signature.dropFirst(3)), mac.count == SHA256.byteCount
        else {
            return false
        }
        return HMAC<SHA256>.isValidAuthenticationCode(mac, authenticating: Self.base(timestamp, body), using: SymmetricKey(data: secret))
    }

    /// The header Slack would send (the Slack stand-in and tests sign with it).
    public func signature(timestamp: String, body: Data) -> String {
        let mac = HMAC<SHA256>.authenticationCode(for: Self.base(timestamp, body), using: SymmetricKey(data: secret))
        return "v0=" + mac.map { String(format: "%02x", $0) }.joined()
    }

    private static func base(_ timestamp: String, _ body: Data) -> Data {
        Data("v0:\(timestamp):".utf8) + body
    }
}

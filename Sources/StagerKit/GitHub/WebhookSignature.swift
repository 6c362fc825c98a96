import Crypto
import Foundation

/// Verifies `X-Hub-Signature-256`: `sha256=` and the hex HMAC-SHA256 of the raw body keyed by the secret.
public struct WebhookSignature: Sendable {
    private let secret: Data

    public init(secret: String) {
        self.secret = Data(secret.utf8)
    }

    private var key: SymmetricKey { SymmetricKey(data: secret) }

    /// Constant-time check of the header against the body. Any malformed header is simply invalid.
    public func isValid(header: String?, body: some DataProtocol) -> Bool {
        guard let header, header.hasPrefix("sha256=") else { return false }
        guard let mac = Self.decodeHex(header.dropFirst("sha256=".count)), mac.count == SHA256.byteCount else { return false }
        return HMAC<SHA256>.isValidAuthenticationCode(mac, authenticating: body, using: key)
    }

    /// The header value for a body, as GitHub would send it (used by the demo and tests).
    public func header(for body: some DataProtocol) -> String {
        let mac = HMAC<SHA256>.authenticationCode(for: body, using: key)
        return "sha256=" + mac.map { String(format: "%02x", $0) }.joined()
    }

    static func decodeHex(_ text: Substring) -> [UInt8]? {
        guard text.utf8.count % 2 == 0 else { return nil }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(text.utf8.count / 2)
        var high: UInt8?
        for char in text.utf8 {
            let nibble: UInt8
            switch char {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): nibble = char - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): nibble = char - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): nibble = char - UInt8(ascii: "A") + 10
            default: return nil
            }
            if let h = high {
                bytes.append(h << 4 | nibble)
                high = nil
            } else {
                high = nibble
            }
        }
        return bytes
    }
}

/// The global webhook secret and the repositories' own. The signature is checked against them before the
/// body is parsed; once it is, the secret that matched must be the one of the delivery's repository.
public struct WebhookSecrets: Sendable {
    public enum Scope: Sendable, Equatable {
        case global
        case repo(String)
    }

    private let global: WebhookSignature
    private let perRepo: [(repo: String, signature: WebhookSignature)]

    public init(config: StagerConfig) {
        global = WebhookSignature(secret: config.webhookSecret)
        perRepo = config.repos.values.compactMap { repo in repo.webhookSecret.map { (repo.name, WebhookSignature(secret: $0)) } }
            .sorted { $0.repo < $1.repo }
    }

    /// Which secret signed the body; nil when none did.
    public func scope(header: String?, body: some DataProtocol) -> Scope? {
        // Every secret is tried, so the time taken does not tell which one matched.
        var found: Scope?
        if global.isValid(header: header, body: body) { found = .global }
        for (repo, signature) in perRepo where signature.isValid(header: header, body: body) {
            if found == nil { found = .repo(repo) }
        }
        return found
    }

    /// The scope a delivery for `repo` must have been signed with.
    public func expected(for repo: String) -> Scope {
        perRepo.contains { $0.repo == repo } ? .repo(repo) : .global
    }
}

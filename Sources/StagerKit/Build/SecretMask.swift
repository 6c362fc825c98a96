import Foundation

/// Hides tokens in text that leaves Stager (a build log tail in a PR comment): the configured token, and
/// anything shaped like a GitHub token.
public enum SecretMask {
    static let prefixes = ["ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"]
    /// What every prefix starts with.
    private static let tokenStart = Array("gh".utf8)

    public static func mask(_ text: String, secrets: [String]) -> String {
        // Every log line and page passes here, nearly always with nothing to hide: one look at the bytes
        // for each secret, and for "gh", before the costlier search-and-replace.
        let bytes = Array(text.utf8)
        var result = text
        for secret in secrets where secret.utf8.count >= 4 && bytes.firstRange(of: Array(secret.utf8)) != nil {
            result = result.replacingOccurrences(of: secret, with: "***")
        }
        guard bytes.firstRange(of: Self.tokenStart) != nil else { return result }
        for prefix in prefixes {
            var searchFrom = result.startIndex
            while let range = result.range(of: prefix, range: searchFrom..<result.endIndex) {
                var end = range.upperBound
                while end < result.endIndex, result[end].isASCII, result[end].isLetter || result[end].isNumber || result[end] == "_" {
                    end = result.index(after: end)
                }
                if result.distance(from: range.upperBound, to: end) >= 8 {
                    result.replaceSubrange(range.lowerBound..<end, with: "***")
                    searchFrom = result.index(range.lowerBound, offsetBy: 3, limitedBy: result.endIndex) ?? result.endIndex
                } else {
                    searchFrom = end
                }
            }
        }
        return result
    }
}

/// Every secret value the configuration holds, hidden from each text that leaves serve: comments and
/// deployment statuses (the GitHub client), pages and API answers, Slack messages and the log. A value is
/// looked for as it is and as a page or a JSON string would spell it.
public struct SecretValues: Sendable {
    /// Longest first, so a secret that contains another is hidden whole.
    private let spellings: [String]

    /// Values of `repos.X.env` shorter than this are settings (`production`, `8080`), not secrets: masking
    /// them would blank ordinary words everywhere.
    static let shortestEnvironmentValue = 8

    public init(_ values: [String]) {
        let spellings = values.filter { $0.count >= 4 }.flatMap { value in
            [value, HTMLEscaping.escape(value), Self.jsonSpelling(value)]
        }
        self.spellings = Array(Set(spellings)).sorted { $0.count > $1.count }
    }

    public init(config: StagerConfig) {
        var values = [
            config.webhookSecret, config.server.adminToken, config.github.token, config.slack.signingSecret,
            config.slack.webhookURL?.absoluteString,
        ].compactMap { $0 }
        for repo in config.repos.values {
            values += [repo.webhookSecret, repo.slackWebhookURL?.absoluteString].compactMap { $0 }
            let settings = Array(repo.env.values) + repo.services.flatMap { Array($0.env.values) }
            values += settings.filter { $0.count >= Self.shortestEnvironmentValue }
        }
        self.init(values)
    }

    public static let none = SecretValues([])

    public func mask(_ text: String) -> String {
        SecretMask.mask(text, secrets: spellings)
    }

    private static func jsonSpelling(_ value: String) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.withoutEscapingSlashes]
        guard let data = try? encoder.encode(value) else { return value }  // a String always encodes
        return String(decoding: data.dropFirst().dropLast(), as: UTF8.self)
    }
}

/// Hides tokens in text that leaves Stager (a build log tail in a PR comment): the configured token, and
/// anything shaped like a GitHub token.
public enum SecretMask {
    static let prefixes = ["ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"]

    public static func mask(_ text: String, secrets: [String]) -> String {
        var result = text
        for secret in secrets where secret.count >= 4 {
            result = result.replacingOccurrences(of: secret, with: "***")
        }
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

import Crypto
import Foundation

/// The DNS label naming an environment: derived from the branch, readable, and unique among environments.
/// Nothing of the raw branch name survives except a-z, 0-9 and '-'.
public enum Slug {
    public static let maxLength = 63
    private static let suffixLength = 6

    /// A valid DNS label: 1 to 63 of a-z, 0-9 and '-', neither starting nor ending with '-'.
    public static func isValidLabel(_ text: String) -> Bool {
        guard (1...maxLength).contains(text.utf8.count), text.first != "-", text.last != "-" else { return false }
        return text.utf8.allSatisfy { (0x61...0x7A).contains($0) || (0x30...0x39).contains($0) || $0 == 0x2D }
    }

    /// The readable part: lower-cased, every run of other characters turned into one '-', trimmed.
    /// Names longer than a label are cut and given a suffix hashed from the whole branch, so two long
    /// branches sharing a prefix still differ.
    public static func readable(branch: String) -> String {
        var out = ""
        var pendingDash = false
        for scalar in branch.lowercased().unicodeScalars {
            let isAllowed = ("a"..."z").contains(scalar) || ("0"..."9").contains(scalar)
            if isAllowed {
                if pendingDash, !out.isEmpty { out.append("-") }
                pendingDash = false
                out.unicodeScalars.append(scalar)
            } else {
                pendingDash = true
            }
        }
        if out.count > maxLength {
            out = withSuffix(String(out.prefix(maxLength)), seed: branch)
        }
        return out
    }

    /// The slug for a PR: `readable(branch)`, or with a stable suffix from repo and PR number when that is
    /// empty or already taken by another environment.
    public static func make(branch: String, repo: String, number: Int, isTaken: (String) throws -> Bool) rethrows -> String {
        let base = readable(branch: branch)
        if !base.isEmpty, try !isTaken(base) { return base }
        let stem = base.isEmpty ? "pr-\(number)" : base
        var candidate = withSuffix(stem, seed: "\(repo)#\(number)")
        var attempt = 1
        while try isTaken(candidate) {
            candidate = withSuffix(stem, seed: "\(repo)#\(number)#\(attempt)")
            attempt += 1
        }
        return candidate
    }

    private static func withSuffix(_ stem: String, seed: String) -> String {
        let digest = SHA256.hash(data: Data(seed.utf8)).map { String(format: "%02x", $0) }.joined()
        let room = maxLength - suffixLength - 1
        var head = String(stem.prefix(room))
        while head.hasSuffix("-") { head.removeLast() }
        return head.isEmpty ? String(digest.prefix(suffixLength)) : "\(head)-\(digest.prefix(suffixLength))"
    }
}

import Crypto
import Foundation
import StagerKit

/// Where the repository and the shared GitHub fixtures are, and signed payloads built from them.
public enum Fixtures {
    /// The repository's root, found from this file's path.
    public static let repoRoot: URL = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    /// `../shared/fixtures/github` beside the repository; nil in a clone without it.
    public static var shared: URL? {
        let url = repoRoot.deletingLastPathComponent().appendingPathComponent("shared/fixtures/github")
        return FileManager.default.fileExists(atPath: url.path) ? url : nil
    }

    /// The repository's own sample payload (examples/), always present.
    public static var samplePayload: Data {
        get throws { try Data(contentsOf: repoRoot.appendingPathComponent("examples/pull_request.opened.json")) }
    }

    /// A `pull_request` delivery built from the sample payload with the given fields replaced.
    /// `headRepo` other than `repo` makes it a fork PR; `label` and `sender` make a `labeled` event.
    public static func pullRequest(
        action: String,
        repo: String,
        number: Int,
        branch: String,
        sha: String,
        updatedAt: String = "2026-11-24T09:00:00Z",
        headRepo: String? = nil,
        label: String? = nil,
        sender: String? = nil,
        title: String? = nil,
        author: String? = nil
    ) throws -> Data {
        guard var root = try JSONSerialization.jsonObject(with: samplePayload) as? [String: Any],
            var pr = root["pull_request"] as? [String: Any], var head = pr["head"] as? [String: Any],
            var repository = root["repository"] as? [String: Any]
        else {
            throw CocoaError(.fileReadCorruptFile)
        }
        root["action"] = action
        root["number"] = number
        head["ref"] = branch
        head["sha"] = sha
        repository["full_name"] = repo
        repository["name"] = repo.split(separator: "/").last.map(String.init) ?? repo
        var headRepository = repository
        headRepository["full_name"] = headRepo ?? repo
        headRepository["clone_url"] = "https://github.com/\(headRepo ?? repo).git"
        head["repo"] = headRepository
        pr["head"] = head
        pr["number"] = number
        pr["updated_at"] = updatedAt
        if let title { pr["title"] = title }
        if let author { pr["user"] = ["login": author] }
        pr["state"] = action == "closed" ? "closed" : "open"
        root["pull_request"] = pr
        root["repository"] = repository
        if let label { root["label"] = ["name": label] }
        if let sender { root["sender"] = ["login": sender] }
        return try JSONSerialization.data(withJSONObject: root, options: [.sortedKeys])
    }

    /// A `push` delivery built from GitHub's real payloads in `../shared` (`push.json`, or `push.deleted.json`
    /// for a deleted branch) with the repository, the ref and the shas replaced.
    public static func push(repo: String, ref: String, after: String, deleted: Bool = false, before: String = Fixtures.sha("before")) throws -> Data {
        guard let folder = shared else { throw CocoaError(.fileNoSuchFile) }
        let file = folder.appendingPathComponent("webhooks/\(deleted ? "push.deleted" : "push").json")
        guard var root = try JSONSerialization.jsonObject(with: Data(contentsOf: file)) as? [String: Any],
            var repository = root["repository"] as? [String: Any]
        else {
            throw CocoaError(.fileReadCorruptFile)
        }
        root["ref"] = ref
        root["before"] = before
        root["after"] = deleted ? String(repeating: "0", count: 40) : after
        repository["full_name"] = repo
        repository["name"] = repo.split(separator: "/").last.map(String.init) ?? repo
        repository["clone_url"] = "https://github.com/\(repo).git"
        root["repository"] = repository
        return try JSONSerialization.data(withJSONObject: root, options: [.sortedKeys])
    }

    /// A 40-hex sha made from a seed, so tests can name commits readably.
    public static func sha(_ seed: String) -> String {
        SHA256.hash(data: Data(seed.utf8)).map { String(format: "%02x", $0) }.joined().prefix(40).description
    }
}

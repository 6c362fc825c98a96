import Foundation
import StagerKit
import StagerTestSupport
import Testing

/// A git repository made by the test, served as file://, whose Dockerfile writes the commit into the page.
struct GitFixture {
    let origin: URL
    let work: URL
    private let runner = SubprocessRunner()

    static let dockerfile = """
        FROM stager/busybox:local
        ARG SHA
        RUN echo "sha=$SHA" > /www/index.html
        CMD ["/bin/busybox", "httpd", "-f", "-p", "8080", "-h", "/www"]

        """

    init(in dir: URL) async throws {
        origin = dir.appendingPathComponent("origin.git")
        work = dir.appendingPathComponent("work")
        try await runner.check(Command("git", ["init", "--quiet", "--bare", origin.path]))
        try await runner.check(Command("git", ["init", "--quiet", work.path]))
        for (key, value) in [("user.email", "dev@example.com"), ("user.name", "Dev")] {
            try await runner.check(Command("git", ["-C", work.path, "config", key, value]))
        }
    }

    /// Commits `dockerfile` (with a line that makes the commit unique) and pushes it; returns the sha.
    func commit(_ dockerfile: String, note: String) async throws -> String {
        let file = work.appendingPathComponent("Dockerfile")
        try? FileManager.default.removeItem(at: file)  // a symlink a test committed before, if any
        try dockerfile.write(to: file, atomically: true, encoding: .utf8)
        return try await commit(note: note)
    }

    /// Commits `links` (path in the checkout → where the symlink points) as they are, and pushes them.
    func commit(links: [String: String], note: String) async throws -> String {
        for (path, target) in links {
            let link = work.appendingPathComponent(path)
            try? FileManager.default.removeItem(at: link)  // what was committed there before
            try FileManager.default.createSymbolicLink(atPath: link.path, withDestinationPath: target)
        }
        return try await commit(note: note)
    }

    private func commit(note: String) async throws -> String {
        try note.write(to: work.appendingPathComponent("NOTE"), atomically: true, encoding: .utf8)
        try await runner.check(Command("git", ["-C", work.path, "add", "-A"]))
        try await runner.check(Command("git", ["-C", work.path, "commit", "--quiet", "-m", note]))
        try await runner.check(Command("git", ["-C", work.path, "push", "--quiet", "--force", origin.path, "HEAD:refs/heads/feature"]))
        return try await runner.check(Command("git", ["-C", work.path, "rev-parse", "HEAD"])).standardOutput.trimmingCharacters(
            in: .whitespacesAndNewlines
        )
    }
}

/// Building from the branch on the real engine: a PR's own Dockerfile at its exact sha, superseded builds
/// stopped, failures that keep the previous version serving, and a commit never built twice.
@Suite("End to end: building from the branch", .serialized, .enabled(if: E2EHarness.available))
struct BuildTests {
    static func repo(origin: URL) -> String {
        """
          acme/built:
            build:
              args: {SHA: "{{sha}}"}
            clone_url: "file://\(origin.path)"
            port: 8080
            health_timeout: "30s"

        """
    }

    static let allowFiles = "build:\n  allowed_hosts: []\n  allow_file_urls: true"

    func imageID(_ tag: String) async -> String? {
        let result = try? await SubprocessRunner().run(Command("docker", ["image", "inspect", "--format", "{{.Id}}", tag]))
        return result?.succeeded == true ? result?.standardOutput.trimmingCharacters(in: .whitespacesAndNewlines) : nil
    }

    @Test func buildsEachCommitStopsSupersededBuildsAndKeepsTheLastGoodOneServing() async throws {
        let dir = try TestConfig.temporaryDirectory("e2e-git")
        defer { try? FileManager.default.removeItem(at: dir) }
        let git = try await GitFixture(in: dir)
        let built: @Sendable (String) -> String = { "stager/acme-built:\($0)" }
        var tags: [String] = []
        defer {
            let cleanup = tags
            Task { for tag in cleanup { _ = try? await SubprocessRunner().run(Command("docker", ["image", "rm", "-f", tag])) } }
        }
        try await E2EHarness.run(name: "build", extraRepos: Self.repo(origin: git.origin), extraConfig: Self.allowFiles) { harness throws in
            let store = try #require(harness.app?.store)
            let key = PullRequestKey(repo: "acme/built", number: 1)

            // Opened: built from the exact sha and served.
            let sha1 = try await git.commit(GitFixture.dockerfile, note: "one")
            tags.append(built(sha1))
            try await harness.send("opened", number: 1, branch: "feature", sha: sha1, repo: "acme/built")
            #expect(try await harness.waitSettled(1, repo: "acme/built", status: .ready, timeout: .seconds(120)))
            #expect(await harness.throughNginx(slug: "feature")?.body.contains("sha=\(sha1)") == true)
            #expect(try store.auditEvents(for: key).contains { $0.kind == "build" && $0.message == "building \(built(sha1))" })

            // A push: the new commit is built and served.
            let sha2 = try await git.commit(GitFixture.dockerfile, note: "two")
            tags.append(built(sha2))
            try await harness.send("synchronize", number: 1, branch: "feature", sha: sha2, updatedAt: "2026-11-24T09:01:00Z", repo: "acme/built")
            #expect(try await harness.waitUntil(timeout: .seconds(120)) { try harness.environment(1, repo: "acme/built")?.deployedSha == sha2 })
            #expect(await harness.throughNginx(slug: "feature")?.body.contains("sha=\(sha2)") == true)

            // A push during a slow build stops that build; only the newest commit is built and deployed.
            let slow = try await git.commit(GitFixture.dockerfile.replacingOccurrences(of: "ARG SHA", with: "RUN sleep 60\nARG SHA"), note: "slow")
            tags.append(built(slow))
            try await harness.send("synchronize", number: 1, branch: "feature", sha: slow, updatedAt: "2026-11-24T09:02:00Z", repo: "acme/built")
            let log = ImageBuilder.logFile(dataDir: harness.dir.appendingPathComponent("data"), key: key)
            #expect(
                try await harness.waitUntil(timeout: .seconds(60)) {
                    (try? String(contentsOf: log, encoding: .utf8))?.contains("RUN sleep 60") == true
                }
            )
            #expect(try harness.environment(1, repo: "acme/built")?.status == .building)
            let sha3 = try await git.commit(GitFixture.dockerfile, note: "three")
            tags.append(built(sha3))
            try await harness.send("synchronize", number: 1, branch: "feature", sha: sha3, updatedAt: "2026-11-24T09:03:00Z", repo: "acme/built")
            #expect(try await harness.waitUntil(timeout: .seconds(120)) { try harness.environment(1, repo: "acme/built")?.deployedSha == sha3 })
            #expect(try await harness.waitSettled(1, repo: "acme/built", status: .ready))
            #expect(await harness.throughNginx(slug: "feature")?.body.contains("sha=\(sha3)") == true)
            #expect(await imageID(built(slow)) == nil)
            let events = try store.auditEvents(for: key, limit: 500)
            #expect(events.contains { $0.message == "build of \(slow.prefix(12)) stopped: a newer commit arrived" })
            #expect(!events.contains { $0.kind == "deploy" && $0.sha == slow })
            // The stopped docker build is gone, and so is every work folder.
            let running = try await SubprocessRunner().run(Command("pgrep", ["-f", built(slow)]))
            #expect(running.standardOutput.isEmpty)
            let work = ImageBuilder.workRoot(dataDir: harness.dir.appendingPathComponent("data"))
            #expect(((try? FileManager.default.contentsOfDirectory(atPath: work.path)) ?? []).isEmpty)

            // A broken Dockerfile: failed, with the log's tail in the comment, and the previous commit still serving.
            let broken = try await git.commit(
                GitFixture.dockerfile.replacingOccurrences(of: "ARG SHA", with: "RUN echo broken-step && exit 3\nARG SHA"),
                note: "broken"
            )
            try await harness.send("synchronize", number: 1, branch: "feature", sha: broken, updatedAt: "2026-11-24T09:04:00Z", repo: "acme/built")
            #expect(try await harness.settledStatus(1, repo: "acme/built", timeout: .seconds(120)) == .failed)
            let comment = try #require(await harness.github.comments(on: "acme/built", issue: 1).first)
            #expect(comment.body.contains("docker build failed (exit 3)"))
            #expect(comment.body.contains("Last lines of the build log") && comment.body.contains("broken-step"))
            #expect(comment.body.contains("The previous version (\(sha3.prefix(12))) still serves"))
            #expect(await harness.throughNginx(slug: "feature")?.body.contains("sha=\(sha3)") == true)

            // `stager logs --build` prints the last build's log.
            let printed = try await harness.stager(["logs", "acme/built#1", "--build", "--tail", "40"])
            #expect(printed.exitCode == 0 && printed.standardOutput.contains("broken-step"), "\(printed.standardError)")

            // The same commit deployed again (closed, then reopened) builds nothing: the image is the one already there.
            let before = try #require(await imageID(built(sha3)))
            try await harness.send("closed", number: 1, branch: "feature", sha: broken, updatedAt: "2026-11-24T09:05:00Z", repo: "acme/built")
            #expect(try await harness.waitUntil(timeout: .seconds(60)) { try harness.environment(1, repo: "acme/built")?.status == .removed })
            try await harness.send("reopened", number: 1, branch: "feature", sha: sha3, updatedAt: "2026-11-24T09:06:00Z", repo: "acme/built")
            #expect(try await harness.waitSettled(1, repo: "acme/built", status: .ready, timeout: .seconds(60)))
            #expect(try store.auditEvents(for: key, limit: 20).contains { $0.message == "\(built(sha3)) was built before: nothing to build" })
            #expect(await imageID(built(sha3)) == before)
            #expect(await harness.throughNginx(slug: "feature")?.body.contains("sha=\(sha3)") == true)

            // No token in the data folder (the build log, the database, the work folders).
            let data = harness.dir.appendingPathComponent("data")
            for case let file as URL in FileManager.default.enumerator(at: data, includingPropertiesForKeys: nil) ?? NSEnumerator() {
                guard let text = try? String(contentsOf: file, encoding: .utf8) else { continue }
                #expect(!text.contains(harness.token), "\(file.path)")
            }
        }
    }
}

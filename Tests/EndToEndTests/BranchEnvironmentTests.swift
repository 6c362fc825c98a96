import Foundation
import StagerKit
import StagerTestSupport
import Testing

/// Long-lived environments of branches (`repos.X.branches`) from GitHub's `push` deliveries: deployed at each
/// push's `after`, removed only when the branch is deleted, never touched by pull requests, and one of the
/// names the shared host chooses from.
@Suite("End to end: branch environments", .enabled(if: E2EHarness.available && Fixtures.shared != nil))
struct BranchEnvironmentTests {
    static let repo = "acme/branches"
    /// A branch name git accepts that would break nginx's configuration if it reached it raw.
    static let hostile = #"qa/x";}$(id){#'"#
    let probe = HTTPProbe(timeout: .seconds(10))
    let runner = SubprocessRunner()

    func shared(_ harness: E2EHarness, headers: [String: String] = [:]) async throws -> ProbeAnswer {
        try await probe.get(host: "127.0.0.1", port: harness.nginxPort, path: "/", hostHeader: "acme-branches.preview.localhost", headers: headers)
    }

    /// The labels of the environment's app container (`stager.pr` and `stager.branch`), then its variables.
    func labels(_ harness: E2EHarness, _ env: StagerKit.Environment) async throws -> String {
        let id = try #require(env.containerID)
        let format = #"pr={{index .Config.Labels "stager.pr"}} branch={{index .Config.Labels "stager.branch"}} {{range .Config.Env}}{{.}} {{end}}"#
        return try await runner.check(Command("docker", ["inspect", "--format", format, id])).standardOutput.trimmingCharacters(
            in: .whitespacesAndNewlines
        )
    }

    @Test func aPushDeploysTheBranchAPullRequestNeverRemovesItAndItsDeletionDoes() async throws {
        let hostileYAML = "'" + Self.hostile.replacingOccurrences(of: "'", with: "''") + "'"
        let extra = "branches: [main, \(hostileYAML)]\nshared_host: acme-branches\ndefault_env: main"
        try await E2EHarness.run(name: "branches", extraRepos: E2EHarness.servingRepo(Self.repo, extra), extraGitHub: "  deployments: true") {
            harness in
            // A push to a configured branch: accepted, deployed at `after`, at the branch's own address.
            let first = Fixtures.sha("main-1")
            let delivery = UUID().uuidString
            let (status, message) = try await harness.push("main", after: first, repo: Self.repo, delivery: delivery)
            #expect(status == 202 && message.contains("pushed for acme/branches@main"), "\(status) \(message)")
            #expect(try await harness.waitBranch("main", repo: Self.repo, status: .ready))
            let main = try #require(try harness.branchEnvironment("main", repo: Self.repo))
            #expect(main.slug == "main" && main.kind == .branch && main.number < 0 && main.deployedSha == first, "\(main)")
            #expect(try await harness.waitUntil { await harness.throughNginx(slug: "main")?.body.contains("sha=\(first) branch=main") == true })
            // Labelled as a branch's: `stager.branch` set, `stager.pr` absent.
            let inspected = try await labels(harness, main)
            #expect(
                inspected.hasPrefix("pr= branch=main ") && inspected.contains("STAGER_BRANCH=main") && !inspected.contains("STAGER_PR="),
                "\(inspected)"
            )
            // No PR to comment on; a GitHub deployment named by the branch, not transient.
            #expect(await harness.github.count("POST", pathSuffix: "/comments") == 0)
            let deployment = try #require(await harness.github.deployments.first { $0.repo == Self.repo })
            #expect(deployment.environment == "main" && !deployment.transient && deployment.ref == first, "\(deployment)")
            #expect(
                try await harness.waitUntil {
                    await harness.github.deployments.first { $0.repo == Self.repo }?.statuses.contains { $0.state == "success" } == true
                }
            )

            // Verified and deduplicated like any delivery.
            let again = try await harness.push("main", after: first, repo: Self.repo, delivery: delivery)
            #expect(again.0 == 200 && again.1.contains("duplicate"), "\(again)")
            let forged = try await harness.post(
                try Fixtures.push(repo: Self.repo, ref: "refs/heads/main", after: first),
                event: "push",
                secret: "not-the-secret"
            )
            #expect(forged.0 == 401)
            let other = try await harness.push("feature-x", after: first, repo: Self.repo)
            #expect(other.0 == 200 && other.1.contains("ignored"), "\(other)")
            let tag = try await harness.post(try Fixtures.push(repo: Self.repo, ref: "refs/tags/main", after: first), event: "push")
            #expect(tag.0 == 200 && tag.1.contains("ignored"), "\(tag)")

            // A second push: the same address, the new sha, one app.
            let second = Fixtures.sha("main-2")
            try await harness.push("main", after: second, repo: Self.repo)
            #expect(
                try await harness.waitUntil(timeout: .seconds(60)) {
                    let served = await harness.throughNginx(slug: "main")?.body.contains("sha=\(second)") == true
                    return try served && harness.branchEnvironment("main", repo: Self.repo)?.deployedSha == second
                }
            )
            #expect(try harness.branchEnvironment("main", repo: Self.repo)?.slug == "main")
            #expect(
                try await harness.waitUntil { try await harness.containers().filter { $0.repo == Self.repo && $0.number == main.number }.count == 1 }
            )

            // A pull request from a branch called main does not take the branch's address; closing it leaves the branch's environment.
            try await harness.send("opened", number: 7, branch: "main", sha: Fixtures.sha("pr-7"), repo: Self.repo, headRepo: "someone/branches")
            try await harness.send("opened", number: 8, branch: "feature", sha: Fixtures.sha("pr-8"), repo: Self.repo)
            #expect(try await harness.waitSettled(8, repo: Self.repo, status: .ready))
            #expect(try harness.environment(7, repo: Self.repo)?.slug != "main")
            try await harness.send(
                "closed",
                number: 8,
                branch: "feature",
                sha: Fixtures.sha("pr-8"),
                updatedAt: "2026-11-24T10:00:00Z",
                repo: Self.repo
            )
            #expect(try await harness.waitUntil { try harness.environment(8, repo: Self.repo)?.status == .removed })
            #expect(try harness.branchEnvironment("main", repo: Self.repo)?.status == .ready)
            #expect(await harness.throughNginx(slug: "main")?.body.contains("sha=\(second)") == true)

            // A hostile branch name reaches nginx only as its slug, in its vhost and in the shared host's maps.
            let hostileSha = Fixtures.sha("hostile")
            try await harness.push(Self.hostile, after: hostileSha, repo: Self.repo)
            #expect(try await harness.waitBranch(Self.hostile, repo: Self.repo, status: .ready))
            #expect(try harness.branchEnvironment(Self.hostile, repo: Self.repo)?.slug == "qa-x-id")
            #expect(
                try await harness.waitUntil(timeout: .seconds(30)) {
                    let plain = try await shared(harness)
                    let chosen = try await shared(harness, headers: ["X-Stager-Env": "qa-x-id"])
                    return plain.headers["x-stager-env"] == "main" && plain.body.contains("sha=\(second)")
                        && chosen.headers["x-stager-env"] == "qa-x-id" && chosen.body.contains("sha=\(hostileSha)")
                }
            )

            // Commands name it OWNER/NAME@BRANCH: `ls` shows it, `logs` reads its app, `sleep` stops it; a branch without one is an error.
            let table = try await harness.stager(["ls"]).standardOutput
            #expect(table.contains("branch") && table.contains("http://main.preview.localhost"), "\(table)")
            let logs = try await harness.stager(["logs", "acme/branches@main", "--tail", "5"])
            #expect(logs.exitCode == 0, "\(logs.message)")
            let dashboard = try await harness.get("/").body
            #expect(dashboard.contains(">branch main</a>"), "\(dashboard.prefix(3000))")
            let redeploy = try await harness.stager(["deploy", "acme/branches@main", "--no-wait"])
            #expect(
                redeploy.exitCode == 0 && redeploy.standardOutput.contains("deploy acme/branches@main (main) at \(second.prefix(12)) recorded"),
                "\(redeploy.standardOutput) \(redeploy.message)"
            )
            #expect(try await harness.waitBranch("main", repo: Self.repo, status: .ready))
            let slept = try await harness.stager(["sleep", "acme/branches@main", "--no-wait"])
            #expect(
                slept.exitCode == 0 && slept.standardOutput.contains("sleep acme/branches@main recorded"),
                "\(slept.standardOutput) \(slept.message)"
            )
            #expect(try await harness.waitBranch("main", repo: Self.repo, status: .sleeping))
            let none = try await harness.stager(["destroy", "acme/branches@staging", "--no-wait"])
            #expect(none.exitCode != 0 && none.message.contains("acme/branches@staging has no environment"), "\(none.message)")

            // The API says which kind each environment is.
            let listed = try await harness.get("/api/environments").body
            #expect(listed.contains(#""kind":"branch""#) && listed.contains(#""name":"main""#) && listed.contains(#""name":"qa-x-id""#), "\(listed)")

            // Deleting the branch removes its environment: the container, the vhost, and the shared host's default.
            let deleted = try await harness.push("main", after: second, deleted: true, repo: Self.repo)
            #expect(deleted.0 == 202 && deleted.1.contains("deleted for acme/branches@main"), "\(deleted)")
            #expect(try await harness.waitBranch("main", repo: Self.repo, status: .removed))
            #expect(!harness.vhosts().contains("main.conf"))
            #expect(try await harness.containers().filter { $0.repo == Self.repo && $0.number == main.number }.isEmpty)
            #expect(
                try await harness.waitUntil(timeout: .seconds(30)) {
                    let plain = try await shared(harness)
                    return plain.status == 503
                }
            )
            // A deleted branch that has no environment is nothing to do.
            let unknown = try await harness.push("never-pushed", after: second, deleted: true, repo: Self.repo)
            #expect(unknown.0 == 200 && unknown.1.contains("ignored"), "\(unknown)")
        }
    }
}

/// A branch of a repository built from its source: each push builds the pushed commit.
@Suite("End to end: a branch built from its source", .enabled(if: E2EHarness.available && Fixtures.shared != nil))
struct BuiltBranchTests {
    @Test func eachPushBuildsThePushedCommit() async throws {
        let dir = try TestConfig.temporaryDirectory("e2e-branch-git")
        defer { try? FileManager.default.removeItem(at: dir) }
        let git = try await GitFixture(in: dir)
        let repos = BuildTests.repo(origin: git.origin) + "    branches: [main]\n"
        try await E2EHarness.run(name: "built-branch", extraRepos: repos, extraConfig: BuildTests.allowFiles) { harness in
            for note in ["first", "second"] {
                let sha = try await git.commit(GitFixture.dockerfile, note: note)
                try await harness.push("main", after: sha, repo: "acme/built")
                #expect(
                    try await harness.waitUntil(timeout: .seconds(180)) {
                        let env = try harness.branchEnvironment("main", repo: "acme/built")
                        return env?.status == .ready && env?.deployedSha == sha
                    }
                )
                #expect(try await harness.waitUntil { await harness.throughNginx(slug: "main")?.body.contains("sha=\(sha)") == true })
            }
            // Its page in the API (by its negative number) has both builds in its history.
            let env = try #require(try harness.branchEnvironment("main", repo: "acme/built"))
            let page = try await harness.get("/api/environments/acme/built/\(env.number)")
            #expect(page.status == 200 && page.body.components(separatedBy: #""kind":"build""#).count >= 3, "\(page.body.prefix(3000))")
        }
    }
}

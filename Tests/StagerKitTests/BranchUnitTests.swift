import Foundation
import StagerTestSupport
import Testing

@testable import StagerKit

/// Branch environments' pieces: `repos.X.branches` and the names it gives, `push` payloads, the keys the
/// store gives branches, their labels, and what a PR's rules leave alone (end to end: `branch environments`).
@Suite("Branch environments: units")
struct BranchUnitTests {
    @Test func configurationNamesBranchesByTheirSlugs() throws {
        let config = try TestConfig.load(
            """
            repos:
              acme/web: {image: "x", branches: [main, "release/2.0"], shared_host: acme-web, default_env: "release/2.0", canary: {env: main, percent: 5}}
            """,
            in: try TestConfig.temporaryDirectory("branch-config")
        )
        let repo = try #require(config.repo("acme/web"))
        #expect(repo.branches == ["main", "release/2.0"])
        #expect(repo.sharedHost?.defaultEnv == "release-2-0" && repo.sharedHost?.canary?.env == "main")
        #expect(config.branchSlugs == ["main", "release-2-0"])
        // A PR's name, two branches of one name, no name at all, a name git refuses, an unconfigured default.
        #expect(TestConfig.refusedKey("repos:\n  a/b: {image: x, branches: [pr-3]}\n") == "repos.a/b.branches")
        #expect(TestConfig.refusedKey("repos:\n  a/b: {image: x, branches: [a/b, a-b]}\n") == "repos.a/b.branches")
        #expect(TestConfig.refusedKey("repos:\n  a/b: {image: x, branches: [\"//\"]}\n") == "repos.a/b.branches")
        #expect(TestConfig.refusedKey("repos:\n  a/b: {image: x, branches: [\"a b\"]}\n") == "repos.a/b.branches")
        #expect(
            TestConfig.refusedKey("repos:\n  a/b: {image: x, branches: [main], shared_host: ab, default_env: staging}\n") == "repos.a/b.default_env"
        )
        #expect(
            TestConfig.refusedKey("repos:\n  a/b: {image: x, branches: [main], shared_host: ab, default_env: main, canary: {env: qa, percent: 5}}\n")
                == "repos.a/b.canary.env"
        )
        // A branch whose slug is a shared host's address.
        #expect(
            TestConfig.refusedKey("repos:\n  a/b: {image: x, shared_host: ab, default_env: pr-1}\n  c/d: {image: y, branches: [ab]}\n")
                == "repos.c/d.branches"
        )
    }

    @Test func pushPayloadsFromGitHub() throws {
        let folder = try #require(Fixtures.shared).appendingPathComponent("webhooks")
        let push = try WebhookPayload.decodePush(Data(contentsOf: folder.appendingPathComponent("push.json")))
        #expect(push.branch == "main" && push.after == "366701fde727cb7a9e7f21eb88264f59f6f9b89c" && push.intent == .deploy(sha: push.after))
        #expect(push.repository.full_name == "woodpecker-ci/woodpecker" && push.sender?.login == "6543")
        let deleted = try WebhookPayload.decodePush(Data(contentsOf: folder.appendingPathComponent("push.deleted.json")))
        #expect(deleted.branch == "feature-branch" && deleted.intent == .teardown)

        let tag = try WebhookPayload.decodePush(Fixtures.push(repo: "a/b", ref: "refs/tags/v1", after: Fixtures.sha("t")))
        #expect(tag.branch == nil)
        func failure(_ body: Data) -> WebhookPayload.Failure? {
            do {
                _ = try WebhookPayload.decodePush(body)
                return nil
            } catch { return error as? WebhookPayload.Failure }
        }
        #expect(failure(Data("[]".utf8)) == .notJSON)
        #expect(failure(Data(#"{"ref": "refs/heads/main", "repository": {"full_name": "a/b"}}"#.utf8)) == .missingField("after"))
        #expect(
            failure(Data(#"{"ref": "refs/heads/main", "after": "\#(String(repeating: "0", count: 40))", "repository": {"full_name": "a/b"}}"#.utf8))
                == .missingField("after")
        )
        #expect(
            failure(Data(#"{"ref": "refs/heads/a\u0001", "after": "abcdef12", "repository": {"full_name": "a/b"}}"#.utf8)) == .missingField("ref")
        )
    }

    @Test func commandsNameABranchsEnvironmentWithAnAt() {
        #expect(EnvironmentReference(parsing: "acme/web#12") == .pullRequest(PullRequestKey(repo: "acme/web", number: 12)))
        #expect(EnvironmentReference(parsing: "acme/web@release/2.0") == .branch(repo: "acme/web", branch: "release/2.0"))
        #expect(EnvironmentReference(parsing: "acme/web@release/2.0")?.description == "acme/web@release/2.0")
        for bad in ["acme/web", "acme/web@", "acme@main", "/web@main", "acme/web/x@main", "acme/web#0", "acme/web@a\u{7}b"] {
            #expect(EnvironmentReference(parsing: bad) == nil, "\(bad)")
        }
    }

    /// Only the branch's deletion removes its environment: not gc's look at PR states, not `idle_ttl`.
    @Test func gcLeavesABranchsEnvironmentAlone() async {
        let longAgo = Date().addingTimeInterval(-30 * 24 * 3600)
        func env(_ number: Int, branch: String) -> Environment {
            Environment(
                repo: "acme/web",
                number: number,
                slug: branch,
                branch: branch,
                title: "",
                author: "",
                headRepo: "acme/web",
                desired: .present,
                desiredSha: Fixtures.sha(branch),
                desiredVersion: 1,
                appliedVersion: 1,
                sourceUpdatedAt: "",
                status: .ready,
                commentPending: false,
                createdAt: longAgo,
                updatedAt: longAgo,
                lastActivityAt: longAgo,
                admitted: true,
                waitingSince: nil
            )
        }
        let main = env(-1, branch: "main")
        let pull = env(4, branch: "feature")
        // GitHub's open list has neither: the PR is then looked up alone (no client: unknown); the branch is never asked about.
        let states = await PullRequestStates(client: nil).states(of: [main.key, pull.key], open: ["acme/web": .success([])])
        #expect(states[main.key] == nil && states[pull.key] != nil)
        let plan = GcPlan(
            .init(
                environments: [main, pull],
                containers: [],
                managedVhosts: [],
                foreignFiles: [],
                states: [pull.key: .open],
                missing: [],
                configuredRepos: ["acme/web"],
                idleTTL: .seconds(3600),
                now: Date()
            )
        )
        #expect(plan.environments.map(\.env.number) == [4])
    }

    @Test func theStoreGivesEachBranchANegativeNumberForGood() async throws {
        let store = try Store(path: try TestConfig.temporaryDirectory("branch-keys").appendingPathComponent("stager.sqlite"))
        #expect(try await store.branchKey(repo: "a/b", branch: "main", create: false) == nil)
        #expect(try await store.branchKey(repo: "a/b", branch: "main", create: true) == PullRequestKey(repo: "a/b", number: -1))
        #expect(try await store.branchKey(repo: "a/b", branch: "staging", create: true) == PullRequestKey(repo: "a/b", number: -2))
        #expect(try await store.branchKey(repo: "a/b", branch: "main", create: false) == PullRequestKey(repo: "a/b", number: -1))
        #expect(try await store.branchKey(repo: "c/d", branch: "main", create: true) == PullRequestKey(repo: "c/d", number: -1))
    }

    @Test func labelsFiltersAndNamesOfABranchEnvironment() {
        let key = PullRequestKey(repo: "a/b", number: -2)
        #expect(key.isBranch && !PullRequestKey(repo: "a/b", number: 2).isBranch)
        #expect(ContainerLabels.owner(key) == ["stager.branch-env": "-2"])
        #expect(ContainerLabels.owner(PullRequestKey(repo: "a/b", number: 2)) == ["stager.pr": "2"])
        #expect(DockerCLI.filters(instance: "i", key: key).suffix(2) == ["--filter", "label=stager.branch-env=-2"])
        // docker prints both labels side by side: only one is set.
        #expect(DockerCLI.listFormat.contains(#"{{.Label "stager.pr"}}{{.Label "stager.branch-env"}}"#))
        let line = ["id", "name", "running", "a/b", "-2", "sha", "main", "127.0.0.1:4000->8080/tcp", "app", "", ""].joined(separator: "\t")
        #expect(DockerCLI.parseList(line).first?.key == key)

        var env = Environment(
            repo: "a/b",
            number: -2,
            slug: "release-2-0",
            branch: "release/2.0",
            title: "branch release/2.0",
            author: "",
            headRepo: "a/b",
            desired: .present,
            desiredSha: Fixtures.sha("x"),
            desiredVersion: 1,
            appliedVersion: 0,
            sourceUpdatedAt: "",
            status: .queued,
            commentPending: false,
            createdAt: Date(),
            updatedAt: Date(),
            lastActivityAt: Date(),
            admitted: true,
            waitingSince: nil
        )
        #expect(env.kind == .branch && env.name == "release-2-0" && env.displayName == "a/b@release/2.0")
        // A push to the repository itself needs no approval, whatever the PR rules say.
        #expect(Gate.approval(env, requireLabel: true, allowForks: false) == .notNeeded)
        env.number = 3
        #expect(env.kind == .pullRequest && env.name == "pr-3" && Gate.approval(env, requireLabel: true, allowForks: false) == .blocked)
    }
}

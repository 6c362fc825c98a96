import Foundation
import StagerTestSupport
import Testing

@testable import StagerKit

/// One contract, two repositories: the SQLite store serve runs on and the in-memory twin the controller's
/// tests run on. Each test runs against both, so the twin cannot drift from the store unnoticed.
@Suite("Environment repositories: one contract")
struct EnvironmentRepositoryContractTests {
    enum Kind: String, CaseIterable, CustomTestStringConvertible {
        case sqlite, inMemory
        var testDescription: String { rawValue }
    }

    func make(_ kind: Kind) throws -> any EnvironmentRepository {
        switch kind {
        case .sqlite:
            let dir = try TestConfig.temporaryDirectory("repository-contract")
            return try Store(path: dir.appendingPathComponent("stager.sqlite")).environments
        case .inMemory:
            return InMemoryEnvironments()
        }
    }

    let repo = "acme/web"

    func change(_ number: Int, _ intent: Intent, repo: String? = nil) -> DesiredStateChange {
        DesiredStateChange(
            id: UUID().uuidString,
            key: PullRequestKey(repo: repo ?? self.repo, number: number),
            intent: intent,
            pullRequest: PullRequestFacts(branch: "feature-\(number)", headSha: Fixtures.sha("c\(number)"), headRepo: repo ?? self.repo),
            action: intent == .teardown ? "closed" : "synchronize",
            source: .webhook
        )
    }

    func key(_ number: Int, repo: String? = nil) -> PullRequestKey { PullRequestKey(repo: repo ?? self.repo, number: number) }

    @Test(arguments: Kind.allCases)
    func aDeployIsPendingUntilAppliedAndAppliedNeverGoesBack(_ kind: Kind) async throws {
        let environments = try make(kind)
        let sha = Fixtures.sha("c1")
        #expect(try await environments.recordChange(change(1, .deploy(sha: sha))) == .accepted(version: 1))
        let env = try #require(try await environments.environment(key(1)))
        #expect(env.desired == .present && env.desiredSha == sha && env.desiredVersion == 1 && env.appliedVersion == 0)
        #expect(try await environments.pendingVersions() == [key(1): 1])
        #expect(try await environments.desiredVersion(key(1)) == 1)

        try await environments.markApplied(key(1), version: 1)
        #expect(try await environments.pendingVersions().isEmpty)
        try await environments.markApplied(key(1), version: 0)
        #expect(try await environments.environment(key(1))?.appliedVersion == 1)

        #expect(try await environments.recordChange(change(1, .teardown)) == .accepted(version: 2))
        #expect(try await environments.environment(key(1))?.desired == .absent)
        #expect(try await environments.pendingVersions() == [key(1): 2])
        #expect(try await environments.environment(key(2)) == nil)
        #expect(try await environments.desiredVersion(key(2)) == nil)
    }

    @Test(arguments: Kind.allCases)
    func sleepAndWakeChangeOnlyWhatIsNotSoAlready(_ kind: Kind) async throws {
        let environments = try make(kind)
        #expect(try await environments.recordChange(change(3, .sleep)) == .unchanged)  // no environment
        _ = try await environments.recordChange(change(3, .deploy(sha: Fixtures.sha("c3"))))
        #expect(try await environments.recordChange(change(3, .wake)) == .unchanged)
        #expect(try await environments.recordChange(change(3, .sleep)) == .accepted(version: 2))
        #expect(try await environments.environment(key(3))?.asleep == true)
        #expect(try await environments.recordChange(change(3, .sleep)) == .unchanged)
        #expect(try await environments.recordChange(change(3, .wake)) == .accepted(version: 3))
        #expect(try await environments.environment(key(3))?.asleep == false)
        _ = try await environments.recordChange(change(3, .teardown))
        #expect(try await environments.recordChange(change(3, .sleep)) == .unchanged)
    }

    @Test(arguments: Kind.allCases)
    func anUpdateChangesOneEnvironmentAndNoneIsNil(_ kind: Kind) async throws {
        let environments = try make(kind)
        _ = try await environments.recordChange(change(4, .deploy(sha: Fixtures.sha("c4"))))
        let updated = try await environments.update(key(4)) { $0.status = .ready }
        #expect(updated?.status == .ready)
        #expect(try await environments.environment(key(4))?.status == .ready)
        #expect(try await environments.update(key(5)) { $0.status = .ready } == nil)
        #expect(try await environments.allEnvironments().map(\.key) == [key(4)])
    }

    @Test(arguments: Kind.allCases)
    func theOldestWaitingTakesTheFirstFreePlace(_ kind: Kind) async throws {
        let environments = try make(kind)
        let start = Date()
        for number in 1...3 { _ = try await environments.recordChange(change(number, .deploy(sha: Fixtures.sha("c\(number)")))) }
        #expect(try await environments.admit(key(1), limit: 1, repoLimit: nil, at: start) == .admitted)
        #expect(
            try await environments.admit(key(2), limit: 1, repoLimit: nil, at: start.addingTimeInterval(1))
                == .waiting(position: 1, inUse: 1, limit: 1, scope: "limits.max_environments")
        )
        #expect(
            try await environments.admit(key(3), limit: 1, repoLimit: nil, at: start.addingTimeInterval(2))
                == .waiting(position: 2, inUse: 1, limit: 1, scope: "limits.max_environments")
        )
        #expect(try await environments.waitingKeys() == [key(2), key(3)])
        // Admitting again what holds a place changes nothing.
        #expect(try await environments.admit(key(1), limit: 1, repoLimit: nil, at: start) == .admitted)

        _ = try await environments.recordChange(change(1, .teardown))
        // The younger one asks first, but the older one may take the place: it waits on.
        #expect(
            try await environments.admit(key(3), limit: 1, repoLimit: nil, at: start.addingTimeInterval(3))
                == .waiting(position: 2, inUse: 0, limit: 1, scope: "repos.acme/web.max_environments")
        )
        #expect(try await environments.admit(key(2), limit: 1, repoLimit: nil, at: start.addingTimeInterval(4)) == .admitted)
        #expect(try await environments.waitingKeys() == [key(3)])
        #expect(try await environments.environment(key(2))?.waitingSince == nil)
    }

    @Test(arguments: Kind.allCases)
    func aRepositorysOwnLimitHoldsItsPullRequestsOnly(_ kind: Kind) async throws {
        let environments = try make(kind)
        let now = Date()
        _ = try await environments.recordChange(change(1, .deploy(sha: Fixtures.sha("c1"))))
        _ = try await environments.recordChange(change(2, .deploy(sha: Fixtures.sha("c2"))))
        _ = try await environments.recordChange(change(1, .deploy(sha: Fixtures.sha("o1")), repo: "acme/other"))
        #expect(try await environments.admit(key(1), limit: 10, repoLimit: 1, at: now) == .admitted)
        #expect(
            try await environments.admit(key(2), limit: 10, repoLimit: 1, at: now)
                == .waiting(position: 1, inUse: 1, limit: 1, scope: "repos.acme/web.max_environments")
        )
        #expect(try await environments.admit(key(1, repo: "acme/other"), limit: 10, repoLimit: 1, at: now) == .admitted)
    }

    @Test(arguments: Kind.allCases)
    func factsAreKeptByName(_ kind: Kind) async throws {
        let environments = try make(kind)
        #expect(try await environments.fact("engine") == nil)
        try await environments.setFact("engine", "down", at: Date())
        try await environments.setFact("engine", "up", at: Date())
        #expect(try await environments.fact("engine") == "up")
    }
}

/// `forks.max_blocked` holds from the first moment: PRs that will wait for the label count as soon as they
/// are recorded, before the controller marks them blocked (three opened at once let the third in).
@Suite("Store: the label backlog")
struct LabelBacklogTests {
    @Test func pullRequestsRecordedToWaitCountBeforeTheControllerBlocksThem() async throws {
        let store = try Store(path: try TestConfig.temporaryDirectory("backlog").appendingPathComponent("stager.sqlite"))
        func fork(_ number: Int) -> DesiredStateChange {
            var change = DesiredStateChange(
                id: UUID().uuidString,
                key: PullRequestKey(repo: "acme/web", number: number),
                intent: .deploy(sha: Fixtures.sha("fork-\(number)")),
                pullRequest: PullRequestFacts(branch: "main", headSha: Fixtures.sha("fork-\(number)"), headRepo: "stranger/web"),
                action: "opened",
                source: .webhook
            )
            change.waitingLimit = 2
            return change
        }
        #expect(try await store.accept(fork(1)) == .accepted(version: 1))
        #expect(try await store.accept(fork(2)) == .accepted(version: 1))
        #expect(try await store.accept(fork(3)) == .backlogFull(waiting: 2))
        #expect(try store.environment(PullRequestKey(repo: "acme/web", number: 3)) == nil)
        // An approved one waits no more: room for the next.
        _ = try await store.update(PullRequestKey(repo: "acme/web", number: 1)) { $0.approvedSha = $0.desiredSha }
        #expect(try await store.accept(fork(4)) == .accepted(version: 1))
    }
}

/// What serve sends back for a command passes through the same masking as its pages and logs.
@Suite("Commands' output")
struct CommandOutputTests {
    @Test func aSecretInACommandsOutputIsHidden() {
        let secrets = SecretValues(["e2e-app-secret-4f1a9c77"])
        let event = CommandEvent(out: "key=e2e-app-secret-4f1a9c77\n", err: "stager: e2e-app-secret-4f1a9c77 refused\n")
        let masked = event.masked(with: secrets)
        #expect(masked.out?.contains("e2e-app-secret-4f1a9c77") == false && masked.out?.contains("key=") == true)
        #expect(masked.err?.contains("e2e-app-secret-4f1a9c77") == false)
        #expect(CommandEvent.exit(3).masked(with: secrets) == .exit(3))
    }
}

import Foundation
import Logging
import StagerKit
import StagerTestSupport
import Testing

/// Records sleeps instead of sleeping, so retry tests run at once.
final class RecordingSleeper: Sleeper, @unchecked Sendable {
    private let lock = NSLock()
    private var slept: [Duration] = []
    var durations: [Duration] { lock.withLock { slept } }
    func sleep(for duration: Duration) async throws { lock.withLock { slept.append(duration) } }
}

@Suite("GitHub client against the stand-in")
struct GitHubClientTests {
    let key = PullRequestKey(repo: "acme/web", number: 7)

    func withFake(_ body: (GitHubFake, URL, RecordingSleeper) async throws -> Void) async throws {
        let fake = GitHubFake(token: "ghp_test")
        let (url, server) = try await fake.start()
        do {
            try await body(fake, url, RecordingSleeper())
        } catch {
            await server.stop()
            throw error
        }
        await server.stop()
    }

    func client(_ url: URL, token: String = "ghp_test", sleeper: RecordingSleeper) -> GitHubClient {
        GitHubClient(baseURL: url, token: token, timeout: .seconds(5), maxAttempts: 5, sleeper: sleeper, logger: Logger(label: "t"))
    }

    @Test func stickyCommentIsCreatedThenEditedThenDeleted() async throws {
        try await withFake { fake, url, sleeper in
            let publisher = GitHubCommentPublisher(client: client(url, sleeper: sleeper))
            let id = try #require(try await publisher.publish("\(CommentMarker.marker) one", on: key, knownID: nil))
            let again = try await publisher.publish("\(CommentMarker.marker) two", on: key, knownID: nil)
            #expect(again == id)
            #expect(await fake.comments(on: "acme/web", issue: 7).map(\.body) == ["\(CommentMarker.marker) two"])
            try await publisher.remove(on: key, knownID: id)
            #expect(await fake.comments(on: "acme/web", issue: 7).isEmpty)
            // Deleting what is already gone is fine.
            try await publisher.remove(on: key, knownID: id)
        }
    }

    @Test func serverErrorsAreRetriedAndOnlyOneCommentIsPosted() async throws {
        try await withFake { fake, url, sleeper in
            await fake.inject(.init(status: 500), times: 3)
            let publisher = GitHubCommentPublisher(client: client(url, sleeper: sleeper))
            _ = try await publisher.publish("\(CommentMarker.marker) hi", on: key, knownID: nil)
            #expect(await fake.comments(on: "acme/web", issue: 7).count == 1)
            #expect(sleeper.durations.count == 3)
            #expect(sleeper.durations.allSatisfy { $0 <= .seconds(30) })
        }
    }

    @Test func rateLimitsHonourRetryAfterAndReset() async throws {
        try await withFake { fake, url, sleeper in
            await fake.inject(.init(status: 403, headers: ["retry-after": "2"], body: "{\"message\":\"secondary rate limit\"}"))
            let reset = Int(Date().timeIntervalSince1970) + 5
            await fake.inject(.init(status: 429, headers: ["x-ratelimit-remaining": "0", "x-ratelimit-reset": "\(reset)"]))
            let publisher = GitHubCommentPublisher(client: client(url, sleeper: sleeper))
            _ = try await publisher.publish("\(CommentMarker.marker) hi", on: key, knownID: nil)
            #expect(sleeper.durations.first == .seconds(2))
            let second = try #require(sleeper.durations.dropFirst().first)
            #expect(second > .seconds(3) && second <= .seconds(7))
            #expect(await fake.comments(on: "acme/web", issue: 7).count == 1)
        }
    }

    /// GitHub stored the comment and then answered 500: the client looks before posting again (issue 12).
    @Test func aCommentStoredThenAnswered500IsPostedOnce() async throws {
        try await withFake { fake, url, sleeper in
            await fake.inject(.init(status: 500, method: "POST", afterStoring: true))
            let publisher = GitHubCommentPublisher(client: client(url, sleeper: sleeper))
            let id = try await publisher.publish("\(CommentMarker.marker) hi", on: key, knownID: nil)
            let comments = await fake.comments(on: "acme/web", issue: 7)
            #expect(comments.count == 1)
            #expect(id == comments.first?.id)
            #expect(await fake.count("POST", pathSuffix: "/comments") == 1)
        }
    }

    /// The same for a deployment and its statuses: one of each, whatever GitHub answered after storing.
    @Test func aDeploymentAndStatusStoredThenAnswered500AreCreatedOnce() async throws {
        try await withFake { fake, url, sleeper in
            let github = client(url, sleeper: sleeper)
            await fake.inject(.init(status: 502, pathContains: "/deployments", method: "POST", afterStoring: true))
            let id = try await github.createDeployment("acme/web", sha: Fixtures.sha("d"), environment: "pr-7", description: "preview")
            #expect(await fake.deployments.map(\.id) == [id])
            await fake.inject(.init(status: 500, pathContains: "/statuses", method: "POST", afterStoring: true))
            try await github.createDeploymentStatus("acme/web", deployment: id, state: "success", environmentURL: "http://x", description: "ready")
            #expect(await fake.deployments.first?.statuses.map(\.state) == ["success"])
            #expect(sleeper.durations.count == 2)
        }
    }

    /// A create that was not stored is sent again after the look finds nothing.
    @Test func aCreateRefusedWith500IsSentAgain() async throws {
        try await withFake { fake, url, sleeper in
            await fake.inject(.init(status: 500, method: "POST"), times: 2)
            let publisher = GitHubCommentPublisher(client: client(url, sleeper: sleeper))
            _ = try await publisher.publish("\(CommentMarker.marker) hi", on: key, knownID: nil)
            #expect(await fake.comments(on: "acme/web", issue: 7).count == 1)
            #expect(await fake.count("POST", pathSuffix: "/comments") == 3)
        }
    }

    @Test func badCredentialsAreNotRetried() async throws {
        try await withFake { fake, url, sleeper in
            let publisher = GitHubCommentPublisher(client: client(url, token: "wrong", sleeper: sleeper))
            await #expect(throws: GitHubError.status(401, "Bad credentials")) {
                _ = try await publisher.publish("x", on: key, knownID: nil)
            }
            #expect(sleeper.durations.isEmpty)
        }
    }

    @Test func listingFollowsPagination() async throws {
        try await withFake { fake, url, sleeper in
            for index in 0..<130 { _ = await fake.seedComment(repo: "acme/web", issue: 7, body: "comment \(index)") }
            let marked = await fake.seedComment(repo: "acme/web", issue: 7, body: "\(CommentMarker.marker) old")
            let comments = try await client(url, sleeper: sleeper).listComments(key)
            #expect(comments.count == 131)
            let publisher = GitHubCommentPublisher(client: client(url, sleeper: sleeper))
            #expect(try await publisher.publish("\(CommentMarker.marker) new", on: key, knownID: nil) == marked)
        }
    }

    @Test func retryPolicy() {
        let none: (String) -> String? = { _ in nil }
        #expect(RetryPolicy.decide(status: 404, headers: none, attempt: 1) == .fail)
        #expect(RetryPolicy.decide(status: 422, headers: none, attempt: 1) == .fail)
        #expect(RetryPolicy.decide(status: 403, headers: none, attempt: 1) == .fail)
        if case .retry = RetryPolicy.decide(status: 502, headers: none, attempt: 1) {} else { Issue.record("5xx must retry") }
        if case .retry = RetryPolicy.decide(status: 429, headers: none, attempt: 1) {} else { Issue.record("429 must retry") }
        #expect(RetryPolicy.decide(status: 403, headers: { $0 == "retry-after" ? "7" : nil }, attempt: 1) == .retry(after: .seconds(7)))
        #expect(Backoff.github.delay(after: 20) <= .seconds(30))
    }
}

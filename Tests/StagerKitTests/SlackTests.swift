import Foundation
import StagerKit
import StagerTestSupport
import Testing

@Suite("Slack: signatures, commands, formatting")
struct SlackTests {
    // Slack's own worked example ("Verifying requests from Slack").
    static let secret = "8f742231b10e8888abcd99yyyzzz85a5"
    static let timestamp = "1531420618"
    static let body = Data(
        "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c"
            .utf8
    )
    static let expected = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"
    static let then = Date(timeIntervalSince1970: 1_531_420_618 + 10)

    @Test func slacksDocumentedExampleVerifies() {
        let signature = SlackSignature(secret: Self.secret)
        #expect(signature.signature(timestamp: Self.timestamp, body: Self.body) == Self.expected)
        #expect(signature.isValid(signature: Self.expected, timestamp: Self.timestamp, body: Self.body, now: Self.then))
    }

    @Test func staleWrongOrMissingIsInvalid() {
        let signature = SlackSignature(secret: Self.secret)
        // A replay six minutes later, or a timestamp from the future.
        #expect(!signature.isValid(signature: Self.expected, timestamp: Self.timestamp, body: Self.body, now: Self.then.addingTimeInterval(301)))
        #expect(!signature.isValid(signature: Self.expected, timestamp: Self.timestamp, body: Self.body, now: Self.then.addingTimeInterval(-320)))
        #expect(!signature.isValid(signature: Self.expected, timestamp: Self.timestamp, body: Self.body + Data("x".utf8), now: Self.then))
        #expect(!signature.isValid(signature: Self.expected, timestamp: "1531420619", body: Self.body, now: Self.then))
        #expect(!SlackSignature(secret: "other").isValid(signature: Self.expected, timestamp: Self.timestamp, body: Self.body, now: Self.then))
        for bad in [nil, "", "v0=", "v1=" + Self.expected.dropFirst(3), String(Self.expected.dropLast(2)), Self.expected + "00"] as [String?] {
            #expect(!signature.isValid(signature: bad, timestamp: Self.timestamp, body: Self.body, now: Self.then), "\(bad ?? "nil")")
        }
        #expect(!signature.isValid(signature: Self.expected, timestamp: nil, body: Self.body, now: Self.then))
        #expect(!signature.isValid(signature: Self.expected, timestamp: "soon", body: Self.body, now: Self.then))
    }

    @Test(arguments: [
        ("", SlackCommand.help), ("help", .help), ("ls", .list(repo: nil)), ("ls acme/web", .list(repo: "acme/web")),
        ("status acme/web#3", .status(PullRequestKey(repo: "acme/web", number: 3))),
        ("deploy acme/web#3", .change(.deploy, PullRequestKey(repo: "acme/web", number: 3), sha: nil)),
        ("DEPLOY  acme/web#3   abc1234", .change(.deploy, PullRequestKey(repo: "acme/web", number: 3), sha: "abc1234")),
        ("rollback acme/web#3", .rollback(PullRequestKey(repo: "acme/web", number: 3))),
        ("destroy acme/web#3", .change(.destroy, PullRequestKey(repo: "acme/web", number: 3), sha: nil)),
        ("sleep acme/web#3", .change(.sleep, PullRequestKey(repo: "acme/web", number: 3), sha: nil)),
        ("wake acme/web#3", .change(.wake, PullRequestKey(repo: "acme/web", number: 3), sha: nil)),
    ])
    func commandsParse(text: String, command: SlackCommand) {
        #expect(SlackCommand(text: text) == command)
    }

    @Test(arguments: ["deploy", "deploy acme/web", "status acme/web#0", "destroy acme/web#3 now", "ls acme", "ls acme/web#3", "launch acme/web#3"])
    func badCommandsSayWhatWasExpected(text: String) {
        guard case .unknown(let problem) = SlackCommand(text: text) else {
            Issue.record("\(text) parsed")
            return
        }
        #expect(!problem.isEmpty)
    }

    @Test func userTextCannotMentionOrLink() {
        #expect(SlackText.escaped("<!channel> & <@U1|x>") == "&lt;!channel&gt; &amp; &lt;@U1|x&gt;")
        #expect(SlackText.link("http://a.example/x?a=1&b=2", "fix|<b>") == "<http://a.example/x?a=1&amp;b=2|fix¦&lt;b&gt;>")
        #expect(SlackText.code("a`b<c>") == "`a'b&lt;c&gt;`")
        #expect(SlackCommand(text: "destroy acme/web#1").changes && !SlackCommand(text: "ls").changes)
    }

    /// The outbox keeps one notice per event, offers it until it is sent or given up, waits out a retry's
    /// delay, and forgets old ones.
    @Test func theOutboxSendsEachEventOnce() async throws {
        let store = try Store(path: try TestConfig.temporaryDirectory("outbox").appendingPathComponent("stager.sqlite"))
        let now = Date()
        let ready = Notice(eventKey: "acme/web#1 ready abc v1", repo: "acme/web", text: "ready")
        try await store.enqueue(ready, at: now)
        try await store.enqueue(ready, at: now)
        try await store.enqueue(Notice(eventKey: "acme/web#1 removed v2", repo: "acme/web", text: "removed"), at: now)
        let due = try await store.dueNotifications(now: now)
        #expect(due.map(\.notice.text) == ["ready", "removed"])
        let first = try #require(due.first)
        try await store.notificationAttempted(first.id, sentAt: nil, retryAt: now.addingTimeInterval(2), failure: nil)
        #expect(try await store.dueNotifications(now: now).map(\.notice.text) == ["removed"])
        let retried = try #require(try await store.dueNotifications(now: now.addingTimeInterval(3)).first)
        #expect(retried.notice == ready && retried.attempts == 1)
        try await store.notificationAttempted(retried.id, sentAt: now, retryAt: nil, failure: nil)
        #expect(try await store.dueNotifications(now: now.addingTimeInterval(3)).map(\.notice.text) == ["removed"])
        // Pruning forgets what was sent, never what still waits.
        try await store.pruneNotifications(before: now.addingTimeInterval(1))
        #expect(try await store.dueNotifications(now: now.addingTimeInterval(3)).map(\.notice.text) == ["removed"])
    }
}

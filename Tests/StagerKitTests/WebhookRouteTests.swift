import Foundation
import Hummingbird
import HummingbirdTesting
import Logging
import NIOCore
import StagerKit
import StagerTestSupport
import Testing

/// The webhook route in process, with a real SQLite store; the controller is not running, so these tests
/// see exactly what the request path records.
@Suite("Webhook route")
struct WebhookRouteTests {
    let app: StagerApp
    let signature = WebhookSignature(secret: TestConfig.secret)

    init() throws {
        let dir = try TestConfig.temporaryDirectory("route")
        let config = try TestConfig.load(
            """
            data_dir: data
            server:
              max_body_bytes: 200000
            nginx:
              sites_dir: sites
            repos:
              stager-demo/hello:
                image: "stager/busybox:local"
            """,
            in: dir
        )
        app = try StagerApp(config: config, logger: Logger(label: "test"))
    }

    func post(
        _ client: some TestClientProtocol,
        body: Data,
        event: String = "pull_request",
        delivery: String? = UUID().uuidString,
        signature header: String? = nil,
        contentType: String = "application/json"
    ) async throws -> (Int, String) {
        var headers: HTTPFields = [.contentType: contentType]
        headers[HTTPFields.Element.Name("X-GitHub-Event")!] = event
        if let delivery { headers[HTTPFields.Element.Name("X-GitHub-Delivery")!] = delivery }
        headers[HTTPFields.Element.Name("X-Hub-Signature-256")!] = header ?? signature.header(for: body)
        return try await client.execute(uri: "/webhook", method: .post, headers: headers, body: ByteBuffer(data: body)) { response in
            (Int(response.status.code), String(buffer: response.body))
        }
    }

    func opened(_ number: Int = 1, sha: String = Fixtures.sha("one"), updatedAt: String = "2026-11-24T09:00:00Z") throws -> Data {
        try Fixtures.pullRequest(action: "opened", repo: "stager-demo/hello", number: number, branch: "feature/x", sha: sha, updatedAt: updatedAt)
    }

    @Test func acceptedDeliveryIsStoredBeforeTheAnswer() async throws {
        try await Application(router: app.buildRouter()).test(.router) { client in
            let (status, text) = try await post(client, body: opened())
            #expect(status == 202, "\(text)")
            let env = try #require(try app.store.environment(PullRequestKey(repo: "stager-demo/hello", number: 1)))
            #expect(env.desiredState == .present(sha: Fixtures.sha("one")))
            #expect(env.desiredVersion == 1 && env.appliedVersion == 0)
            #expect(env.slug == "feature-x")
            #expect(await app.controller.queue.depth == 1)
        }
    }

    @Test func badOrMissingSignatureRecordsNothing() async throws {
        try await Application(router: app.buildRouter()).test(.router) { client in
            #expect(try await post(client, body: opened(), signature: "sha256=" + String(repeating: "0", count: 64)).0 == 401)
            #expect(try await post(client, body: opened(), signature: "").0 == 401)
            let other = WebhookSignature(secret: "other").header(for: try opened())
            #expect(try await post(client, body: opened(), signature: other).0 == 401)
            #expect(try app.store.deliveryCount() == 0)
            #expect(try app.store.allEnvironments().isEmpty)
        }
    }

    @Test func pingAndIgnoredEvents() async throws {
        try await Application(router: app.buildRouter()).test(.router) { client in
            #expect(try await post(client, body: Data("{\"zen\":\"Keep it logically awesome.\",\"hook_id\":1}".utf8), event: "ping").0 == 200)
            let push = try await post(client, body: Data("{}".utf8), event: "push")
            #expect(push.0 == 200 && push.1.contains("ignored"))
            let labeled = try await post(
                client,
                body: Fixtures.pullRequest(action: "labeled", repo: "stager-demo/hello", number: 1, branch: "b", sha: Fixtures.sha("x"))
            )
            #expect(labeled.0 == 200 && labeled.1.contains("labeled"))
            let unknownRepo = try await post(
                client,
                body: Fixtures.pullRequest(action: "opened", repo: "someone/else", number: 1, branch: "b", sha: Fixtures.sha("x"))
            )
            #expect(unknownRepo.0 == 200 && unknownRepo.1.contains("not configured"))
            #expect(try app.store.allEnvironments().isEmpty)
        }
    }

    /// An event that needs no change still counts as use of the environment: it keeps it from sleeping.
    @Test func anIgnoredActionOfAKnownPRIsActivity() async throws {
        try await Application(router: app.buildRouter()).test(.router) { client in
            #expect(try await post(client, body: opened(7)).0 == 202)
            let key = PullRequestKey(repo: "stager-demo/hello", number: 7)
            try await app.store.update(key) { $0.lastActivityAt = Date(timeIntervalSince1970: 0) }
            let version = try #require(try app.store.environment(key)).desiredVersion
            let edited = try await post(
                client,
                body: Fixtures.pullRequest(
                    action: "edited",
                    repo: "stager-demo/hello",
                    number: 7,
                    branch: "feature/x",
                    sha: Fixtures.sha("one")
                )
            )
            #expect(edited.0 == 200 && edited.1.contains("needs nothing"))
            let env = try #require(try app.store.environment(key))
            #expect(env.desiredVersion == version)
            #expect(env.lastActivityAt.map { $0.timeIntervalSinceNow > -60 } == true)
        }
    }

    @Test func malformedBodiesAre400() async throws {
        try await Application(router: app.buildRouter()).test(.router) { client in
            #expect(try await post(client, body: Data("not json".utf8)).0 == 400)
            var root = try #require(JSONSerialization.jsonObject(with: opened()) as? [String: Any])
            root["number"] = nil
            let missing = try await post(client, body: JSONSerialization.data(withJSONObject: root))
            #expect(missing.0 == 400 && missing.1.contains("number"))
            #expect(try await post(client, body: opened(), delivery: nil).0 == 400)
            #expect(try app.store.allEnvironments().isEmpty)
        }
    }

    @Test func oversizedBodyIs413() async throws {
        try await Application(router: app.buildRouter()).test(.router) { client in
            let body = Data(repeating: UInt8(ascii: " "), count: 300_000)
            let (status, _) = try await post(client, body: body)
            #expect(status == 413)
            let count = try app.store.deliveryCount()
            #expect(count == 0)
        }
    }

    @Test func formEncodedDeliveries() async throws {
        try await Application(router: app.buildRouter()).test(.router) { client in
            let json = String(decoding: try opened(), as: UTF8.self)
            let form = "payload=" + (json.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? "")
            let (status, _) = try await post(client, body: Data(form.utf8), contentType: "application/x-www-form-urlencoded")
            #expect(status == 202)
            #expect(try app.store.environment(PullRequestKey(repo: "stager-demo/hello", number: 1)) != nil)
        }
    }

    @Test func duplicateDeliveryChangesNothing() async throws {
        try await Application(router: app.buildRouter()).test(.router) { client in
            let body = try opened()
            #expect(try await post(client, body: body, delivery: "same-id").0 == 202)
            let again = try await post(client, body: body, delivery: "same-id")
            #expect(again.0 == 200 && again.1.contains("duplicate"))
            let env = try #require(try app.store.environment(PullRequestKey(repo: "stager-demo/hello", number: 1)))
            #expect(env.desiredVersion == 1)
            #expect(try app.store.deliveryCount() == 1)
        }
    }

    @Test func olderDeliveriesNeverRollBack() async throws {
        try await Application(router: app.buildRouter()).test(.router) { client in
            let key = PullRequestKey(repo: "stager-demo/hello", number: 1)
            #expect(try await post(client, body: opened(updatedAt: "2026-11-24T09:00:00Z")).0 == 202)
            let closed = try Fixtures.pullRequest(
                action: "closed",
                repo: key.repo,
                number: 1,
                branch: "feature/x",
                sha: Fixtures.sha("one"),
                updatedAt: "2026-11-24T10:00:00Z"
            )
            #expect(try await post(client, body: closed).0 == 202)
            // An operator redelivers the old `opened` (a new delivery id): it must not resurrect the PR.
            let redelivered = try await post(client, body: opened(updatedAt: "2026-11-24T09:00:00Z"))
            #expect(redelivered.0 == 200 && redelivered.1.contains("older"))
            #expect(try app.store.environment(key)?.desiredState == .absent)
        }
    }

    @Test func readRoutes() async throws {
        try await Application(router: app.buildRouter()).test(.router) { client in
            _ = try await post(client, body: opened())
            try await client.execute(uri: "/healthz", method: .get) { #expect($0.status == .ok) }
            try await client.execute(uri: "/api/environments", method: .get) { response in
                let list = try JSONDecoder().decode([EnvironmentView].self, from: Data(buffer: response.body))
                #expect(list.map(\.number) == [1])
                #expect(list.first?.status == "queued")
            }
            try await client.execute(uri: "/", method: .get) { response in
                #expect(response.headers[.contentType]?.hasPrefix("text/html") == true)
                #expect(String(buffer: response.body).contains("stager-demo/hello"))
            }
            try await client.execute(uri: "/metrics", method: .get) { response in
                let text = String(buffer: response.body)
                #expect(text.contains("stager_webhooks_total{event=\"pull_request\",outcome=\"accepted\"} 1"))
                for line in text.split(separator: "\n") where !line.hasPrefix("#") {
                    #expect(line.hasPrefix("stager_"))
                }
            }
        }
    }
}

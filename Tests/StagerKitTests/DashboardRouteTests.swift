import Foundation
import Hummingbird
import HummingbirdTesting
import Logging
import NIOCore
import StagerKit
import StagerTestSupport
import Testing

/// Every read route in process, on a real SQLite store: the dashboard, the environment page, the JSON
/// API and /metrics. The controller does not run, so what they show is what the requests recorded.
@Suite("Dashboard and API routes")
struct DashboardRouteTests {
    let app: StagerApp
    let signature = WebhookSignature(secret: TestConfig.secret)

    init() throws {
        let dir = try TestConfig.temporaryDirectory("dashboard")
        let config = try TestConfig.load(
            """
            data_dir: data
            server:
              public_url: "https://stager.example.com/"
            nginx:
              sites_dir: sites
            repos:
              acme/web:
                image: "stager/busybox:local"
              acme/api:
                image: "stager/busybox:local"
            """,
            in: dir
        )
        app = try StagerApp(config: config, logger: Logger(label: "test"))
    }

    @discardableResult
    func deliver(
        _ client: some TestClientProtocol,
        _ action: String,
        repo: String = "acme/web",
        number: Int,
        branch: String,
        sha: String? = nil,
        updatedAt: String = "2026-11-24T09:00:00Z",
        sender: String? = "octocat"
    ) async throws -> Int {
        let body = try Fixtures.pullRequest(
            action: action,
            repo: repo,
            number: number,
            branch: branch,
            sha: sha ?? Fixtures.sha(branch),
            updatedAt: updatedAt,
            sender: sender
        )
        var headers: HTTPFields = [.contentType: "application/json"]
        headers[HTTPFields.Element.Name("X-GitHub-Event")!] = "pull_request"
        headers[HTTPFields.Element.Name("X-GitHub-Delivery")!] = "delivery-\(repo)-\(number)-\(action)"
        headers[HTTPFields.Element.Name("X-Hub-Signature-256")!] = signature.header(for: body)
        return try await client.execute(uri: "/webhook", method: .post, headers: headers, body: ByteBuffer(data: body)) { Int($0.status.code) }
    }

    func get(_ client: some TestClientProtocol, _ uri: String) async throws -> (Int, String, String) {
        try await client.execute(uri: uri, method: .get) { response in
            (Int(response.status.code), response.headers[.contentType] ?? "", String(buffer: response.body))
        }
    }

    @Test func dashboardGroupsByRepoLinksAndFilters() async throws {
        try await Application(router: app.buildRouter()).test(.router) { client in
            try await deliver(client, "opened", number: 7, branch: "feature/login")
            try await deliver(client, "opened", repo: "acme/api", number: 3, branch: "fix/<script>alert(1)</script>")
            try await app.store.update(PullRequestKey(repo: "acme/api", number: 3)) {
                $0.status = .failed
                $0.failureReason = "the container did not answer / below 500 within 60s"
            }

            let (status, type, html) = try await get(client, "/")
            #expect(status == 200 && type.hasPrefix("text/html"))
            // Grouped by repository, sorted: acme/api before acme/web.
            let api = try #require(html.range(of: "<h2>acme/api"))
            let web = try #require(html.range(of: "<h2>acme/web"))
            #expect(api.lowerBound < web.lowerBound)
            #expect(html.contains("href=\"https://github.com/acme/web/pull/7\""))
            #expect(html.contains("href=\"/environments/acme/web/7\""))
            #expect(html.contains("<span class=\"status queued\">queued</span>"))
            // A failed one shows why and links to its logs.
            #expect(html.contains("the container did not answer / below 500 within 60s"))
            #expect(html.contains("href=\"/environments/acme/api/3#log\""))
            // Nothing of a branch name reaches the page unescaped; no asset is fetched from elsewhere.
            #expect(!html.contains("<script>alert(1)"))
            #expect(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"))
            #expect(!html.contains("src=\"http") && !html.contains("href=\"//"))

            let (_, _, onlyWeb) = try await get(client, "/?repo=acme/web")
            #expect(onlyWeb.contains("<h2>acme/web") && !onlyWeb.contains("<h2>acme/api"))
            let (_, _, onlyFailed) = try await get(client, "/?status=failed")
            #expect(onlyFailed.contains("data-number=\"3\"") && !onlyFailed.contains("data-number=\"7\""))
            let (_, _, none) = try await get(client, "/?status=ready")
            #expect(none.contains("No environment matches this filter."))
            let (bad, _, message) = try await get(client, "/?status=bogus")
            #expect(bad == 400 && message.contains(#"unknown status \"bogus\""#), "\(message)")
        }
    }

    @Test func environmentPageShowsHistoryWithTriggerAndSender() async throws {
        try await Application(router: app.buildRouter()).test(.router) { client in
            try await deliver(client, "opened", number: 9, branch: "history", sender: "alice")
            try await deliver(
                client,
                "synchronize",
                number: 9,
                branch: "history",
                sha: Fixtures.sha("second"),
                updatedAt: "2026-11-24T09:05:00Z",
                sender: "bob"
            )

            let (status, type, html) = try await get(client, "/environments/acme/web/9")
            #expect(status == 200 && type.hasPrefix("text/html"))
            #expect(html.contains("href=\"https://github.com/acme/web/pull/9\""))
            #expect(html.contains(">alice<") && html.contains(">bob<"))
            #expect(html.contains("synchronize at \(Fixtures.sha("second").prefix(12))"))
            #expect(html.contains("delivery-acme/web-9-synchronize"))
            #expect(html.contains("id=\"log\""))
            #expect(html.contains("no container is running for this environment"))

            #expect(try await get(client, "/environments/acme/web/404").0 == 404)
            #expect(try await get(client, "/environments/acme/web/zero").0 == 404)
        }
    }

    @Test func jsonAPIForOneEnvironmentAndTheAuditTrail() async throws {
        try await Application(router: app.buildRouter()).test(.router) { client in
            try await deliver(client, "opened", number: 11, branch: "api-one", sender: "carol")
            try await deliver(client, "opened", repo: "acme/api", number: 12, branch: "api-two")

            let (status, type, body) = try await get(client, "/api/environments/acme/web/11")
            #expect(status == 200 && type == "application/json")
            let detail = try JSONDecoder().decode(EnvironmentDetail.self, from: Data(body.utf8))
            #expect(detail.environment.number == 11 && detail.environment.branch == "api-one")
            #expect(detail.environment.pr_url == "https://github.com/acme/web/pull/11")
            #expect(detail.environment.page_url == "https://stager.example.com/environments/acme/web/11")
            #expect(detail.events.count == 1)
            let event = try #require(detail.events.first)
            #expect(event.kind == "webhook" && event.trigger == "webhook" && event.actor == "carol")
            #expect(event.sha == Fixtures.sha("api-one") && event.delivery_id == "delivery-acme/web-11-opened")
            #expect(try await get(client, "/api/environments/acme/web/99").0 == 404)

            let (_, _, filtered) = try await get(client, "/api/environments?repo=acme/api")
            #expect(try JSONDecoder().decode([EnvironmentView].self, from: Data(filtered.utf8)).map(\.number) == [12])
            #expect(try await get(client, "/api/environments?status=nope").0 == 400)

            let (_, _, events) = try await get(client, "/api/events?limit=1")
            let newest = try JSONDecoder().decode([EventView].self, from: Data(events.utf8))
            #expect(newest.map(\.number) == [12])
            let (_, _, all) = try await get(client, "/api/events")
            #expect(try JSONDecoder().decode([EventView].self, from: Data(all.utf8)).map(\.number) == [12, 11])
            for bad in ["0", "1001", "ten"] {
                let (code, _, message) = try await get(client, "/api/events?limit=\(bad)")
                #expect(code == 400 && message.contains("limit must be a number from 1 to 1000"))
            }
        }
    }

    @Test func metricsParseAndMoveWithTheEvents() async throws {
        try await Application(router: app.buildRouter()).test(.router) { client in
            try await deliver(client, "opened", number: 21, branch: "metrics-one")
            let (status, type, first) = try await get(client, "/metrics")
            #expect(status == 200 && type.hasPrefix("text/plain; version=0.0.4"))
            let before = try PrometheusText(first)
            #expect(before.value("stager_webhooks_total", ["event": "pull_request", "outcome": "accepted"]) == 1)
            #expect(before.value("stager_environments", ["status": "queued"]) == 1)
            #expect(before.value("stager_environments", ["status": "ready"]) == 0)
            #expect(before.value("stager_store_up") == 1)
            #expect(before.samples.allSatisfy { $0.name.hasPrefix("stager_") })

            try await deliver(client, "opened", number: 22, branch: "metrics-two")
            try await deliver(client, "opened", number: 22, branch: "metrics-two")  // the same delivery id again
            let after = try PrometheusText(try await get(client, "/metrics").2)
            #expect(after.value("stager_webhooks_total", ["event": "pull_request", "outcome": "accepted"]) == 2)
            #expect(after.value("stager_webhooks_total", ["event": "pull_request", "outcome": "duplicate"]) == 1)
            #expect(after.value("stager_environments", ["status": "queued"]) == 2)
            #expect(after.value("stager_queue_depth") == 2)
        }
    }

    @Test func prometheusReaderRejectsWhatIsNotTheFormat() {
        #expect(throws: PrometheusText.Problem.self) { try PrometheusText("stager_x 1") }
        #expect(throws: PrometheusText.Problem.self) { try PrometheusText("# TYPE stager_x counter\nstager_x one") }
        #expect(throws: PrometheusText.Problem.self) { try PrometheusText("# TYPE stager_x counter\nstager_x{a=\"b} 1") }
        #expect((try? PrometheusText("# TYPE stager_x counter\nstager_x{a=\"b\"} 1"))?.value("stager_x", ["a": "b"]) == 1)
    }
}

@Suite("Stager's own log")
struct LogFormatTests {
    final class Lines: @unchecked Sendable {
        private let lock = NSLock()
        private var data = Data()
        func append(_ more: Data) { lock.withLock { data.append(more) } }
        var text: String { lock.withLock { String(decoding: data, as: UTF8.self) } }
    }

    @Test func jsonLinesCarryTheEnvironmentsFields() throws {
        let lines = Lines()
        var logger = Logger(label: "stager") { JSONLogHandler(label: $0, write: lines.append) }
        logger[metadataKey: "repo"] = "acme/web"
        logger[metadataKey: "pr"] = "7"
        logger[metadataKey: "delivery"] = "d-1"
        logger.info("environment ready", metadata: ["url": "http://x.preview.localhost"])
        logger.debug("not shown at info")
        let output = lines.text.split(separator: "\n")
        #expect(output.count == 1)
        let object = try #require(try JSONSerialization.jsonObject(with: Data(output[0].utf8)) as? [String: String])
        #expect(object["message"] == "environment ready" && object["level"] == "info" && object["label"] == "stager")
        #expect(object["repo"] == "acme/web" && object["pr"] == "7" && object["delivery"] == "d-1")
        #expect(object["url"] == "http://x.preview.localhost")
        #expect(object["time"].flatMap(ISO8601DateFormatter().date(from:)) != nil)
    }
}

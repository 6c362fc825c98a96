import Foundation
import StagerKit
import StagerTestSupport
import Testing

/// What people see, on the real engine and nginx: the dashboard and API, GitHub Deployments on the
/// stand-in, `stager logs`, /metrics, and the dashboard in a real headless Chromium.
@Suite("End to end: visibility", .serialized, .enabled(if: E2EHarness.available))
struct VisibilityTests {
    /// Prints a line to the container log first, so the log shows something of each deploy.
    static let talkingRepo = """
          acme/talk:
            image: "\(E2EHarness.image)"
            command: ["/bin/busybox", "sh", "-c", "echo \\"booting $STAGER_SHA\\"; echo \\"sha=$STAGER_SHA\\" > /www/index.html && exec /bin/busybox httpd -f -p 8080 -h /www"]
            port: 8080
          acme/broken:
            image: "stager/no-such-image:none"
            port: 8080

        """

    @Test func deploymentsDashboardAPILogsAndMetricsFollowAPullRequest() async throws {
        try await E2EHarness.run(
            name: "visibility",
            extraRepos: Self.talkingRepo,
            extraServer: "  public_url: \"https://stager.example.com\"",
            extraGitHub: "  deployments: true"
        ) { harness throws in
            let sha1 = Fixtures.sha("v1")
            let sha2 = Fixtures.sha("v2")
            let url = "http://feature-visible.preview.localhost:\(harness.nginxPort)"
            let page = "https://stager.example.com/environments/acme/talk/41"

            #expect(try await harness.send("opened", number: 41, branch: "feature/visible", sha: sha1, repo: "acme/talk").0 == 202)
            #expect(try await harness.waitSettled(41, repo: "acme/talk", status: .ready))

            // GitHub got one transient deployment of the exact sha, then in_progress → success with the URL.
            let first = try #require(await harness.github.deployments.first)
            #expect(first.repo == "acme/talk" && first.ref == sha1 && first.environment == "pr-41")
            #expect(first.transient && !first.production && !first.autoMerge && first.requiredContexts == [])
            #expect(first.statuses.map(\.state) == ["in_progress", "success"])
            #expect(first.statuses.last?.environmentURL == url)
            #expect(first.statuses.last?.logURL == page)

            // The comment is a table with the status, URL, commit and a link to the logs.
            let comment = try #require(await harness.github.comments(on: "acme/talk", issue: 41).first)
            #expect(comment.body.contains("| **Status** | :white_check_mark: ready |"))
            #expect(comment.body.contains("| **URL** | \(url) |"))
            #expect(comment.body.contains("| **Logs** | [history and container log](\(page)) |"))

            // The API and the dashboard show it.
            let list = try JSONDecoder().decode([EnvironmentView].self, from: Data(try await harness.get("/api/environments").body.utf8))
            let view = try #require(list.first { $0.repo == "acme/talk" && $0.number == 41 })
            #expect(view.status == "ready" && view.url == url && view.sha == sha1)
            #expect((view.last_deploy_seconds ?? 0) > 0)
            let dashboard = try await harness.get("/").body
            #expect(dashboard.contains("data-repo=\"acme/talk\" data-number=\"41\""))
            #expect(dashboard.contains("href=\"\(url)\""))
            #expect(dashboard.contains("<span class=\"status ready\">ready</span>"))

            // A push: a second deployment; the first is retired once the second succeeds.
            try await harness.send(
                "synchronize",
                number: 41,
                branch: "feature/visible",
                sha: sha2,
                updatedAt: "2026-11-24T09:05:00Z",
                repo: "acme/talk"
            )
            #expect(try await harness.waitUntil { try harness.environment(41, repo: "acme/talk")?.deployedSha == sha2 })
            #expect(try await harness.waitSettled(41, repo: "acme/talk", status: .ready))
            let afterPush = await harness.github.deployments
            #expect(afterPush.count == 2)
            #expect(afterPush.last?.ref == sha2 && afterPush.last?.statuses.map(\.state) == ["in_progress", "success"])
            #expect(afterPush.first?.statuses.map(\.state) == ["in_progress", "success", "inactive"])

            // The environment page: history with triggers and the container's own log.
            let detail = try JSONDecoder().decode(
                EnvironmentDetail.self,
                from: Data(try await harness.get("/api/environments/acme/talk/41").body.utf8)
            )
            let kinds = detail.events.reversed().map(\.kind)
            #expect(kinds.starts(with: ["webhook", "deploy", "ready", "webhook", "deploy", "ready"]))
            #expect(detail.events.filter { $0.kind == "deploy" }.allSatisfy { $0.trigger == "webhook" && $0.delivery_id != nil })
            let html = try await harness.get("/environments/acme/talk/41").body
            #expect(html.contains("booting \(sha2)"))

            // stager logs prints the serving container's log.
            let logs = try await harness.stager(["logs", "acme/talk#41", "--tail", "5"])
            #expect(logs.exitCode == 0, "\(logs.standardError)")
            #expect(logs.standardOutput.contains("booting \(sha2)") && !logs.standardOutput.contains("booting \(sha1)"))
            let unknown = try await harness.stager(["logs", "acme/talk#99"])
            #expect(unknown.exitCode == 1 && unknown.standardError.contains("acme/talk#99 has no environment"))

            // A deploy that fails: a failure status with the page as log_url; the dashboard shows why.
            #expect(try await harness.send("opened", number: 42, branch: "broken", sha: Fixtures.sha("b"), repo: "acme/broken").0 == 202)
            #expect(try await harness.settledStatus(42, repo: "acme/broken") == .failed)
            let broken = try #require(await harness.github.deployments.first { $0.repo == "acme/broken" })
            #expect(broken.statuses.map(\.state) == ["in_progress", "failure"])
            #expect(broken.statuses.last?.logURL == "https://stager.example.com/environments/acme/broken/42")
            let failedRow = try await harness.get("/?status=failed").body
            #expect(failedRow.contains("data-number=\"42\"") && failedRow.contains("href=\"/environments/acme/broken/42#log\""))

            // Closing: the deployment shows as destroyed; the audit trail records the teardown.
            try await harness.send("closed", number: 41, branch: "feature/visible", sha: sha2, updatedAt: "2026-11-24T09:10:00Z", repo: "acme/talk")
            #expect(try await harness.waitUntil { try harness.environment(41, repo: "acme/talk")?.status == .removed })
            #expect(await harness.github.deployments.first { $0.ref == sha2 }?.statuses.last?.state == "inactive")
            let events = try JSONDecoder().decode([EventView].self, from: Data(try await harness.get("/api/events?limit=50").body.utf8))
            #expect(events.contains { $0.repo == "acme/talk" && $0.number == 41 && $0.kind == "teardown" })

            // Metrics moved with all of it.
            let metrics = try PrometheusText(try await harness.get("/metrics").body)
            #expect(metrics.value("stager_webhooks_total", ["event": "pull_request", "outcome": "accepted"]) == 4)
            #expect(metrics.value("stager_deploy_duration_seconds_count", ["outcome": "ready"]) == 2)
            #expect(metrics.value("stager_deploy_duration_seconds_count", ["outcome": "failed"]) == 1)
            #expect(metrics.value("stager_teardown_duration_seconds_count") == 1)
            #expect((metrics.value("stager_github_requests_total", ["outcome": "ok"]) ?? 0) >= 10)
            #expect(metrics.value("stager_environments", ["status": "failed"]) == 1)
            #expect(metrics.value("stager_environments", ["status": "ready"]) == 0)
            #expect((metrics.value("stager_nginx_reloads_total") ?? 0) >= 3)
            #expect(metrics.value("stager_queue_depth") == 0)
        }
    }

    /// The dashboard in a real browser: it loads with no console error, its script polls the API, the
    /// row is there, and a screenshot is kept as a test artifact.
    @Test(.enabled(if: Chromium.path != nil)) func dashboardInHeadlessChromium() async throws {
        try await E2EHarness.run(name: "chromium") { harness throws in
            #expect(try await harness.send("opened", number: 43, branch: "in-a-browser", sha: Fixtures.sha("c")).0 == 202)
            #expect(try await harness.waitSettled(43, status: .ready))
            let address = "http://127.0.0.1:\(harness.port)/"

            let dom = try await Chromium.run(["--virtual-time-budget=3000", "--dump-dom", address])
            #expect(dom.exitCode == 0, "\(dom.standardError.suffix(2000))")
            let consoleLines = dom.standardError.split(separator: "\n").filter { $0.contains(":CONSOLE") }
            #expect(consoleLines.isEmpty, "console said: \(consoleLines)")
            #expect(dom.standardOutput.contains("data-repo=\"acme/web\" data-number=\"43\""))
            #expect(dom.standardOutput.contains("<span class=\"status ready\">ready</span>"))
            // The page's script ran and read the API (it marks the body after each poll).
            #expect(dom.standardOutput.contains("data-polled=\"1\""))
            #expect(!dom.standardOutput.contains("data-poll-error=\""))

            let shot = Chromium.artifacts.appendingPathComponent("dashboard.png")
            try? FileManager.default.removeItem(at: shot)
            let screenshot = try await Chromium.run(["--window-size=1280,720", "--screenshot=\(shot.path)", address])
            #expect(screenshot.exitCode == 0)
            let png = try Data(contentsOf: shot)
            #expect(png.starts(with: [0x89, 0x50, 0x4E, 0x47]) && png.count > 5000)

            let detail = try await Chromium.run(["--virtual-time-budget=1000", "--dump-dom", address + "environments/acme/web/43"])
            #expect(!detail.standardError.contains(":CONSOLE"))
            #expect(detail.standardOutput.contains("History"))
        }
    }
}

/// Debian's chromium, headless, for the dashboard check.
enum Chromium {
    static var path: String? {
        ["/usr/bin/chromium", "/usr/bin/chromium-browser"].first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    /// Screenshots land here (`.build/artifacts`), kept after the run for people to look at.
    static var artifacts: URL {
        let url = Fixtures.repoRoot.appendingPathComponent(".build/artifacts")
        try? FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }

    static func run(_ arguments: [String]) async throws -> CommandResult {
        let profile = try TestConfig.temporaryDirectory("chromium")
        defer { try? FileManager.default.removeItem(at: profile) }
        // Root in a container: no sandbox; no GPU; logs on stderr so console messages can be checked.
        let base = [
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
            "--user-data-dir=\(profile.path)", "--enable-logging=stderr", "--v=0",
        ]
        return try await SubprocessRunner().run(Command("timeout", ["60", path ?? "chromium"] + base + arguments))
    }
}

import Foundation
import StagerKit
import StagerTestSupport
import Testing

/// Deployer and ChatOps on the real engine and nginx: the JSON API's actions with the admin token, Slack's
/// signed slash commands (against Slack's stand-in for `response_url`), and notifications to an incoming
/// webhook that fails and hangs.
@Suite("End to end: API actions and Slack", .enabled(if: E2EHarness.available))
struct ChatOpsTests {
    static let allowed = "U0ALLOWED1"
    static let config = """
        slack:
          signing_secret_env: E2E_SLACK_SECRET
          allowed_users: ["\(allowed)"]
          webhook_url_env: E2E_SLACK_WEBHOOK
          response_hosts: ["127.0.0.1"]
          team_id: T1
        """

    /// A harness with the admin token and Slack configured, serve started once the stand-in runs.
    func withSlack(_ name: String, extraRepos: String = "", _ body: (E2EHarness, SlackFake, URL) async throws -> Void) async throws {
        let slack = SlackFake()
        let (url, server) = try await slack.start()
        let outcome = await Result {
            try await E2EHarness.run(
                name: name,
                extraRepos: extraRepos,
                extraConfig: Self.config,
                extraServer: "  admin_token_env: E2E_ADMIN_TOKEN",
                start: false
            ) { harness in
                harness.extraEnvironment = ["E2E_SLACK_WEBHOOK": url.appendingPathComponent("hooks/team").absoluteString]
                try await harness.start()
                try await body(harness, slack, url)
            }
        }
        await server.stop()
        try outcome.get()
    }

    func api(
        _ harness: E2EHarness,
        _ action: String,
        _ number: Int,
        body: String = "",
        token: String? = E2EHarness.adminToken
    ) async throws -> ProbeAnswer {
        try await harness.request(
            "POST",
            "/api/environments/acme/web/\(number)/\(action)",
            headers: token.map { [("Authorization", "Bearer \($0)"), ("Content-Type", "application/json")] } ?? [],
            body: Data(body.utf8)
        )
    }

    /// A slash command as Slack sends it, signed unless `signature` says otherwise.
    func slash(
        _ harness: E2EHarness,
        _ text: String,
        user: String = allowed,
        responseURL: String = "",
        timestamp: Date = Date(),
        signature: String? = nil,
        signedBody: String? = nil
    ) async throws -> ProbeAnswer {
        var allowed = CharacterSet.alphanumerics
        allowed.insert(charactersIn: "-._~")
        func field(_ value: String) -> String { value.addingPercentEncoding(withAllowedCharacters: allowed) ?? "" }
        let body =
            "token=x&team_id=T1&user_id=\(field(user))&user_name=\(field("name-" + user))&command=%2Fstager&text=\(field(text))&response_url=\(field(responseURL))"
        let stamp = String(Int(timestamp.timeIntervalSince1970))
        let header = signature ?? SlackSignature(secret: E2EHarness.slackSecret).signature(timestamp: stamp, body: Data((signedBody ?? body).utf8))
        return try await harness.request(
            "POST",
            "/slack/commands",
            headers: [
                ("Content-Type", "application/x-www-form-urlencoded"),
                ("X-Slack-Request-Timestamp", stamp), ("X-Slack-Signature", header),
            ],
            body: Data(body.utf8)
        )
    }

    func served(_ harness: E2EHarness, _ slug: String, _ sha: String) async throws -> Bool {
        try await harness.waitUntil { await harness.throughNginx(slug: slug)?.body.contains("sha=\(sha)") == true }
    }

    /// A PR deployed at one sha, then pushed to a second, served and ready: two shas in its history. GitHub
    /// knows it at the second (a deploy by hand reads the PR, which must be open).
    func deployedTwice(_ harness: E2EHarness, _ number: Int, branch: String) async throws -> (one: String, two: String) {
        let (one, two) = (Fixtures.sha("\(branch)-one"), Fixtures.sha("\(branch)-two"))
        await harness.github.setPull(number: number, branch: branch, sha: two, updatedAt: "2026-11-24T10:00:00Z")
        try await harness.send("opened", number: number, branch: branch, sha: one)
        #expect(try await harness.waitSettled(number, status: .ready))
        try await harness.send("synchronize", number: number, branch: branch, sha: two, updatedAt: "2026-11-24T10:00:00Z")
        #expect(try await served(harness, branch, two))
        #expect(try await harness.waitSettled(number, status: .ready))
        return (one, two)
    }

    func answer(_ reply: ProbeAnswer) throws -> SlackMessage {
        try JSONDecoder().decode(SlackMessage.self, from: Data(reply.body.utf8))
    }

    @Test func theAPIDeploysAnEarlierShaSleepsWakesDestroysAndRefusesWhatItShould() async throws {
        try await withSlack("api-actions") { harness, _, _ in
            let (one, two) = try await deployedTwice(harness, 1, branch: "api")

            #expect(try await api(harness, "deploy", 1, body: #"{"sha": "\#(one)"}"#, token: nil).status == 401)
            #expect(try await api(harness, "deploy", 1, body: #"{"sha": "\#(one)"}"#, token: "wrong").status == 401)
            #expect(try await api(harness, "deploy", 99).status == 404)
            #expect(try await api(harness, "deploy", 1, body: #"{"sha": "zz-not-hex"}"#).status == 400)
            let stranger = try await api(harness, "deploy", 1, body: #"{"sha": "\#(Fixtures.sha("never"))"}"#)
            #expect(stranger.status == 400 && stranger.body.contains("not in the history"), "\(stranger.body)")
            #expect(try harness.environment(1)?.desiredSha == two, "a refused action changes nothing")

            let rollback = try await api(harness, "deploy", 1, body: #"{"sha": "\#(one.prefix(12))"}"#)
            #expect(rollback.status == 202 && rollback.body.contains(#""status":"queued""#), "\(rollback.body)")
            #expect(try await served(harness, "api", one))
            let events = try harness.app?.store.auditEvents(for: PullRequestKey(repo: "acme/web", number: 1), limit: 100) ?? []
            #expect(events.contains { $0.actor == "admin API" && $0.sha == one })

            #expect(try await api(harness, "sleep", 1).status == 202)
            #expect(try await harness.waitUntil { try harness.environment(1)?.status == .sleeping })
            #expect(try await api(harness, "wake", 1).status == 202)
            #expect(try await harness.waitUntil { try harness.environment(1)?.status == .ready })
            #expect(try await api(harness, "destroy", 1).status == 202)
            #expect(try await harness.waitUntil { try harness.environment(1)?.status == .removed })
            #expect(try await harness.containers().filter { $0.number == 1 }.isEmpty)
        }
    }

    @Test func slashCommandsAreVerifiedAnsweredAndChangesRefusedToOthers() async throws {
        try await withSlack("slack-commands") { harness, _, _ in
            let sha = Fixtures.sha("slack-read")
            try await harness.send("opened", number: 2, branch: "<!channel>-and-<http://evil|x>", sha: sha)
            #expect(try await harness.waitSettled(2, status: .ready))
            let version = try #require(try harness.environment(2)).desiredVersion

            // Not Slack: a stale timestamp, a signature of another body, no signature at all.
            #expect(try await slash(harness, "destroy acme/web#2", timestamp: Date().addingTimeInterval(-301)).status == 401)
            #expect(try await slash(harness, "destroy acme/web#2", signedBody: "text=help").status == 401)
            #expect(try await slash(harness, "destroy acme/web#2", signature: "").status == 401)
            #expect(try harness.environment(2)?.desiredVersion == version)

            let help = try answer(try await slash(harness, "help"))
            #expect(help.response_type == "ephemeral" && help.text.contains("rollback OWNER/NAME#N"))
            let list = try answer(try await slash(harness, "ls acme/web"))
            #expect(list.text.contains("acme/web#2") && list.text.contains("*ready*"), "\(list.text)")
            // What a branch says is shown, never obeyed: no mention or link gets through.
            #expect(
                !list.text.contains("<!channel>") && !list.text.contains("<http://evil") && list.text.contains("&lt;!channel&gt;"),
                "\(list.text)"
            )
            let status = try answer(try await slash(harness, "status acme/web#2"))
            #expect(status.text.contains("at `\(sha.prefix(12))`"), "\(status.text)")
            #expect(try answer(try await slash(harness, "status acme/web#99")).text.contains("has no environment"))
            #expect(try answer(try await slash(harness, "launch acme/web#2")).text.contains("unknown command"))

            let refused = try answer(try await slash(harness, "destroy acme/web#2", user: "U0STRANGER"))
            #expect(refused.response_type == "ephemeral" && refused.text.contains("not in `slack.allowed_users`"))
            #expect(try harness.environment(2)?.desiredVersion == version)
            #expect(try harness.environment(2)?.status == .ready)

            // An allowed user puts it to sleep, wakes it and destroys it; the channel sees each.
            let slept = try answer(try await slash(harness, "sleep acme/web#2"))
            #expect(slept.response_type == "in_channel" && slept.text.contains("asked to sleep acme/web#2"), "\(slept.text)")
            #expect(try await harness.waitUntil { try harness.environment(2)?.status == .sleeping })
            #expect(try answer(try await slash(harness, "wake acme/web#2")).text.contains("asked to wake"))
            #expect(try await harness.waitUntil { try harness.environment(2)?.status == .ready })
            #expect(try answer(try await slash(harness, "destroy acme/web#2")).text.contains("asked to destroy"))
            #expect(try await harness.waitUntil { try harness.environment(2)?.status == .removed })
            let gone = try answer(try await slash(harness, "deploy acme/web#2 \(sha.prefix(8))"))
            #expect(gone.response_type == "ephemeral" && gone.text.hasPrefix("Nothing changed"), "\(gone.text)")
        }
    }

    @Test func rollbackThroughSlackServesThePreviousShaAndReportsToTheResponseURL() async throws {
        try await withSlack("slack-rollback") { harness, slack, slackURL in
            let (one, two) = try await deployedTwice(harness, 3, branch: "rolled")

            let respond = slackURL.appendingPathComponent("respond/r1").absoluteString
            let reply = try answer(try await slash(harness, "rollback acme/web#3", responseURL: respond))
            #expect(
                reply.response_type == "in_channel" && reply.text.contains("<@\(Self.allowed)> asked to deploy acme/web#3 at `\(one.prefix(12))`"),
                "\(reply.text)"
            )
            #expect(try await served(harness, "rolled", one))
            #expect(try await harness.waitUntil { await !slack.posts(to: "/respond/r1").isEmpty })
            let report = try #require(await slack.posts(to: "/respond/r1").first)
            #expect(report.text.contains("*ready* at `\(one.prefix(12))`") && report.responseType == "in_channel", "\(report.text)")

            let deploy = try answer(try await slash(harness, "deploy acme/web#3 \(two.prefix(10))", responseURL: respond))
            #expect(deploy.text.contains("at `\(two.prefix(12))`"))
            #expect(try await served(harness, "rolled", two))
        }
    }

    @Test func notificationsAreSentOnceRetriedThroughTwo500sAndNeverHoldADeploy() async throws {
        let broken = "  acme/broken:\n    image: \"stager/no-such-image:none\"\n    port: 8080\n"
        try await withSlack("slack-notify", extraRepos: broken) { harness, slack, _ in
            await slack.fail(2)
            let sha = Fixtures.sha("notify")
            try await harness.send("opened", number: 4, branch: "noticed", sha: sha)
            #expect(try await harness.waitSettled(4, status: .ready))
            #expect(try await harness.waitUntil(timeout: .seconds(60)) { await slack.posts(to: "/hooks/team").count == 1 })
            let ready = try #require(await slack.posts(to: "/hooks/team").first)
            #expect(ready.text.contains("acme/web#4") && ready.text.contains("is ready"), "\(ready.text)")
            #expect(await slack.attempts == 3)

            // Slack hangs: the push goes live and is ready while no post gets through; its notice follows once
            // Slack answers again.
            await slack.hold()
            try await harness.send("synchronize", number: 4, branch: "noticed", sha: Fixtures.sha("notify-2"), updatedAt: "2026-11-24T10:00:00Z")
            #expect(try await served(harness, "noticed", Fixtures.sha("notify-2")))
            #expect(try await harness.waitSettled(4, status: .ready))
            #expect(await slack.posts(to: "/hooks/team").count == 1, "the deploy did not wait for Slack")
            await slack.release()
            #expect(try await harness.waitUntil(timeout: .seconds(60)) { await slack.posts(to: "/hooks/team").count == 2 })

            try await harness.send("closed", number: 4, branch: "noticed", sha: Fixtures.sha("notify-2"), updatedAt: "2026-11-24T11:00:00Z")
            #expect(
                try await harness.waitUntil(timeout: .seconds(60)) {
                    await slack.posts(to: "/hooks/team").contains { $0.text.contains("was removed") }
                }
            )
            try await Task.sleep(for: .seconds(1))
            #expect(await slack.posts(to: "/hooks/team").count == 3, "one post per event, never twice")

            // A failed deploy says why, with a link to the environment's page.
            try await harness.send("opened", number: 5, branch: "broken", sha: Fixtures.sha("broken"), repo: "acme/broken")
            #expect(
                try await harness.waitUntil(timeout: .seconds(60)) {
                    await slack.posts(to: "/hooks/team").contains { $0.text.contains("acme/broken#5 failed") }
                }
            )
            let failed = try #require(await slack.posts(to: "/hooks/team").first { $0.text.contains("acme/broken#5 failed") })
            #expect(
                failed.text.contains("docker could not start the container") && failed.text.contains("/environments/acme/broken/5|history and logs>"),
                "\(failed.text)"
            )

            // A 4xx other than 429 will not get better: given up after one attempt, never retried.
            await slack.fail(1, status: 404)
            let attemptsBefore = await slack.attempts
            try await harness.send(
                "closed",
                number: 5,
                branch: "broken",
                sha: Fixtures.sha("broken"),
                updatedAt: "2026-11-24T11:00:00Z",
                repo: "acme/broken"
            )
            #expect(try await harness.waitUntil(timeout: .seconds(60)) { await slack.attempts == attemptsBefore + 1 })
            try await Task.sleep(for: .seconds(3))  // longer than the first retry's delay: none comes
            #expect(await slack.attempts == attemptsBefore + 1)
            #expect(await !slack.posts(to: "/hooks/team").contains { $0.text.contains("acme/broken#5 was removed") })
        }
    }

    @Test func theEnvironmentPagesFormsDeployAnEarlierShaAndAForgedPostIsRefused() async throws {
        try await withSlack("dashboard-actions") { harness, _, _ in
            let (one, two) = try await deployedTwice(harness, 5, branch: "paged")

            let auth = ("Authorization", "Bearer \(E2EHarness.adminToken)")
            let page = try await harness.request("GET", "/environments/acme/web/5", headers: [auth])
            #expect(page.status == 200)
            let cookie = try #require(page.headers["set-cookie"]?.split(separator: ";").first.map(String.init), "\(page.headers)")
            let csrf = try #require(page.body.firstMatch(of: /name="csrf" value="([0-9a-f]+)"/)?.output.1).description
            #expect(page.body.contains("<option value=\"\(one)\">"), "the history's shas are offered")

            let form = [("Content-Type", "application/x-www-form-urlencoded"), auth]
            let version = try #require(try harness.environment(5)).desiredVersion
            // Forged: no token, or a token of another session.
            #expect(
                try await harness.request(
                    "POST",
                    "/environments/acme/web/5/actions/destroy",
                    headers: form + [("Cookie", cookie)],
                    body: Data("x=1".utf8)
                ).status == 403
            )
            #expect(
                try await harness.request(
                    "POST",
                    "/environments/acme/web/5/actions/destroy",
                    headers: form + [("Cookie", "stager_session=ab12")],
                    body: Data("csrf=\(csrf)".utf8)
                ).status == 403
            )
            #expect(
                try await harness.request("POST", "/environments/acme/web/5/actions/destroy", headers: form, body: Data("csrf=\(csrf)".utf8)).status
                    == 403
            )
            #expect(try harness.environment(5)?.desiredVersion == version)

            let deploy = try await harness.request(
                "POST",
                "/environments/acme/web/5/actions/deploy",
                headers: form + [("Cookie", cookie)],
                body: Data("csrf=\(csrf)&sha=\(one)".utf8)
            )
            #expect(deploy.status == 303 && deploy.headers["location"] == "/environments/acme/web/5#history")
            #expect(try await served(harness, "paged", one))
            let events = try harness.app?.store.auditEvents(for: PullRequestKey(repo: "acme/web", number: 5), limit: 100) ?? []
            #expect(events.contains { $0.actor == "dashboard" && $0.sha == one })
        }
    }

    /// The same, as a person does it: headless Chromium opens the page, picks the earlier sha and clicks.
    @Test(.enabled(if: Chromium.path != nil)) func clickingDeployOnAnEarlierShaInChromiumServesIt() async throws {
        try await withSlack("dashboard-click") { harness, _, _ in
            let (one, two) = try await deployedTwice(harness, 6, branch: "clicked")

            let click = "document.querySelector('select[name=sha]').value = '\(one)'; document.querySelector('button[name=deploy-sha]').click(); true"
            let browser = try await SubprocessRunner().run(
                Command(
                    "timeout",
                    [
                        "90", "python3", Fixtures.repoRoot.appendingPathComponent("Tests/browser/act.py").path,
                        "--url", "http://127.0.0.1:\(harness.port)/environments/acme/web/6", "--header",
                        "Authorization: Bearer \(E2EHarness.adminToken)",
                        "--script", click, "--until", "#history",
                    ]
                )
            )
            #expect(browser.exitCode == 0, "\(browser.standardError.suffix(1000))")
            #expect(browser.standardOutput.contains("/environments/acme/web/6#history"))
            #expect(try await served(harness, "clicked", one))
            let events = try harness.app?.store.auditEvents(for: PullRequestKey(repo: "acme/web", number: 6), limit: 100) ?? []
            #expect(events.contains { $0.actor == "dashboard" && $0.sha == one })
        }
    }
}

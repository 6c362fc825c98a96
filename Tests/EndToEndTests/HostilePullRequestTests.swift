import Foundation
import StagerKit
import StagerTestSupport
import Testing

/// The threat model on the real engine and nginx: a PR's author controls its app, Dockerfile, build context,
/// branch name and title; visitors reach every preview; admins browse the dashboard while visiting other
/// sites. Each test is an attack that worked before the fix (see the README's "Security model").
@Suite("End to end: hostile pull requests", .serialized, .enabled(if: E2EHarness.available))
struct HostilePullRequestTests {
    /// A repository whose app serves `/` (its health path) from a file and runs `script` (the lines of a
    /// shell CGI script) for `/cgi-bin/app`, so a test can make the app answer any headers it likes.
    static func cgiRepo(_ name: String, script: [String], extra: String = "") throws -> String {
        let lines = ["#!/bin/sh"] + script
        let quoted = lines.map { "'" + $0.replacingOccurrences(of: "'", with: "'\\''") + "'" }.joined(separator: " ")
        let shell =
            "mkdir -p /www/cgi-bin && echo \"front sha=$STAGER_SHA\" > /www/index.html && printf '%s\\n' \(quoted) > /www/cgi-bin/app"
            + " && chmod +x /www/cgi-bin/app && exec /bin/busybox httpd -f -p 8080 -h /www"
        let command = String(decoding: try JSONEncoder().encode(["/bin/busybox", "sh", "-c", shell]), as: UTF8.self)
        let block =
            ["  \(name):", "    image: \"\(E2EHarness.image)\"", "    command: \(command)", "    port: 8080"]
            + extra.split(separator: "\n").map { "    " + $0 }
        return block.joined(separator: "\n") + "\n"
    }

    /// A CGI answer with `headers`, whose body names the app and the URI it was asked for.
    static func answer(headers: [String]) -> [String] {
        ["printf 'Content-Type: text/plain\\r\\n'"] + headers.map { "printf '\($0)\\r\\n'" } + [
            "printf '\\r\\n'", "echo \"own answer uri=$REQUEST_URI\"",
        ]
    }

    func sleep(_ harness: E2EHarness, _ reference: String) async throws {
        let slept = try await harness.stager(["sleep", reference])
        #expect(slept.exitCode == 0 && slept.standardOutput.contains("sleeping"), "\(slept.standardOutput)\(slept.standardError)")
    }

    // MARK: 1. Apps cannot steer nginx

    /// An app that answers `X-Accel-Redirect` to a loopback port made nginx fetch that port for the visitor
    /// (another preview past its password, serve's API, a metadata service). Now nginx ignores the app's
    /// X-Accel headers everywhere it proxies to it: awake, and on the hand-back of a request that woke it.
    @Test func anAppsXAccelHeadersDoNotSteerNginxAwakeOrAsleep() async throws {
        let (secretPort, secret, secretServer) = try await LoopbackSecret.start()
        defer { Task { await secretServer.stop() } }
        let script = Self.answer(headers: ["X-Accel-Redirect: /.stager-upstream/127.0.0.1/\(secretPort)"])
        try await E2EHarness.run(name: "accel", extraRepos: try Self.cgiRepo("acme/accel", script: script)) { harness in
            try await harness.send("opened", number: 1, branch: "accel", sha: Fixtures.sha("accel"), repo: "acme/accel")
            #expect(try await harness.waitSettled(1, repo: "acme/accel", status: .ready, timeout: .seconds(60)))
            // The secret is there to be had on loopback.
            #expect(try await HTTPProbe().get(host: "127.0.0.1", port: secretPort, path: "/").body == secret)

            let awake = try await harness.requestThroughNginx("GET", slug: "accel", path: "/cgi-bin/app?awake=1")
            #expect(awake.status == 200 && awake.body.contains("own answer uri=/cgi-bin/app?awake=1"), "\(awake)")
            #expect(!awake.body.contains(secret) && awake.headers["x-accel-redirect"] == nil)

            try await sleep(harness, "acme/accel#1")
            let woken = try await harness.requestThroughNginx("GET", slug: "accel", path: "/cgi-bin/app?asleep=1")
            #expect(woken.status == 200 && woken.body.contains("own answer uri=/cgi-bin/app?asleep=1"), "\(woken)")
            #expect(!woken.body.contains(secret))
            #expect(try await harness.waitSettled(1, repo: "acme/accel", status: .ready, timeout: .seconds(60)))
        }
    }

    // MARK: 2. Any link wakes its own preview, and only its own

    /// nginx replaced the matched `/` with the wake path, so `/about` asked serve for `…/wake/<slug>about`
    /// (404, no wake) and `/-billing` on `x` woke `x-billing`. Now every path and query on a sleeping preview
    /// is answered by its own app for that URI, and a wake key names one environment.
    @Test func aDeepLinkWakesItsOwnPreviewAndOnlyIt() async throws {
        let repo = try Self.cgiRepo("acme/deep", script: Self.answer(headers: []))
        try await E2EHarness.run(name: "deep", extraRepos: repo) { harness in
            try await harness.send("opened", number: 1, branch: "wake-x", sha: Fixtures.sha("x"), repo: "acme/deep")
            try await harness.send("opened", number: 2, branch: "wake-x-billing", sha: Fixtures.sha("billing"), repo: "acme/deep")
            #expect(try await harness.waitSettled(1, repo: "acme/deep", status: .ready, timeout: .seconds(60)))
            #expect(try await harness.waitSettled(2, repo: "acme/deep", status: .ready, timeout: .seconds(60)))
            try await sleep(harness, "acme/deep#1")
            try await sleep(harness, "acme/deep#2")

            // A deep link with a query: held, and answered by the app for exactly that URI.
            let deep = try await harness.requestThroughNginx("GET", slug: "wake-x", path: "/cgi-bin/app?a=1&b=two")
            #expect(deep.status == 200 && deep.body.contains("own answer uri=/cgi-bin/app?a=1&b=two"), "\(deep)")
            #expect(try await harness.waitSettled(1, repo: "acme/deep", status: .ready, timeout: .seconds(60)))
            // The other preview, whose slug the first one's plus a path would spell, still sleeps.
            #expect(try harness.environment(2, repo: "acme/deep")?.status == .sleeping)

            try await sleep(harness, "acme/deep#1")
            let billing = try await harness.requestThroughNginx("GET", slug: "wake-x", path: "/-billing")
            #expect(billing.status == 404 && billing.headers["x-stager-upstream"]?.contains("wake-x-billing") == false, "\(billing)")
            #expect(try harness.environment(2, repo: "acme/deep")?.status == .sleeping)
            #expect(try await harness.waitSettled(1, repo: "acme/deep", status: .ready, timeout: .seconds(60)))

            // serve's wake route: one environment's key does not wake another.
            let token = try #require(try harness.app?.store.secret(named: "wake.token"))
            let keys = VhostKeys(secret: token)
            let crossed = try await harness.request(
                "GET",
                "/_stager/wake/wake-x-billing",
                headers: [("X-Stager-Wake-Token", keys.wake(slug: "wake-x"))]
            )
            #expect(crossed.status == 403)
            #expect(try harness.environment(2, repo: "acme/deep")?.status == .sleeping)
        }
    }

    // MARK: 3. The API cannot be driven cross-site

    /// Basic auth (which a browser keeps and sends with any page's requests) put a preview to sleep through
    /// the API, and no POST checked where it came from. Now API writes take the bearer token only, and every
    /// POST from another site's page is 403 and changes nothing.
    @Test func theAPIAndTheDashboardRefuseCrossSiteWrites() async throws {
        try await E2EHarness.run(name: "csrf", extraServer: "  admin_token_env: E2E_ADMIN_TOKEN") { harness in
            try await harness.send("opened", number: 1, branch: "csrf", sha: Fixtures.sha("csrf"))
            #expect(try await harness.waitSettled(1, status: .ready, timeout: .seconds(60)))
            let basic = "Basic " + Data("admin:\(E2EHarness.adminToken)".utf8).base64EncodedString()
            let bearer = "Bearer \(E2EHarness.adminToken)"
            let sleepPath = "/api/environments/acme/web/1/sleep"

            let viaBasic = try await harness.request("POST", sleepPath, headers: [("Authorization", basic)])
            #expect(viaBasic.status == 401 && viaBasic.body.contains("Bearer"), "\(viaBasic)")
            for headers in [
                [("Sec-Fetch-Site", "cross-site")], [("Sec-Fetch-Site", "same-site")], [("Origin", "https://evil.example")],
                [("Origin", "http://feature.preview.localhost:\(harness.nginxPort)")],
            ] {
                let refused = try await harness.request("POST", sleepPath, headers: [("Authorization", bearer)] + headers)
                #expect(refused.status == 403, "\(headers): \(refused)")
            }
            #expect(try harness.environment(1)?.asleep == false)
            // Reads keep basic auth: the dashboard's own polling uses it.
            #expect(try await harness.request("GET", "/api/environments", headers: [("Authorization", basic)]).status == 200)

            // The dashboard's form: the right CSRF token is not enough from another site's page.
            let page = try await harness.request("GET", "/environments/acme/web/1", headers: [("Authorization", basic)])
            #expect(page.status == 200)
            for header in ["content-security-policy", "x-frame-options", "x-content-type-options"] {
                #expect(page.headers[header] != nil, "\(header)")
            }
            #expect(page.headers["content-security-policy"]?.contains("frame-ancestors 'none'") == true)
            let cookie = try #require(page.headers["set-cookie"]?.split(separator: ";").first.map(String.init))
            let csrf = try #require(
                page.body.range(of: #"name="csrf" value="([0-9a-f]+)""#, options: .regularExpression).map {
                    String(page.body[$0].dropFirst(#"name="csrf" value=""#.count).dropLast())
                }
            )
            let form = Data("csrf=\(csrf)".utf8)
            let formHeaders = [("Authorization", basic), ("Cookie", cookie), ("Content-Type", "application/x-www-form-urlencoded")]
            let crossSite = try await harness.request(
                "POST",
                "/environments/acme/web/1/actions/sleep",
                headers: formHeaders + [("Sec-Fetch-Site", "cross-site")],
                body: form
            )
            #expect(crossSite.status == 403, "\(crossSite)")
            #expect(try harness.environment(1)?.asleep == false)
            let own = try await harness.request(
                "POST",
                "/environments/acme/web/1/actions/sleep",
                headers: formHeaders + [("Sec-Fetch-Site", "same-origin"), ("Origin", "http://127.0.0.1:\(harness.port)")],
                body: form
            )
            #expect(own.status == 303, "\(own)")

            // A script with the bearer token still works.
            let scripted = try await harness.request("POST", "/api/environments/acme/web/1/wake", headers: [("Authorization", bearer)])
            #expect(scripted.status == 202, "\(scripted)")
        }
    }

    // MARK: 4. A PR's build cannot read the host

    /// A Dockerfile that is a symlink to `/proc/self/environ` made the docker CLI read serve's environment
    /// (the webhook secret, the admin token) into the build, and its error into the public comment. Now a
    /// Dockerfile or context that leaves the checkout fails the deploy, naming it; children get an
    /// allow-listed environment; and no configured secret reaches any text.
    @Test func aSymlinkedDockerfileOrContextFailsTheDeployAndLeaksNothing() async throws {
        let dir = try TestConfig.temporaryDirectory("e2e-symlink")
        let git = try await GitFixture(in: dir)
        let repo = BuildTests.repo(origin: git.origin)
        try await E2EHarness.run(
            name: "symlink",
            extraRepos: repo,
            extraConfig: BuildTests.allowFiles,
            extraServer: "  admin_token_env: E2E_ADMIN_TOKEN"
        ) { harness in
            let secrets = [TestConfig.secret, E2EHarness.adminToken, harness.token]
            let environ = try await git.commit(links: ["Dockerfile": "/proc/self/environ"], note: "environ")
            try await harness.send("opened", number: 1, branch: "feature", sha: environ, repo: "acme/built")
            #expect(try await harness.settledStatus(1, repo: "acme/built", timeout: .seconds(120)) == .failed)
            let env = try #require(try harness.environment(1, repo: "acme/built"))
            #expect(env.failureReason?.contains("build.dockerfile (Dockerfile) is a symlink") == true, "\(env.failureReason ?? "")")

            let comment = try #require(await harness.github.comments(on: "acme/built", issue: 1).first)
            #expect(comment.body.contains("is a symlink"), "\(comment.body)")
            let texts = [
                comment.body, try await harness.get("/").body, try await harness.get("/api/environments").body,
                try await harness.get("/environments/acme/built/1").body,
            ]
            for text in texts {
                for secret in secrets { #expect(!text.contains(secret)) }
            }
        }
    }

    /// The same refusal for a build context that is a symlink to `/` (the CLI would send the host's files).
    @Test func aContextThatLeavesTheCheckoutFailsTheDeploy() async throws {
        let dir = try TestConfig.temporaryDirectory("e2e-context")
        let git = try await GitFixture(in: dir)
        let repo = """
              acme/ctx:
                build:
                  context: ctx
                  dockerfile: Dockerfile
                clone_url: "file://\(git.origin.path)"
                port: 8080

            """
        try await E2EHarness.run(name: "context", extraRepos: repo, extraConfig: BuildTests.allowFiles) { harness in
            let sha = try await git.commit(links: ["ctx": "/"], note: "root")
            try await harness.send("opened", number: 1, branch: "feature", sha: sha, repo: "acme/ctx")
            #expect(try await harness.settledStatus(1, repo: "acme/ctx", timeout: .seconds(120)) == .failed)
            let reason = try harness.environment(1, repo: "acme/ctx")?.failureReason ?? ""
            #expect(reason.contains("build.context (ctx) is a symlink"), "\(reason)")
            #expect(try await harness.containers().isEmpty)
        }
    }

    /// A Dockerfile's RUN step that forks without end: every build's RUN steps share one cgroup whose
    /// `pids.max` is `build.pids`, so the shell cannot fork past it and the build fails (before, it forked on).
    @Test func aForkBombInABuildStopsAtBuildPids() async throws {
        let dir = try TestConfig.temporaryDirectory("e2e-forkbomb")
        let git = try await GitFixture(in: dir)
        try await E2EHarness.run(
            name: "forkbomb",
            extraRepos: BuildTests.repo(origin: git.origin),
            extraConfig: BuildTests.allowFiles + "\n  pids: 64"
        ) { harness in
            let bomb = GitFixture.dockerfile.replacingOccurrences(
                of: "ARG SHA",
                with: """
                    RUN i=0; while [ $i -lt 300 ]; do /bin/busybox sleep 30 & i=$((i+1)); done; echo forked-all-$i
                    ARG SHA
                    """
            )
            let sha = try await git.commit(bomb, note: "bomb")
            try await harness.send("opened", number: 1, branch: "feature", sha: sha, repo: "acme/built")
            #expect(try await harness.settledStatus(1, repo: "acme/built", timeout: .seconds(120)) == .failed)
            let log = ImageBuilder.tail(
                ImageBuilder.logFile(dataDir: harness.dir.appendingPathComponent("data"), key: PullRequestKey(repo: "acme/built", number: 1)),
                lines: 400
            )
            #expect(log.contains("can't fork") && !log.contains("forked-all-300"), "\(log.suffix(1500))")
            #expect(try await harness.stager(["check"]).standardOutput.contains("64 processes together"))
        }
    }

    /// A failed app printed its secret variable, and the log's tail went into the public comment unmasked.
    @Test func aFailedAppsSecretStaysOutOfEveryText() async throws {
        let value = "e2e-app-secret-4f1a9c77"
        let extra = "env: {API_KEY: \"\(value)\"}\nhealth_timeout: 5s"
        let repo = E2EHarness.servingRepo("acme/leaky", extra).replacingOccurrences(
            of: E2EHarness.servingCommand,
            with: #"["/bin/busybox", "sh", "-c", "echo starting with key=$API_KEY; sleep 3; exit 1"]"#
        )
        try await E2EHarness.run(name: "leaky", extraRepos: repo) { harness in
            try await harness.send("opened", number: 1, branch: "leaky", sha: Fixtures.sha("leaky"), repo: "acme/leaky")
            #expect(try await harness.settledStatus(1, repo: "acme/leaky", timeout: .seconds(60)) == .failed)
            let comment = try #require(await harness.github.comments(on: "acme/leaky", issue: 1).first).body
            #expect(comment.contains("starting with key=***"), "\(comment)")
            let texts = [
                comment, try await harness.get("/").body, try await harness.get("/api/environments").body,
                try await harness.get("/api/environments/acme/leaky/1").body, try await harness.get("/environments/acme/leaky/1").body,
            ]
            for text in texts { #expect(!text.contains(value)) }
        }
    }

    // MARK: 5. Protected previews stay protected on the shared host

    /// The shared host hops back into nginx from loopback, and `/.stager-probe` let loopback in without a
    /// password: `X-Stager-Env: pr-14` and `/.stager-probe` gave a protected preview's front page. Now the
    /// shared host asks for the same password, answers 404 there, and the probe needs Stager's key.
    @Test func theSharedHostProtectsLikeTheEnvironmentsOwnHost() async throws {
        let extra = "shared_host: acme-guarded\ndefault_env: pr-1\naccess:\n  users_env: E2E_PREVIEW_USERS"
        let allowListed = "shared_host: acme-office\ndefault_env: pr-2\naccess:\n  allow_ips: [\"127.0.0.1/32\"]"
        try await E2EHarness.run(
            name: "guarded",
            extraRepos: E2EHarness.servingRepo("acme/guarded", extra)
                + E2EHarness.servingRepo("acme/office", allowListed)
        ) { harness in
            let sha = Fixtures.sha("guarded")
            try await harness.send("opened", number: 1, branch: "guarded", sha: sha, repo: "acme/guarded")
            try await harness.send("opened", number: 2, branch: "office", sha: Fixtures.sha("office"), repo: "acme/office")
            #expect(try await harness.waitSettled(1, repo: "acme/guarded", status: .ready, timeout: .seconds(60)))
            #expect(try await harness.waitSettled(2, repo: "acme/office", status: .ready, timeout: .seconds(60)))
            let probe = HTTPProbe(timeout: .seconds(10))
            let password = "Basic " + Data(E2EHarness.previewUsers.utf8).base64EncodedString()
            @Sendable func shared(_ path: String, host: String = "acme-guarded", _ headers: [String: String] = [:]) async throws -> ProbeAnswer {
                try await probe.get(host: "127.0.0.1", port: harness.nginxPort, path: path, hostHeader: "\(host).preview.localhost", headers: headers)
            }
            #expect(try await harness.waitUntil(timeout: .seconds(30)) { try await shared("/", ["Authorization": password]).status == 200 })
            #expect(try await shared("/").status == 401)
            for headers in [["X-Stager-Env": "pr-1"], ["X-Stager-Env": "pr-1", "Authorization": password]] {
                let probed = try await shared("/.stager-probe", headers)
                #expect(probed.status == 404 && !probed.body.contains("sha=\(sha)"), "\(probed)")
            }
            // The environment's own host: its probe answers only with Stager's key.
            let own = try await probe.get(host: "127.0.0.1", port: harness.nginxPort, path: "/.stager-probe", hostHeader: "guarded.preview.localhost")
            #expect(own.status == 404 && !own.body.contains("sha=\(sha)"), "\(own)")

            // The choice's redirect stays on this host.
            for path in ["//evil.example/?stager-env=pr-1", "/\\evil.example/?stager-env=pr-1", "///evil.example/x?stager-env=pr-1"] {
                let moved = try await shared(path, ["Authorization": password])
                let location = moved.headers["location"] ?? ""
                #expect(moved.status == 302 && !location.hasPrefix("//") && !location.hasPrefix("/\\"), "\(path): \(location)")
                #expect(URL(string: location)?.host.map { $0 == "acme-guarded.preview.localhost" } ?? location.hasPrefix("/"), "\(path): \(location)")
            }
            // An allow-listed repository's shared host serves the visitors its list lets in (the hop carries the key).
            let office = try await shared("/", host: "acme-office")
            #expect(office.status == 200 && office.headers["x-stager-env"] == "pr-2", "\(office)")
            // The generated password file is for nginx's group, not for everyone on the host.
            let file = harness.dir.appendingPathComponent("data")
            let htpasswd = try #require(
                FileManager.default.enumerator(atPath: file.path)?.compactMap { $0 as? String }.first { $0.hasSuffix("htpasswd") }
            )
            let mode = try FileManager.default.attributesOfItem(atPath: file.appendingPathComponent(htpasswd).path)[.posixPermissions] as? Int
            #expect(mode == 0o640)
        }
    }

    // MARK: 6. Escaping that holds for every Unicode string

    /// swift-mustache escaped one Character at a time: a `<` glued to a prepended or combining mark went
    /// through, and a fork PR's title became a real `<img onerror=…>` on the dashboard.
    @Test func titlesAuthorsAndBranchesNeverBecomeMarkup() async throws {
        let corpus = [
            "\u{0600}<img src=x onerror=alert(1)>", "\"\u{0301} onmouseover=alert(2) x=\"", "<\u{0301}script>alert(3)</script>",
            "'\u{0301}><svg onload=alert(4)>", "&\u{0301}lt;b&\u{0301}gt;", "\u{200D}<iframe src=//evil.example>",
        ]
        try await E2EHarness.run(name: "markup", extraRepos: E2EHarness.servingRepo("acme/markup", "allow_forks: true")) { harness in
            for (index, title) in corpus.enumerated() {
                try await harness.send(
                    "opened",
                    number: index + 1,
                    branch: "m\(index)",
                    sha: Fixtures.sha("m\(index)"),
                    repo: "acme/markup",
                    title: title,
                    author: title
                )
            }
            for index in corpus.indices { #expect(try await harness.settledStatus(index + 1, repo: "acme/markup") != nil) }
            let pages =
                [try await harness.get("/")] + (try await corpus.indices.asyncMap { try await harness.get("/environments/acme/markup/\($0 + 1)") })
            for page in pages {
                #expect(
                    page.headers["content-security-policy"]?.contains("script-src 'sha256-") == true || page.headers["content-security-policy"] != nil
                )
                // Each string shows as text: no element, and no quote that could end an attribute.
                for tag in ["<img", "<svg", "<iframe", "<\u{0301}script", "\u{0600}<", "\"\u{0301}", "'\u{0301}"] {
                    #expect(!page.body.contains(tag), "\(tag)")
                }
                #expect(!page.body.unicodeScalars.split(separator: "<").dropFirst().contains { $0.first == "\u{0301}" })
            }
            #expect(pages[0].body.contains(HTMLEscaping.escape(corpus[0])))
        }
    }

    // MARK: 7. Strangers cannot grow serve

    /// 200 unsigned requests with made-up event names made 200 metric series. Now the label is one of four.
    /// Requests that would wake more environments than a minute allows are told to retry, a connection that
    /// sends nothing is closed, and fork PRs beyond `forks.max_blocked` are not recorded until labeled.
    @Test func strangersCannotGrowServe() async throws {
        let limits = "sleep:\n  wakes_per_minute: 1\nforks:\n  max_blocked: 2"
        try await E2EHarness.run(name: "grow", extraConfig: limits, extraServer: "  idle_timeout: 1s") { harness in
            for index in 0..<200 {
                _ = try await harness.post(Data("{}".utf8), event: "made-up-\(index)", signed: false)
            }
            let metrics = try await harness.get("/metrics").body
            let events = Set(
                metrics.split(separator: "\n").filter { $0.hasPrefix("stager_webhooks_total{") }.compactMap { line in
                    line.range(of: #"event="[^"]*""#, options: .regularExpression).map { String(line[$0]) }
                }
            )
            #expect(
                events.isSubset(of: ["event=\"pull_request\"", "event=\"push\"", "event=\"ping\"", "event=\"other\""]) && !events.isEmpty,
                "\(events)"
            )

            // Two sleeping previews, one wake a minute: the second is told to retry, and stays asleep.
            for number in [1, 2] {
                try await harness.send("opened", number: number, branch: "grow-\(number)", sha: Fixtures.sha("grow-\(number)"))
                #expect(try await harness.waitSettled(number, status: .ready, timeout: .seconds(60)))
                try await sleep(harness, "acme/web#\(number)")
            }
            #expect(try await harness.requestThroughNginx("GET", slug: "grow-1").status == 200)
            let refused = try await harness.requestThroughNginx("GET", slug: "grow-2")
            #expect(refused.status == 503 && refused.headers["retry-after"] != nil, "\(refused)")
            #expect(try harness.environment(2)?.status == .sleeping)

            // A connection that says nothing is closed after server.idle_timeout.
            #expect(try await IdleConnection.isClosed(port: harness.port, within: .seconds(5)))

            // Fork PRs past forks.max_blocked: answered, not recorded; a writer's label records and deploys it.
            await harness.github.setPermission("maintainer", "write")
            for number in 10..<13 {
                let (status, body) = try await harness.send(
                    "opened",
                    number: number,
                    branch: "main",
                    sha: Fixtures.sha("fork-\(number)"),
                    headRepo: "stranger/web"
                )
                #expect(status == (number < 12 ? 202 : 200), "\(body)")
            }
            #expect(try await harness.waitSettled(11, status: .blocked))
            #expect(try harness.environment(12) == nil)
            try await harness.send(
                "labeled",
                number: 12,
                branch: "main",
                sha: Fixtures.sha("fork-12"),
                updatedAt: "2026-11-24T09:01:00Z",
                headRepo: "stranger/web",
                label: "stager:deploy",
                sender: "maintainer"
            )
            #expect(try await harness.waitSettled(12, status: .ready, timeout: .seconds(60)))
        }
    }

    /// A burst of deliveries for PRs that must wait for the label, as the bench's ack scenario sends them
    /// (200 PRs, opened then pushed to): each new one is checked against `forks.max_blocked`. (A first
    /// version of that check read the store with blocking reads, which under this load took every thread and
    /// serve stopped answering: with it this test hangs, tried here, and scripts/test's time limit names it.)
    @Test(.timeLimit(.minutes(2))) func aBurstOfGatedPullRequestsIsAnsweredAtOnce() async throws {
        try await E2EHarness.run(name: "burst", extraRepos: E2EHarness.servingRepo("acme/gated", "require_label: true")) { harness in
            // 50 in flight at once, as a sender at 200/s has: 1000 connections at once timed out connecting
            // on a machine busy with every suite.
            let statuses = try await withThrowingTaskGroup(of: Int.self) { group in
                var statuses: [Int] = []
                for index in 0..<1000 {
                    if index >= 50, let status = try await group.next() { statuses.append(status) }
                    let number = index % 200 + 1
                    group.addTask {
                        try await harness.send(
                            index < 200 ? "opened" : "synchronize",
                            number: number,
                            branch: "b\(number)",
                            sha: Fixtures.sha("b\(index)"),
                            updatedAt: "2026-11-24T09:\(String(format: "%02d", index / 200)):00Z",
                            repo: "acme/gated"
                        ).0
                    }
                }
                return try await group.reduce(into: statuses) { $0.append($1) }
            }
            #expect(statuses.count == 1000 && statuses.allSatisfy { (200..<300).contains($0) })
            #expect(try await harness.get("/healthz").status == 200)
        }
    }

    // MARK: 8. Smaller holes

    /// A `labeled` delivery signed with a secret other repositories share claimed a label nobody added:
    /// Stager now reads the PR back from GitHub before it approves.
    @Test func aForgedLabelDoesNotApprove() async throws {
        try await E2EHarness.run(name: "forged") { harness in
            await harness.github.setPermission("maintainer", "write")
            let sha = Fixtures.sha("forged")
            #expect(try await harness.send("opened", number: 5, branch: "main", sha: sha, headRepo: "mallory/web").0 == 202)
            #expect(try await harness.waitSettled(5, status: .blocked))
            // GitHub shows the PR without the label: the delivery is posted as is, not through the harness's helper.
            await harness.github.setPull(number: 5, branch: "main", sha: sha)
            let forged = try Fixtures.pullRequest(
                action: "labeled",
                repo: "acme/web",
                number: 5,
                branch: "main",
                sha: sha,
                updatedAt: "2026-11-24T09:01:00Z",
                headRepo: "mallory/web",
                label: "stager:deploy",
                sender: "maintainer"
            )
            #expect(try await harness.post(forged, event: "pull_request").0 == 202)
            #expect(
                try await harness.waitUntil(timeout: .seconds(30)) {
                    try harness.app?.store.auditEvents(for: PullRequestKey(repo: "acme/web", number: 5), limit: 50)
                        .contains { $0.message.contains("GitHub does not show stager:deploy") } == true
                }
            )
            #expect(try harness.environment(5)?.status == .blocked)
            #expect(try await harness.containers().isEmpty)
        }
    }

    /// Someone else's comment that carries Stager's marker is neither edited nor deleted.
    @Test func aStrangersMarkerCommentIsLeftAlone() async throws {
        try await E2EHarness.run(name: "marker") { harness in
            let stranger = await harness.github.seedComment(
                repo: "acme/web",
                issue: 6,
                body: "\(CommentMarker.marker) I am not Stager",
                author: "mallory"
            )
            try await harness.send("opened", number: 6, branch: "marker", sha: Fixtures.sha("marker"))
            #expect(try await harness.waitSettled(6, status: .ready, timeout: .seconds(60)))
            let comments = await harness.github.comments(on: "acme/web", issue: 6)
            #expect(comments.count == 2 && comments.first { $0.id == stranger }?.body == "\(CommentMarker.marker) I am not Stager")
            try await harness.send("closed", number: 6, branch: "marker", sha: Fixtures.sha("marker"), updatedAt: "2026-11-24T09:02:00Z")
            #expect(try await harness.waitUntil(timeout: .seconds(60)) { try harness.environment(6)?.status == .removed })
            #expect(await harness.github.comments(on: "acme/web", issue: 6).map(\.id) == [stranger])
        }
    }
}

/// A TCP connection to serve that never sends a byte.
enum IdleConnection {
    static func isClosed(port: Int, within limit: Duration) async throws -> Bool {
        let socket = Foundation.socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard socket >= 0 else { return false }
        defer { close(socket) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(socket, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else { return false }
        var timeout = timeval(tv_sec: Int(limit.components.seconds), tv_usec: 0)
        setsockopt(socket, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var byte: UInt8 = 0
        // 0: the server closed it; -1 with a timeout: still open.
        return recv(socket, &byte, 1, 0) == 0
    }
}

extension Collection {
    func asyncMap<T>(_ transform: (Element) async throws -> T) async rethrows -> [T] {
        var results: [T] = []
        for element in self { results.append(try await transform(element)) }
        return results
    }
}

/// The executable's side of it: a graceful stop, and a refusal to serve everyone by accident.
@Suite("End to end: serve's start and stop", .serialized, .enabled(if: E2EHarness.available))
struct ServeStartStopTests {
    /// SIGTERM is how systemd and every supervisor stop serve: it stops gracefully and exits 0.
    @Test func aSigtermStopsServeWithExitZero() async throws {
        try await E2EHarness.run(name: "sigterm", start: false) { harness in
            let port = try E2EHarness.freePort()
            _ = try harness.loadConfig(port: port)
            let log = harness.dir.appendingPathComponent("serve.log")
            let serve = try StagerProcess(config: harness.configFile, environment: harness.environment, log: log)
            #expect(try await harness.waitUntil { (try? await harness.probeHealth(port: port)) == true })
            #expect(try await serve.terminate() == 0)
            let printed = try String(contentsOf: log, encoding: .utf8)
            #expect(!printed.contains("CancellationError") && !printed.contains("Error:"), "\(printed.suffix(2000))")
        }
    }

    /// Beyond loopback without an admin token, serve would hand the dashboard, the API and /metrics to
    /// anyone: it refuses to start, exit 2, naming the key.
    @Test func aPublicListenWithoutATokenIsRefused() async throws {
        let dir = try TestConfig.temporaryDirectory("public-serve")
        let file = dir.appendingPathComponent("stager.yml")
        try "server:\n  listen: \"0.0.0.0:0\"\ndata_dir: data\n".write(to: file, atomically: true, encoding: .utf8)
        let refused = try await SubprocessRunner().run(
            Command(
                StagerProcess.binary,
                ["serve", "--config", file.path],
                environment: ["STAGER_WEBHOOK_SECRET": "s"],
                timeout: .seconds(60)
            )
        )
        #expect(
            refused.exitCode == 2 && refused.standardError.contains("server.admin_token_env") && refused.standardError.contains("public_read"),
            "\(refused.standardError)"
        )
    }
}

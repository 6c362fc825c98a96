import Foundation
import StagerKit
import StagerTestSupport
import Testing

/// Git-valid branch names chosen to hurt: injections against nginx, the shell and Mustache, unicode, the
/// longest names, and names that differ only in case or punctuation. (Git refuses spaces, control
/// characters, `~^:?*[\`, `..` and `@{`, so none of those appear.)
let hostileBranches: [String] = [
    "feature/Login-Page", "feature/login-page", "feature_login_page", "feature.login.page", "FEATURE/LOGIN-PAGE",
    "a;b", "semi;colon;", "$(touch${IFS}/tmp/stager-pwned-1)", "`touch${IFS}/tmp/stager-pwned-2`", "feat/$(id)",
    "x;}server{listen${IFS}127.0.0.1:1;", "};include${IFS}/etc/passwd;#", "proxy_pass;evil.example", "add_header${IFS}X-Evil${IFS}1;",
    "nginx_$request_uri", "$host", "${PATH}", "feat\"quoted\"", "feat'single'", "a|b&c", "a&&b", "a||b", "#hash", "a>b", "a<b",
    "<script>alert(1)</script>", "back`tick", "brace{open", "brace}close", "paren(open", "{{branch}}", "{{{slug}}}",
    "émoji-🚀", "日本語ブランチ", "Ünïcödé", "\u{202E}rtl-override", "zero\u{200B}width", "user@host", "---", "___",
    "-leading-dash", "trailing-dash-", "%2e%2e%2fetc", "release/1.2.3", "a/b/c/d/e/f",
    String(repeating: "x", count: 63), String(repeating: "y", count: 64), "long/" + String(repeating: "z", count: 245),
]

@Suite("End to end: security", .serialized, .enabled(if: E2EHarness.available))
struct SecurityTests {
    static let forksRepo = E2EHarness.servingRepo("acme/forks", "allow_forks: true")
    static let gatedRepo = E2EHarness.servingRepo("acme/gated", "require_label: true")
    static let protectedRepos =
        E2EHarness.servingRepo("acme/private", "access:\n  users_env: E2E_PREVIEW_USERS")
        + E2EHarness.servingRepo("acme/office", "access:\n  allow_ips: [\"10.0.0.0/8\"]")
    static let ownSecretRepo = E2EHarness.servingRepo("acme/own", "webhook_secret_env: E2E_OWN_SECRET")

    /// Every hostile name, plus two forks that both call their branch `main`, opened end to end: valid unique
    /// slugs, `nginx -t` passes, each URL serves its own PR, the raw name travels intact in labels and
    /// variables, and no injection created a file.
    @Test func hostileBranchCorpus() async throws {
        let corpus = hostileBranches.map { ($0, "acme/forks") } + [("main", "alice/web"), ("main", "bob/web")]
        #expect(corpus.count >= 40)
        try await E2EHarness.run(name: "hostile", extraRepos: Self.forksRepo, extraLimits: "  concurrent_deploys: 8") { harness in
            for (index, (branch, head)) in corpus.enumerated() {
                let status = try await harness.send(
                    "opened",
                    number: 100 + index,
                    branch: branch,
                    sha: Fixtures.sha("hostile-\(index)"),
                    repo: "acme/forks",
                    headRepo: head
                ).0
                #expect(status == 202, "\(branch)")
            }
            var slugs: [String] = []
            for (index, (branch, _)) in corpus.enumerated() {
                #expect(try await harness.settledStatus(100 + index, repo: "acme/forks", timeout: .seconds(120)) == .ready, "\(branch)")
                let env = try #require(try harness.environment(100 + index, repo: "acme/forks"))
                #expect(Slug.isValidLabel(env.slug) && env.slug.count <= 63, "\(branch) → \(env.slug)")
                slugs.append(env.slug)
                let page = try await harness.requestThroughNginx(slug: env.slug)
                #expect(page.status == 200 && page.body.contains("sha=\(Fixtures.sha("hostile-\(index)"))"), "\(branch): \(page.body)")
                #expect(env.commentBody?.contains(MarkdownEscaping.codeSpan(branch)) == true, "\(branch)")
            }
            #expect(Set(slugs).count == corpus.count)
            #expect(slugs.prefix(1) == ["feature-login-page"])
            #expect(harness.vhosts().count == corpus.count)
            let nginx = try harness.loadConfig().nginx
            #expect(try await SubprocessRunner().run(Command(argv: nginx.testCommand)).succeeded)
            // The raw name reaches the container intact, as a label and as STAGER_BRANCH (argv and env-file, never a shell).
            let labels = try await SubprocessRunner().check(
                Command(
                    "docker",
                    ["inspect", "--format", "{{index .Config.Labels \"stager.pr\"}}\t{{index .Config.Labels \"stager.branch\"}}"]
                        + harness.containers().map(\.id)
                )
            )
            var byNumber: [Int: String] = [:]
            for line in labels.standardOutput.split(separator: "\n") {
                let parts = line.split(separator: "\t", maxSplits: 1, omittingEmptySubsequences: false)
                if parts.count == 2, let number = Int(parts[0]) { byNumber[number] = String(parts[1]) }
            }
            for (index, (branch, _)) in corpus.enumerated() { #expect(byNumber[100 + index] == branch) }
            for marker in ["/tmp/stager-pwned-1", "/tmp/stager-pwned-2"] { #expect(!FileManager.default.fileExists(atPath: marker)) }
            let sitesFiles = try FileManager.default.contentsOfDirectory(atPath: harness.dir.appendingPathComponent("nginx/sites").path)
            #expect(sitesFiles.allSatisfy { $0.hasSuffix(".conf") && Slug.isValidLabel(String($0.dropLast(5))) })
        }
    }

    /// A fork PR waits for the deploy label; a label from someone without write access is ignored; a
    /// writer's label deploys that sha; a later push waits for a new approval while the approved one serves.
    @Test func forkPullRequestWaitsForAWritersLabel() async throws {
        try await E2EHarness.run(name: "fork") { harness in
            let first = Fixtures.sha("fork-1")
            let second = Fixtures.sha("fork-2")
            await harness.github.setPermission("mallory", "read")
            await harness.github.setPermission("maintainer", "write")
            #expect(try await harness.send("opened", number: 80, branch: "main", sha: first, headRepo: "mallory/web").0 == 202)
            #expect(try await harness.waitSettled(80, status: .blocked))
            let comment = try #require(await harness.github.comments(on: "acme/web", issue: 80).first)
            #expect(comment.body.contains("comes from the fork `mallory/web`") && comment.body.contains("`stager:deploy`"))
            #expect(try await harness.containers().isEmpty)

            #expect(
                try await harness.send(
                    "labeled",
                    number: 80,
                    branch: "main",
                    sha: first,
                    updatedAt: "2026-11-24T09:01:00Z",
                    headRepo: "mallory/web",
                    label: "stager:deploy",
                    sender: "mallory"
                ).0 == 202
            )
            #expect(
                try await harness.waitUntil {
                    await harness.github.comments(on: "acme/web", issue: 80).first?.body.contains("`@mallory` was not taken") == true
                }
            )
            #expect(try harness.environment(80)?.status == .blocked)
            #expect(try await harness.containers().isEmpty)
            // Some other label does nothing at all.
            #expect(
                try await harness.send(
                    "labeled",
                    number: 80,
                    branch: "main",
                    sha: first,
                    updatedAt: "2026-11-24T09:01:30Z",
                    headRepo: "mallory/web",
                    label: "bug",
                    sender: "maintainer"
                ).1.contains("ignored")
            )

            #expect(
                try await harness.send(
                    "labeled",
                    number: 80,
                    branch: "main",
                    sha: first,
                    updatedAt: "2026-11-24T09:02:00Z",
                    headRepo: "mallory/web",
                    label: "stager:deploy",
                    sender: "maintainer"
                ).0 == 202
            )
            #expect(try await harness.waitSettled(80, status: .ready))
            #expect(try harness.environment(80)?.approvedBy == "maintainer")
            #expect(
                try await harness.waitUntil(timeout: .seconds(10)) { await harness.throughNginx(slug: "main")?.body.contains("sha=\(first)") == true }
            )

            #expect(
                try await harness.send(
                    "synchronize",
                    number: 80,
                    branch: "main",
                    sha: second,
                    updatedAt: "2026-11-24T09:03:00Z",
                    headRepo: "mallory/web"
                ).0 == 202
            )
            #expect(try await harness.waitSettled(80, status: .blocked))
            #expect(await harness.github.comments(on: "acme/web", issue: 80).first?.body.contains("Commits pushed after the last approval") == true)
            #expect(
                try await harness.waitUntil(timeout: .seconds(10)) { await harness.throughNginx(slug: "main")?.body.contains("sha=\(first)") == true }
            )
            #expect(try await harness.containers().map(\.sha) == [first])
        }
    }

    /// `require_label` gates PRs from the repository itself too.
    @Test func requireLabelGatesEveryPullRequest() async throws {
        try await E2EHarness.run(name: "require-label", extraRepos: Self.gatedRepo) { harness throws in
            await harness.github.setPermission("maintainer", "admin")
            #expect(try await harness.send("opened", number: 81, branch: "inside", sha: Fixtures.sha("inside"), repo: "acme/gated").0 == 202)
            #expect(try await harness.waitSettled(81, repo: "acme/gated", status: .blocked))
            #expect(await harness.github.comments(on: "acme/gated", issue: 81).first?.body.contains("requires approval") == true)
            #expect(
                try await harness.send(
                    "labeled",
                    number: 81,
                    branch: "inside",
                    sha: Fixtures.sha("inside"),
                    updatedAt: "2026-11-24T09:01:00Z",
                    repo: "acme/gated",
                    label: "stager:deploy",
                    sender: "maintainer"
                ).0 == 202
            )
            #expect(try await harness.waitSettled(81, repo: "acme/gated", status: .ready))
        }
    }

    /// `docker inspect` shows the hardening: no new privileges, every capability dropped but the ones
    /// configured, limits, loopback only, a restart policy, never privileged; read_only with a tmpfs /tmp.
    @Test func containersAreHardened() async throws {
        try await E2EHarness.run(
            name: "hardening",
            extraRepos: """
                  acme/readonly:
                    image: "\(E2EHarness.image)"
                    command: ["/bin/busybox", "httpd", "-f", "-p", "8080", "-h", "/tmp"]
                    port: 8080
                    read_only: true
                    cap_add: ["NET_BIND_SERVICE"]
                """
        ) { harness in
            #expect(try await harness.send("opened", number: 82, branch: "locked-down", sha: Fixtures.sha("locked"), repo: "acme/readonly").0 == 202)
            #expect(try await harness.waitSettled(82, repo: "acme/readonly", status: .ready))
            let container = try #require(try await harness.containers().first)
            let format =
                "{{json .HostConfig.SecurityOpt}}|{{json .HostConfig.CapDrop}}|{{json .HostConfig.CapAdd}}|{{.HostConfig.Privileged}}|"
                + "{{.HostConfig.ReadonlyRootfs}}|{{json .HostConfig.Tmpfs}}|{{.HostConfig.PidsLimit}}|{{.HostConfig.Memory}}|{{.HostConfig.NanoCpus}}|"
                + "{{.HostConfig.RestartPolicy.Name}}|{{json .HostConfig.PortBindings}}"
            let inspect = try await SubprocessRunner().check(Command("docker", ["inspect", "--format", format, container.id])).standardOutput
            let fields = inspect.trimmingCharacters(in: .whitespacesAndNewlines).split(separator: "|").map(String.init)
            #expect(fields.count == 11)
            #expect(fields[0] == "[\"no-new-privileges\"]")
            #expect(fields[1] == "[\"ALL\"]")
            #expect(fields[2].contains("NET_BIND_SERVICE"))
            #expect(fields[3] == "false")
            #expect(fields[4] == "true")
            #expect(fields[5].contains("\"/tmp\""))
            #expect(fields[6] == "64" && fields[7] == String(64 * 1024 * 1024) && fields[8] == "500000000")
            #expect(fields[9] == "unless-stopped")
            #expect(fields[10].contains("\"HostIp\":\"127.0.0.1\"") && !fields[10].contains("0.0.0.0"))
            #expect(await harness.throughNginx(slug: "locked-down")?.status != 502)
        }
    }

    /// Basic auth from `access.users_env` and an IP allow-list, rendered into the vhost.
    @Test func protectedPreviews() async throws {
        try await E2EHarness.run(name: "access", extraRepos: Self.protectedRepos) { harness throws in
            #expect(
                try await harness.send("opened", number: 83, branch: "secret-feature", sha: Fixtures.sha("secret"), repo: "acme/private").0 == 202
            )
            #expect(try await harness.send("opened", number: 84, branch: "office-only", sha: Fixtures.sha("office"), repo: "acme/office").0 == 202)
            #expect(try await harness.waitSettled(83, repo: "acme/private", status: .ready))
            #expect(try await harness.waitSettled(84, repo: "acme/office", status: .ready))
            // curl, because Foundation's URLSession on Linux does not hand a 401 with a challenge back as an answer.
            // The status, and curl's own error if it got none.
            func status(_ slug: String, _ credentials: [String] = []) async throws -> String {
                let result = try await SubprocessRunner().run(
                    Command(
                        "curl",
                        ["-sS", "-m", "5", "-o", "/dev/null", "-w", "%{http_code}", "-H", "Host: \(slug).preview.localhost"]
                            + credentials + ["http://127.0.0.1:\(harness.nginxPort)/"]
                    )
                )
                return result.standardOutput + result.standardError
            }
            let anonymous = try await status("secret-feature")
            let wrongPassword = try await status("secret-feature", ["-u", "pm:wrong"])
            let user = try await status("secret-feature", ["-u", E2EHarness.previewUsers])
            #expect(anonymous == "401")
            #expect(wrongPassword == "401")
            #expect(user == "200")
            // 127.0.0.1 is not in 10.0.0.0/8.
            let outsider = try await status("office-only")
            #expect(outsider == "403")
        }
    }

    /// The dashboard, the API and /metrics need the admin token when one is set; /healthz and /webhook do not.
    @Test func adminTokenGuardsTheDashboardAndAPI() async throws {
        try await E2EHarness.run(name: "admin", extraServer: "  admin_token_env: E2E_ADMIN_TOKEN") { harness in
            let probe = HTTPProbe()
            // curl for the 401s: Foundation's URLSession on Linux stalls on a 401 that carries a challenge.
            func denied(_ path: String, _ headers: [String] = []) async throws -> String {
                try await SubprocessRunner().run(
                    Command(
                        "curl",
                        ["-s", "-m", "5", "-D", "-", "-o", "/dev/null"] + headers
                            + ["http://127.0.0.1:\(harness.port)\(path)"]
                    )
                ).standardOutput
            }
            for path in ["/", "/api/environments", "/metrics"] {
                let answer = try await denied(path)
                #expect(answer.hasPrefix("HTTP/1.1 401") && answer.lowercased().contains("www-authenticate: basic"), "\(path)")
                #expect(try await denied(path, ["-H", "Authorization: Bearer wrong"]).hasPrefix("HTTP/1.1 401"))
                #expect(
                    try await probe.get(
                        host: "127.0.0.1",
                        port: harness.port,
                        path: path,
                        headers: ["Authorization": "Bearer \(E2EHarness.adminToken)"]
                    ).status == 200,
                    "\(path)"
                )
            }
            let browser = "Basic " + Data("ops:\(E2EHarness.adminToken)".utf8).base64EncodedString()
            #expect(try await probe.get(host: "127.0.0.1", port: harness.port, path: "/", headers: ["Authorization": browser]).status == 200)
            #expect(try await probe.get(host: "127.0.0.1", port: harness.port, path: "/healthz").status == 200)
            #expect(try await harness.send("opened", number: 85, branch: "still-open", sha: Fixtures.sha("still")).0 == 202)
        }
    }

    /// A repository's own secret: its deliveries must carry it, and it signs nothing for other repositories.
    /// Oversized, truncated, wrongly typed, unsigned and replayed deliveries are answered and leave no trace.
    @Test func webhookSecretsAndMalformedDeliveries() async throws {
        try await E2EHarness.run(name: "webhooks", extraRepos: Self.ownSecretRepo) { harness in
            let store = try #require(harness.app?.store)
            let own = try Fixtures.pullRequest(action: "opened", repo: "acme/own", number: 90, branch: "own", sha: Fixtures.sha("own"))
            let web = try Fixtures.pullRequest(action: "opened", repo: "acme/web", number: 91, branch: "web", sha: Fixtures.sha("web"))
            #expect(try await harness.post(own, event: "pull_request").0 == 401)
            #expect(try await harness.post(web, event: "pull_request", secret: E2EHarness.ownSecret).0 == 401)
            #expect(try await harness.post(own, event: "pull_request", signed: false).0 == 401)
            let oversized = Data(repeating: UInt8(ascii: " "), count: 6 * 1024 * 1024)
            #expect(try await harness.post(oversized, event: "pull_request").0 == 413)
            #expect(try await harness.post(web.prefix(web.count / 2), event: "pull_request").0 == 400)
            let mistyped = try JSONSerialization.data(withJSONObject: [
                "action": "opened", "number": "ninety-one",
                "pull_request": ["head": ["ref": "x", "sha": Fixtures.sha("x")]],
                "repository": ["full_name": "acme/web"],
            ])
            let answer = try await harness.post(mistyped, event: "pull_request")
            #expect(answer.0 == 400 && answer.1.contains("number"))
            #expect(try store.deliveryCount() == 0 && store.allEnvironments().isEmpty)

            let delivery = UUID().uuidString
            #expect(try await harness.post(own, event: "pull_request", delivery: delivery, secret: E2EHarness.ownSecret).0 == 202)
            let replay = try await harness.post(own, event: "pull_request", delivery: delivery, secret: E2EHarness.ownSecret)
            #expect(replay.0 == 200 && replay.1.contains("duplicate"))
            #expect(try store.deliveryCount() == 1 && store.allEnvironments().count == 1)
            #expect(try await harness.waitSettled(90, repo: "acme/own", status: .ready))
        }
    }
}

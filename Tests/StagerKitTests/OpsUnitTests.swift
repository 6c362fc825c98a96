import Foundation
import Logging
import StagerTestSupport
import Testing

@testable import StagerKit

private func environment(
    _ number: Int,
    slug: String,
    repo: String = "acme/web",
    desired: Desire = .present,
    status: EnvironmentStatus = .ready,
    lastActivity: Date = Date()
) -> Environment {
    Environment(
        repo: repo,
        number: number,
        slug: slug,
        branch: slug,
        title: "",
        author: "",
        headRepo: repo,
        desired: desired,
        desiredSha: Fixtures.sha(slug),
        desiredVersion: 1,
        appliedVersion: 1,
        sourceUpdatedAt: "2026-11-24T09:00:00Z",
        status: status,
        commentPending: false,
        createdAt: lastActivity,
        updatedAt: lastActivity,
        lastActivityAt: lastActivity,
        admitted: desired == .present,
        waitingSince: nil
    )
}

private func container(_ number: Int, repo: String = "acme/web") -> ContainerInfo {
    ContainerInfo(id: "id\(number)", name: "c\(number)", repo: repo, number: number, sha: "s", slug: "s\(number)", running: true, hostPort: 1)
}

@Suite("gc plan")
struct GcPlanTests {
    let now = Date()

    func facts(
        _ environments: [Environment],
        containers: [ContainerInfo] = [],
        vhosts: [String] = [],
        foreign: [String] = [],
        states: [PullRequestKey: PullRequestState] = [:],
        idleTTL: Duration? = nil
    ) -> GcPlan.Facts {
        GcPlan.Facts(
            environments: environments,
            containers: containers,
            managedVhosts: vhosts,
            foreignFiles: foreign,
            states: states,
            missing: [],
            configuredRepos: ["acme/web"],
            idleTTL: idleTTL,
            now: now
        )
    }

    @Test func onlyADefiniteClosedAnswerRemoves() {
        let open = environment(1, slug: "open")
        let closed = environment(2, slug: "closed")
        let merged = environment(3, slug: "merged")
        let unknown = environment(4, slug: "unknown")
        let plan = GcPlan(
            facts(
                [open, closed, merged, unknown],
                vhosts: ["open", "closed", "merged", "unknown"],
                states: [
                    open.key: .open, closed.key: .closed(merged: false, updatedAt: "2026-11-24T10:00:00Z"),
                    merged.key: .closed(merged: true, updatedAt: nil), unknown.key: .unknown("GitHub answered 401: Bad credentials"),
                ]
            )
        )
        #expect(plan.environments.map(\.env.number) == [2, 3])
        #expect(plan.environments.map(\.reason) == ["PR closed on GitHub", "PR merged on GitHub"])
        #expect(plan.environments.first?.closedAt == "2026-11-24T10:00:00Z")
        #expect(plan.kept.map(\.env.number) == [1, 4])
        #expect(plan.kept.last?.unknown?.contains("401") == true)
        // The removed environments' vhosts go with them, not as orphans.
        #expect(plan.vhosts.isEmpty)
    }

    @Test func orphansAreThoseOfNoLiveEnvironmentInConfiguredRepos() {
        let live = environment(1, slug: "live")
        let gone = environment(2, slug: "gone", desired: .absent, status: .removed)
        let plan = GcPlan(
            facts(
                [live, gone],
                containers: [container(1), container(2), container(3), container(4, repo: "other/repo")],
                vhosts: ["live", "gone", "stray"],
                foreign: ["README"],
                states: [live.key: .open]
            )
        )
        #expect(plan.containers.map(\.number) == [2, 3])
        #expect(plan.vhosts == ["gone", "stray"])
        #expect(plan.foreignFiles == ["README"])
        #expect(plan.environments.isEmpty)
    }

    @Test func idleEnvironmentsGoOnlyWhenATimeToLiveIsSet() {
        let idle = environment(1, slug: "idle", lastActivity: now.addingTimeInterval(-4 * 86400))
        let busy = environment(2, slug: "busy", lastActivity: now.addingTimeInterval(-3600))
        let states: [PullRequestKey: PullRequestState] = [idle.key: .open, busy.key: .open]
        #expect(GcPlan(facts([idle, busy], states: states)).environments.isEmpty)
        let plan = GcPlan(facts([idle, busy], states: states, idleTTL: .seconds(72 * 3600)))
        #expect(plan.environments.map(\.env.number) == [1])
        #expect(plan.environments.first?.reason.hasPrefix("idle for 4d") == true)
    }

    /// Built images of PRs with no live environment go; a building PR's work folder stays, a crash's goes.
    @Test func builtImagesAndWorkFoldersOfGoneEnvironmentsGo() {
        let live = environment(1, slug: "live")
        let building = environment(3, slug: "building", status: .building)
        var facts = facts(
            [live, building, environment(2, slug: "gone", desired: .absent, status: .removed)],
            states: [live.key: .open, building.key: .open]
        )
        facts.builtImages = [
            ("stager/acme-web:aaa", live.key), ("stager/acme-web:bbb", PullRequestKey(repo: "acme/web", number: 2)),
            ("stager/other:ccc", PullRequestKey(repo: "other/repo", number: 2)),
        ]
        facts.workFolders = ["3-0123456789ab-acme-web", "2-0123456789ab-acme-web", "1-0123456789ab-acme-web"]
        let plan = GcPlan(facts)
        #expect(plan.builtImages == ["stager/acme-web:bbb"])
        #expect(plan.workFolders == ["2-0123456789ab-acme-web", "1-0123456789ab-acme-web"])
    }

    @Test func anUnfinishedTeardownIsFinished() {
        let stuck = environment(1, slug: "stuck", desired: .absent, status: .removing)
        #expect(GcPlan(facts([stuck])).environments.map(\.reason) == ["torn down, but the teardown did not finish"])
    }

    @Test func summaryLineCountsAndPluralizes() {
        var summary = GarbageCollector.Summary(environments: 3, containers: 2, vhosts: 1, kept: 12)
        #expect(summary.line == "gc: removed 3 environments, 2 containers, 1 vhost; kept 12")
        summary.failed = 1
        summary.dryRun = true
        #expect(summary.line == "gc: would remove 3 environments, 2 containers, 1 vhost; kept 12; 1 failed")
    }

    @Test func missingMeansOpenWithoutAnEnvironmentAndNewerThanTheTeardown() throws {
        func pull(_ number: Int, updated: String) -> GitHubClient.PullRequest {
            GitHubClient.PullRequest(
                number: number,
                state: "open",
                merged: false,
                title: nil,
                updated_at: updated,
                head: .init(ref: "b\(number)", sha: Fixtures.sha("\(number)"), repo: nil),
                user: nil
            )
        }
        let live = environment(1, slug: "live")
        let destroyed = environment(2, slug: "destroyed", desired: .absent, status: .removed)
        let reopened = environment(3, slug: "reopened", desired: .absent, status: .removed)
        let missing = PullRequestStates.missing(
            open: [
                pull(1, updated: "2026-11-24T12:00:00Z"), pull(2, updated: "2026-11-24T09:00:00Z"),
                pull(3, updated: "2026-11-24T12:00:00Z"), pull(4, updated: "2026-11-24T12:00:00Z"),
            ],
            repo: "acme/web",
            environments: [live, destroyed, reopened]
        )
        #expect(missing.map(\.number) == [3, 4])
    }
}

@Suite("max_environments admission")
struct AdmissionTests {
    func store() throws -> Store {
        try Store(path: TestConfig.temporaryDirectory("admission").appendingPathComponent("stager.sqlite"))
    }

    func open(_ store: Store, _ number: Int, repo: String = "acme/web", at date: Date = Date()) async throws {
        let event = try WebhookPayload.decodePullRequest(
            Fixtures.pullRequest(
                action: "opened",
                repo: repo,
                number: number,
                branch: "b\(number)",
                sha: Fixtures.sha("\(number)")
            )
        )
        _ = try await store.accept(
            DesiredStateChange(delivery: UUID().uuidString, event: event, intent: .deploy(sha: event.pull_request.head.sha), receivedAt: date)
        )
    }

    @Test func oldestWaitingIsAdmittedFirst() async throws {
        let store = try store()
        for number in 1...3 { try await open(store, number) }
        let key = { PullRequestKey(repo: "acme/web", number: $0) }
        #expect(try await store.admit(key(1), limit: 1, repoLimit: nil) == .admitted)
        #expect(
            try await store.admit(key(2), limit: 1, repoLimit: nil) == .waiting(position: 1, inUse: 1, limit: 1, scope: "limits.max_environments")
        )
        #expect(
            try await store.admit(key(3), limit: 1, repoLimit: nil) == .waiting(position: 2, inUse: 1, limit: 1, scope: "limits.max_environments")
        )
        #expect(try store.waitingKeys() == [key(2), key(3)])
        // Room frees up: the third may not jump the queue, the second goes.
        try await store.update(key(1)) {
            $0.desired = .absent
            $0.admitted = false
        }
        #expect(try await store.admit(key(3), limit: 1, repoLimit: nil) != .admitted)
        #expect(try await store.admit(key(2), limit: 1, repoLimit: nil) == .admitted)
        #expect(try store.waitingKeys() == [key(3)])
    }

    @Test func aFullRepositoryDoesNotBlockAnother() async throws {
        let store = try store()
        try await open(store, 1)
        try await open(store, 2)
        try await open(store, 3, repo: "acme/api")
        #expect(try await store.admit(PullRequestKey(repo: "acme/web", number: 1), limit: 10, repoLimit: 1) == .admitted)
        #expect(
            try await store.admit(PullRequestKey(repo: "acme/web", number: 2), limit: 10, repoLimit: 1)
                == .waiting(position: 1, inUse: 1, limit: 1, scope: "repos.acme/web.max_environments")
        )
        #expect(try await store.admit(PullRequestKey(repo: "acme/api", number: 3), limit: 10, repoLimit: 1) == .admitted)
    }
}

@Suite("engine faults and GitHub pull requests")
struct OpsSeamTests {
    @Test func anEngineThatDoesNotAnswerIsUnavailableNotAFailedDeploy() async throws {
        let down = RecordingRunner { _ in
            CommandResult(
                exitCode: 1,
                standardError: "Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?"
            )
        }
        let docker = DockerCLI(command: ["docker"], instance: "t", runner: down)
        await #expect(throws: EngineUnavailable.self) { try await docker.list(for: nil) }
        await #expect(throws: EngineUnavailable.self) { try await docker.remove("x") }
        let refused = RecordingRunner { _ in CommandResult(exitCode: 125, standardError: "Unable to find image 'nope:latest' locally") }
        await #expect(throws: CommandError.self) { try await DockerCLI(command: ["docker"], instance: "t", runner: refused).list(for: nil) }
    }

    @Test func openPullRequestsFollowPagesAndAClosedPRIsSeenAsClosed() async throws {
        let fake = GitHubFake(token: "ghp_test")
        let (url, server) = try await fake.start()
        for number in 1...150 { await fake.setPull(number: number, branch: "b\(number)", sha: Fixtures.sha("\(number)")) }
        await fake.setPull(number: 151, branch: "done", sha: Fixtures.sha("done"), state: "closed", merged: true)
        let client = GitHubClient(baseURL: url, token: "ghp_test", timeout: .seconds(5), maxAttempts: 2, logger: Logger(label: "t"))
        let open = try await client.openPullRequests("acme/web")
        #expect(open.count == 150 && Set(open.map(\.number)).count == 150)
        #expect(await fake.count("GET", pathSuffix: "/pulls") == 2)
        let states = await PullRequestStates(client: client).states(
            of: [
                PullRequestKey(repo: "acme/web", number: 151), PullRequestKey(repo: "acme/web", number: 152),
                PullRequestKey(repo: "acme/web", number: 3),
            ],
            open: ["acme/web": .success(open)]
        )
        #expect(states[PullRequestKey(repo: "acme/web", number: 151)] == .closed(merged: true, updatedAt: "2026-11-24T09:00:00Z"))
        #expect(states[PullRequestKey(repo: "acme/web", number: 3)] == .open)
        await server.stop()
        guard case .unknown(let why) = states[PullRequestKey(repo: "acme/web", number: 152)] else {
            Issue.record("a 404 must be unknown")
            return
        }
        #expect(why.contains("404"))
    }
}

@Suite("Hostile pull requests: pieces")
struct HostilePiecesTests {
    /// A child never inherits serve's secrets: only what finding programs, docker and locales need.
    @Test func childrenGetAnAllowListedEnvironment() async throws {
        let inherited = SubprocessRunner.inheritedVariables([
            "PATH": "/bin", "HOME": "/root", "DOCKER_HOST": "unix:///x", "LC_ALL": "C",
            "STAGER_WEBHOOK_SECRET": "s", "E2E_ADMIN_TOKEN": "t", "GITHUB_TOKEN": "g",
        ])
        #expect(inherited.keys.sorted() == ["DOCKER_HOST", "HOME", "LC_ALL", "PATH"])
        setenv("STAGER_TEST_CANARY_SECRET", "canary-value", 1)
        defer { unsetenv("STAGER_TEST_CANARY_SECRET") }
        let printed = try await SubprocessRunner().check(Command("env", [], environment: ["OWN": "given"])).standardOutput
        #expect(!printed.contains("canary-value") && printed.contains("OWN=given") && printed.contains("PATH="))
    }

    /// A build that prints without end keeps only the log's tail.
    @Test func aBuildLogKeepsItsTail() async throws {
        let log = try TestConfig.temporaryDirectory("capped-log").appendingPathComponent("build.log")
        let code = try await SubprocessRunner().stream(
            Command(
                "sh",
                ["-c", "i=0; while [ $i -lt 4000 ]; do echo line-$i-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxx; i=$((i+1)); done; echo last-line >&2"]
            ),
            to: .file(log, keepLast: 16 * 1024)
        )
        #expect(code == 0)
        let text = try String(contentsOf: log, encoding: .utf8)
        #expect(text.utf8.count <= 2 * 16 * 1024 + 200 && text.hasSuffix("last-line\n") && !text.contains("line-0-") && text.contains("was cut here"))
    }

    /// More held requests than allowed are told to retry; an environment's wakes count once a minute.
    @Test func wakeLimitsBoundHeldRequestsAndWakes() {
        let limits = WakeLimits(maxHeld: 2, wakesPerMinute: 2)
        let first = limits.hold()
        let second = limits.hold()
        #expect(first != nil && second != nil && limits.hold() == nil)
        first?.release()
        #expect(limits.hold() != nil)
        let a = PullRequestKey(repo: "acme/web", number: 1)
        let b = PullRequestKey(repo: "acme/web", number: 2)
        let c = PullRequestKey(repo: "acme/web", number: 3)
        #expect(limits.mayWake(a) && limits.mayWake(a) && limits.mayWake(b) && !limits.mayWake(c) && limits.mayWake(a))
    }

    /// The token goes to the configured GitHub and nowhere else: not to another allowed clone host, not
    /// to a pagination link that points away.
    @Test func theGitHubTokenGoesToGitHubOnly() throws {
        let config = try TestConfig.load(
            "build: {allowed_hosts: [\"github.com\", \"git.example.com\"]}\ngithub: {token_env: GH}\n",
            in: try TestConfig.temporaryDirectory("token-hosts"),
            environment: ["GH": "ghp_tokenvalue1"]
        )
        let builder = ImageBuilder(config: config, runner: RecordingRunner(), slots: Slots(limit: 1))
        let folder = URL(fileURLWithPath: "/tmp/w")
        let toGitHub = builder.fetchCommands(url: URL(string: "https://github.com/a/b.git")!, sha: "s", into: folder, token: "ghp_tokenvalue1")
        let elsewhere = builder.fetchCommands(url: URL(string: "https://git.example.com/a/b.git")!, sha: "s", into: folder, token: "ghp_tokenvalue1")
        #expect(toGitHub[1].environment["GIT_CONFIG_VALUE_0"] != nil && elsewhere[1].environment["GIT_CONFIG_VALUE_0"] == nil)
        #expect(toGitHub[1].timeout == config.build.timeout)
        let client = GitHubClient(
            baseURL: URL(string: "https://api.github.com")!,
            token: "t",
            timeout: .seconds(1),
            maxAttempts: 1,
            logger: Logger(label: "t")
        )
        #expect(client.isOwnAPI(URL(string: "https://api.github.com/repos/a/b/issues/1/comments?page=2")!))
        #expect(!client.isOwnAPI(URL(string: "https://evil.example/repos/a/b/issues/1/comments?page=2")!))
        #expect(!client.isOwnAPI(URL(string: "http://api.github.com/repos/a/b")!))
    }

    /// A Slack follow-up goes to `slack.response_hosts` only.
    @Test func slackFollowUpsGoToSlackOnly() {
        let hosts = ["hooks.slack.com", "127.0.0.1:9000"]
        #expect(SlackController.responseURL("https://hooks.slack.com/commands/T1/2/x", hosts: hosts) != nil)
        #expect(SlackController.responseURL("https://evil.example/commands/T1/2/x", hosts: hosts) == nil)
        #expect(SlackController.responseURL("http://127.0.0.1:9000/x", hosts: hosts) != nil)
        #expect(SlackController.responseURL("http://127.0.0.1:9001/x", hosts: hosts) == nil)
    }

    /// The dashboard's cookie and the shared host's carry Secure over https.
    @Test func cookiesAreSecureOverHTTPS() throws {
        let dir = try TestConfig.temporaryDirectory("secure-cookies")
        let config = try TestConfig.load(
            "server: {public_url: \"https://stager.example.com\"}\npreview: {domain: \"preview.example.com\", scheme: https}\n"
                + "repos:\n  acme/web: {image: \"x\", shared_host: acme, default_env: pr-1}\n",
            in: dir
        )
        #expect(config.server.secureCookies)
        let shared = SharedHostVhost(config: config, keys: VhostKeys(secret: "t"))
        let text = shared.render(shared.sites[0], environments: [.init(name: "pr-1", slug: "one")])
        #expect(text.contains("SameSite=Lax; Secure") && text.contains("location = /.stager-probe {\n        return 404;"))
    }

    /// The API gives the URL from the moment nginx routes the environment, before it is recorded ready.
    @Test func theURLShowsOnceRouted() throws {
        let dir = try TestConfig.temporaryDirectory("routed-url")
        let config = try TestConfig.load("repos:\n  acme/web: {image: \"x\"}\nnginx: {sites_dir: \"\(dir.path)/sites\"}\n", in: dir)
        let env = environment(3, slug: "routed", status: .deploying)
        #expect(EnvironmentView(env, config: config).url == nil)
        try FileManager.default.createDirectory(at: config.nginx.sitesDir, withIntermediateDirectories: true)
        try "# stager-vhost slug=routed container=c port=1 sha=abc v=2 repo=acme/web env=pr-3\n".write(
            to: config.nginx.sitesDir.appendingPathComponent("routed.conf"),
            atomically: true,
            encoding: .utf8
        )
        #expect(EnvironmentView.isRouted("routed", config: config))
        #expect(EnvironmentView(env, config: config, routed: true).url == "http://routed.preview.localhost:8088")
    }
}

import Foundation
import StagerKit
import StagerTestSupport
import Testing

/// Sleep and wake on the real engine and nginx: an idle environment's containers stop (kept), its vhost
/// sends requests to serve's wake path, and a plain GET starts it again and is answered by the app itself.
@Suite("End to end: sleep and wake", .enabled(if: E2EHarness.available))
struct SleepTests {
    let runner = SubprocessRunner()

    /// Whether each of the harness's containers of the PR runs, by name.
    func running(_ harness: E2EHarness, _ number: Int) async throws -> [String: Bool] {
        Dictionary(uniqueKeysWithValues: try await harness.containers().filter { $0.number == number }.map { ($0.name, $0.running) })
    }

    func waitStatus(
        _ harness: E2EHarness,
        _ number: Int,
        repo: String = "acme/web",
        _ status: EnvironmentStatus,
        timeout: Duration = .seconds(30)
    ) async throws -> Bool {
        try await harness.waitUntil(timeout: timeout) { try harness.environment(number, repo: repo)?.status == status }
    }

    func metric(_ harness: E2EHarness, _ name: String, _ labels: [String: String] = [:]) async throws -> Double? {
        try PrometheusText(try await harness.get("/metrics").body).value(name, labels)
    }

    @Test func anIdleEnvironmentSleepsAndAPlainGetIsAnsweredByTheAppInOneRequest() async throws {
        try await E2EHarness.run(name: "sleep-idle", extraRepos: E2EHarness.servingRepo("acme/idle", "sleep_after: 2s"), reconcileInterval: "1s") {
            harness in
            let sha = Fixtures.sha("idle")
            try await harness.send("opened", number: 1, branch: "idle", sha: sha, repo: "acme/idle")
            #expect(try await harness.waitSettled(1, repo: "acme/idle", status: .ready))
            let comment = await harness.github.comments(on: "acme/idle", issue: 1).first?.body
            #expect(try await waitStatus(harness, 1, repo: "acme/idle", .sleeping, timeout: .seconds(60)))
            // Stopped, not removed; the vhost stays and routes to the wake path.
            #expect(try await harness.waitUntil(timeout: .seconds(60)) { try await running(harness, 1).values.allSatisfy { !$0 } })
            #expect(try await running(harness, 1).count == 1)
            #expect(harness.vhosts() == ["idle.conf"])
            // The reconciler (every second here) neither starts nor removes it.
            try await Task.sleep(for: .seconds(2.5))
            #expect(try harness.environment(1, repo: "acme/idle")?.status == .sleeping)
            #expect(try await running(harness, 1).values.allSatisfy { !$0 })
            #expect(try await harness.stager(["ls"]).standardOutput.contains("sleeping"))
            #expect(try await harness.stager(["check"]).standardOutput.contains("ok   wake path: the vhost template routes a sleeping environment"))
            #expect(try await metric(harness, "stager_environments", ["status": "sleeping"]) == 1)
            let dashboard = try await harness.get("/").body
            #expect(dashboard.contains(#"<span class="status sleeping">sleeping</span>"#) && dashboard.contains("Last visit"))

            let answer = try await harness.requestThroughNginx("GET", slug: "idle")
            #expect(answer.status == 200)
            #expect(answer.body.contains("sha=\(sha)"), "\(answer.body)")
            // The held request was answered as soon as the app answered; nginx is told meanwhile.
            #expect(try await waitStatus(harness, 1, repo: "acme/idle", .ready, timeout: .seconds(60)))
            #expect(try await running(harness, 1).values.allSatisfy { $0 })
            #expect(try await harness.requestThroughNginx("GET", slug: "idle").headers["x-stager-asleep"] == nil)
            #expect(try await metric(harness, "stager_wakes_total", ["outcome": "awake"]) == 1)
            #expect(try await harness.waitUntil(timeout: .seconds(30)) { try harness.environment(1, repo: "acme/idle")?.lastRequestAt != nil })
            #expect(try await harness.get("/").body.contains(" ago</td>"))
            // No noise on the PR: its comment is as the deploy left it.
            #expect(await harness.github.comments(on: "acme/idle", issue: 1).first?.body == comment)
        }
    }

    @Test func twentyGetsAtOnceCauseOneWakeAndOtherMethodsAreToldToRetry() async throws {
        try await E2EHarness.run(name: "sleep-many") { harness in
            let sha = Fixtures.sha("many")
            try await harness.send("opened", number: 2, branch: "many", sha: sha)
            #expect(try await harness.waitSettled(2, status: .ready))
            let slept = try await harness.stager(["sleep", "acme/web#2"])
            #expect(slept.exitCode == 0 && slept.standardOutput.contains("acme/web#2: sleeping"), "\(slept.standardOutput)\(slept.standardError)")
            #expect(try await running(harness, 2).values.allSatisfy { !$0 })

            let answers = try await withThrowingTaskGroup(of: ProbeAnswer.self) { group in
                for index in 0..<20 { group.addTask { try await harness.requestThroughNginx(index == 0 ? "HEAD" : "GET", slug: "many") } }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            #expect(answers.map(\.status) == Array(repeating: 200, count: 20))
            #expect(answers.filter { $0.body.contains("sha=\(sha)") }.count == 19)
            // Recorded once nginx routes to it again, after the answers.
            #expect(try await waitStatus(harness, 2, .ready))
            #expect(try await metric(harness, "stager_wakes_total", ["outcome": "awake"]) == 1)
            let events = try harness.app?.store.auditEvents(for: PullRequestKey(repo: "acme/web", number: 2), limit: 100) ?? []
            #expect(
                events.filter { $0.kind == "wake" && $0.trigger == "request" && $0.message.hasPrefix("wake at") }.count == 1,
                "\(events.map(\.message))"
            )
            #expect(try await waitStatus(harness, 2, .ready))

            // Asleep again: a POST is not held (its body would have to wait in nginx) but told to come back.
            #expect(try await harness.stager(["sleep", "acme/web#2"]).exitCode == 0)
            let post = try await harness.requestThroughNginx("POST", slug: "many")
            #expect(post.status == 503)
            #expect(post.headers["retry-after"] == "2")
            // The POST began the wake: a GET right after is answered by the app.
            #expect(try await harness.requestThroughNginx("GET", slug: "many").body.contains("sha=\(sha)"))
            #expect(try await waitStatus(harness, 2, .ready))
            let awake = try await harness.stager(["wake", "acme/web#2"])
            #expect(awake.exitCode == 0 && awake.standardOutput.contains("awake already"), "\(awake.standardOutput)")
            #expect(try await harness.stager(["sleep", "acme/web#2"]).exitCode == 0)
            let woken = try await harness.stager(["wake", "acme/web#2"])
            #expect(woken.exitCode == 0 && woken.standardOutput.contains("acme/web#2: ready"), "\(woken.standardOutput)\(woken.standardError)")
            #expect(await harness.throughNginx(slug: "many")?.body.contains("sha=\(sha)") == true)
            let unknown = try await harness.stager(["sleep", "acme/web#99"])
            #expect(unknown.exitCode == 1 && unknown.standardError.contains("acme/web#99 has no environment"))
        }
    }

    @Test func steadyRequestsKeepAnEnvironmentAwake() async throws {
        try await E2EHarness.run(name: "sleep-steady", extraRepos: E2EHarness.servingRepo("acme/busy", "sleep_after: 6s")) { harness in
            try await harness.send("opened", number: 3, branch: "busy", sha: Fixtures.sha("busy"), repo: "acme/busy")
            #expect(try await harness.waitSettled(3, repo: "acme/busy", status: .ready))
            let clock = ContinuousClock()
            let until = clock.now + .seconds(10)  // well past sleep_after
            while clock.now < until {
                #expect(try await harness.requestThroughNginx("GET", slug: "busy").status == 200)
                #expect(try harness.environment(3, repo: "acme/busy")?.status == .ready)
                try await Task.sleep(for: .milliseconds(500))
            }
            #expect(try await running(harness, 3).values.allSatisfy { $0 })
            // Left alone, it sleeps.
            #expect(try await waitStatus(harness, 3, repo: "acme/busy", .sleeping, timeout: .seconds(60)))
        }
    }

    @Test func beyondMaxAwakeTheLeastRecentlyUsedSleeps() async throws {
        try await E2EHarness.run(name: "sleep-lru", extraLimits: "  max_awake: 1") { harness in
            try await harness.send("opened", number: 4, branch: "first", sha: Fixtures.sha("first"))
            #expect(try await harness.waitSettled(4, status: .ready))
            try await harness.send("opened", number: 5, branch: "second", sha: Fixtures.sha("second"))
            #expect(try await waitStatus(harness, 4, .sleeping, timeout: .seconds(60)))
            #expect(try harness.environment(5)?.status == .ready)
            // Waking the first makes the second the least recently used.
            #expect(try await harness.requestThroughNginx("GET", slug: "first").body.contains("sha=\(Fixtures.sha("first"))"))
            #expect(try await waitStatus(harness, 5, .sleeping, timeout: .seconds(60)))
            #expect(try await waitStatus(harness, 4, .ready))
        }
    }

    @Test func aPushDeploysASleepingEnvironmentAwakeAndACloseRemovesEverything() async throws {
        try await E2EHarness.run(name: "sleep-push") { harness in
            let (one, two) = (Fixtures.sha("push-one"), Fixtures.sha("push-two"))
            try await harness.send("opened", number: 6, branch: "pushed", sha: one)
            #expect(try await harness.waitSettled(6, status: .ready))
            #expect(try await harness.stager(["sleep", "acme/web#6"]).exitCode == 0)
            try await harness.send("synchronize", number: 6, branch: "pushed", sha: two, updatedAt: "2026-11-24T10:00:00Z")
            #expect(try await harness.waitUntil { try harness.environment(6)?.deployedSha == two && harness.environment(6)?.status == .ready })
            #expect(await harness.throughNginx(slug: "pushed")?.body.contains("sha=\(two)") == true)
            #expect(try await harness.containers().filter { $0.number == 6 }.map(\.sha) == [two])

            #expect(try await harness.stager(["sleep", "acme/web#6"]).exitCode == 0)
            try await harness.send("closed", number: 6, branch: "pushed", sha: two, updatedAt: "2026-11-24T11:00:00Z")
            #expect(try await waitStatus(harness, 6, .removed))
            #expect(try await harness.containers().filter { $0.number == 6 }.isEmpty)
            #expect(harness.vhosts().isEmpty)
        }
    }

    @Test func aStackWakesItsServicesBeforeItsAppAndARestartKeepsItAsleep() async throws {
        let services = ServicesTests()
        try await services.withSeed("slept-7") { seed in
            try await E2EHarness.run(
                name: "sleep-stack",
                extraRepos: ServicesTests.stackRepo("acme/stack", seed: seed),
                extraConfig: "docker:\n  seed_image: \"\(E2EHarness.image)\""
            ) { harness in
                let sha = Fixtures.sha("stack-sleep")
                try await harness.send("opened", number: 7, branch: "stacked", sha: sha, repo: "acme/stack")
                #expect(try await harness.waitSettled(7, repo: "acme/stack", status: .ready, timeout: ServicesTests.stackTimeout))
                #expect(try await harness.stager(["sleep", "acme/stack#7"]).exitCode == 0)
                #expect(try await running(harness, 7).count == 2)
                #expect(try await running(harness, 7).values.allSatisfy { !$0 })

                // A restart of serve keeps it asleep and routable.
                await harness.stop()
                try await harness.start()
                try await Task.sleep(for: .seconds(1))
                #expect(try harness.environment(7, repo: "acme/stack")?.status == .sleeping)
                #expect(try await running(harness, 7).values.allSatisfy { !$0 })

                // The app reads its db when it starts: the page shows the data only if db was up first.
                let answer = try await harness.requestThroughNginx("GET", slug: "stacked")
                #expect(answer.status == 200)
                #expect(answer.body.contains("sha=\(sha) data=slept-7"), "\(answer.body)")
                let started = try await harness.containers().filter { $0.number == 7 }
                let app = try #require(started.first { $0.service == nil })
                let db = try #require(started.first { $0.service == "db" })
                #expect(try await startedAt(app.id) > startedAt(db.id))
                #expect(try await waitStatus(harness, 7, repo: "acme/stack", .ready))
            }
        }
    }

    func startedAt(_ container: String) async throws -> String {
        try await runner.check(Command("docker", ["inspect", "--format", "{{.State.StartedAt}}", container])).standardOutput
    }
}

import Foundation
import StagerTestSupport
import Testing

@testable import StagerKit

/// Sleep and wake on the in-memory seams: what stops and starts, in which order, and what is (not) said.
@Suite("Controller: sleep and wake")
struct SleepTests {
    let a = Fixtures.sha("a"), b = Fixtures.sha("b")

    static let stack = """
            sleep_after: 30m
            services:
              db:
                image: "postgres:16"
                port: 5432
                health_timeout: 300ms
        """

    /// An environment deployed, then put to sleep as idle (its last use an hour ago).
    func sleeping(_ number: Int, options: String = Self.stack) async throws -> ControllerBench {
        let bench = try ControllerBench(repoOptions: options)
        await bench.open(number, sha: a)
        try await bench.converge(number)
        await bench.controller.putIdleToSleep(now: Date().addingTimeInterval(3600))
        try await bench.converge(number)
        return bench
    }

    func index(_ prefix: String, in events: [String]) throws -> Int {
        try #require(events.firstIndex { $0.hasPrefix(prefix) }, "\(prefix) in \(events)")
    }

    @Test func anIdleEnvironmentRoutesToTheWakePathThenStopsItsAppThenItsServices() async throws {
        let bench = try await sleeping(1)
        let env = try #require(await bench.environment(1))
        #expect(env.status == .sleeping && env.asleep)
        let events = await bench.timeline.events
        let route = try index("route pr-1 -> wake", in: events)
        let app = try index("stop pr-1", in: events)
        let db = try index("stop db", in: events)
        #expect(route < app && app < db, "\(events)")
        // Stopped, not removed; the comment was not touched.
        #expect(await bench.runtime.containers.count == 2)
        #expect(await bench.runtime.containers.allSatisfy { !$0.running })
        #expect(await bench.timeline.count("comment") == 1)
        // Nothing more to do: the reconciler leaves it asleep.
        let observed = Observation(of: env, containers: await bench.runtime.containers, routed: await bench.frontDoor.routed(slug: env.slug))
        #expect(
            Planner.plan(desired: env.desiredState, observed: observed, stack: StackLayout.desire(for: env, config: bench.controller.config)) == []
        )
    }

    @Test func aWakeStartsTheServicesThenTheAppAndHandsHeldRequestsItsNewPort() async throws {
        let bench = try await sleeping(2)
        let oldPort = try #require(await bench.environment(2)?.hostPort)
        let env = try #require(await bench.environment(2))
        let held = Task { await bench.controller.wakes.wait(for: env.key, timeout: .seconds(10)) }
        #expect(await bench.environments.recordChange(Intents.wake(env, source: .request, actor: "a request")) != .unchanged)
        #expect(await bench.environments.recordChange(Intents.wake(env, source: .request, actor: "a request")) == .unchanged)
        try await bench.converge(2)
        let woken = try #require(await bench.environment(2))
        #expect(woken.status == .ready && !woken.asleep)
        let newPort = try #require(woken.hostPort)
        #expect(newPort != oldPort)
        #expect(await held.value == .awake(Upstream(port: newPort)))
        let events = await bench.timeline.events
        let db = try index("start db", in: events)
        let app = try index("start pr-2", in: events)
        let route = try #require(events.lastIndex { $0.hasPrefix("route pr-2 -> \(a)") })
        #expect(db < app && app < route, "\(events)")
        // The same containers, started again; the PR heard nothing of it.
        #expect(await bench.runtime.containers.count == 2)
        #expect(await bench.timeline.count("run") == 1)
        #expect(await bench.timeline.count("comment") == 1)
    }

    @Test func aPushToASleepingEnvironmentDeploysItAwake() async throws {
        let bench = try await sleeping(3, options: "    sleep_after: 30m")
        await bench.open(3, sha: b)
        try await bench.converge(3)
        let env = try #require(await bench.environment(3))
        #expect(env.status == .ready && env.deployedSha == b && !env.asleep)
        #expect(await bench.runtime.containers.map(\.sha) == [b])
        #expect(await bench.frontDoor.routed(slug: env.slug)?.asleep == false)
    }

    @Test func aWakeThatFailsIsRecordedAndAnswersTheHeldRequests() async throws {
        let bench = try await sleeping(4, options: "    sleep_after: 30m")
        let env = try #require(await bench.environment(4))
        await bench.runtime.setUnhealthy("acme/web:\(a)")
        let held = Task { await bench.controller.wakes.wait(for: env.key, timeout: .seconds(10)) }
        _ = await bench.environments.recordChange(Intents.wake(env, source: .wake, actor: "operator"))
        try await bench.converge(4)
        #expect(await bench.environment(4)?.status == .failed)
        guard case .failed(let reason) = await held.value else {
            Issue.record("the held request got no failure")
            return
        }
        #expect(reason.contains("did not answer /"))
    }

    @Test func theLeastRecentlyUsedSleepBeyondMaxAwake() async throws {
        let bench = try ControllerBench(limits: "  max_awake: 2")
        for number in 1...4 {
            await bench.open(number, sha: a)
            try await bench.converge(number)
        }
        // PR 3 was used last, then 1, 4, 2.
        let now = Date()
        for (number, minutesAgo) in [(3, 1.0), (1, 2), (4, 3), (2, 4)] {
            await bench.environments.update(bench.key(number)) {
                $0.lastRequestAt = now.addingTimeInterval(-60 * minutesAgo)
                ($0.lastActivityAt, $0.createdAt) = (nil, .distantPast)
            }
        }
        let due = SleepPolicy.due(await bench.environments.allEnvironments(), config: bench.controller.config, now: now)
        #expect(due.map(\.number) == [2, 4])
    }

    @Test func onlyWhatWasIdleForItsRepositorysSleepAfterSleeps() throws {
        let config = try TestConfig.load(
            """
            repos:
              acme/web: {image: "acme/web:{{sha}}", sleep_after: 10m}
              acme/api: {image: "acme/api:{{sha}}"}
            """,
            in: try TestConfig.temporaryDirectory("sleep-policy")
        )
        let now = Date()
        func env(_ repo: String, _ number: Int, usedMinutesAgo: Double, status: EnvironmentStatus = .ready) -> Environment {
            var env = Environment(
                repo: repo,
                number: number,
                slug: "pr-\(number)",
                branch: "b",
                title: "",
                author: "",
                headRepo: repo,
                desired: .present,
                desiredSha: a,
                desiredVersion: 1,
                appliedVersion: 1,
                sourceUpdatedAt: "",
                status: status,
                commentPending: false,
                createdAt: now.addingTimeInterval(-86400),
                updatedAt: now,
                lastActivityAt: nil,
                admitted: true,
                waitingSince: nil,
                approvedSha: nil,
                approvedBy: nil,
                labelSha: nil,
                labelSender: nil
            )
            env.lastRequestAt = now.addingTimeInterval(-60 * usedMinutesAgo)
            return env
        }
        let due = SleepPolicy.due(
            [
                env("acme/web", 1, usedMinutesAgo: 11), env("acme/web", 2, usedMinutesAgo: 9),
                env("acme/api", 3, usedMinutesAgo: 600), env("acme/web", 4, usedMinutesAgo: 60, status: .deploying),
            ],
            config: config,
            now: now
        )
        #expect(due.map(\.number) == [1])
    }
}

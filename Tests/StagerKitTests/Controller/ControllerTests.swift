import Foundation
import Logging
import StagerTestSupport
import Testing

@testable import StagerKit

/// A controller wired to the in-memory seams: the real planner, gate, interpreter and announcer, with
/// the engine, nginx, GitHub and SQLite replaced by their twins.
struct ControllerBench {
    let timeline = Timeline()
    let environments = InMemoryEnvironments()
    let runtime: InMemoryRuntime
    let frontDoor: InMemoryFrontDoor
    let comments: InMemoryComments
    let deployments: InMemoryDeployments
    let builder: InMemoryBuilder
    let controller: Controller
    let repo = "acme/web"

    init(repoOptions: String = "", maxEnvironments: Int = 50, permissions: [String: String] = [:], limits: String = "") throws {
        let dir = try TestConfig.temporaryDirectory("controller")
        let config = try TestConfig.load(
            """
            data_dir: data
            nginx:
              sites_dir: sites
            limits:
              max_environments: \(maxEnvironments)
            \(limits)
            repos:
              acme/web:
                image: "acme/web:{{sha}}"
                health_timeout: 300ms
                drain: 1ms
            \(repoOptions)
            """,
            in: dir
        )
        runtime = InMemoryRuntime(timeline: timeline)
        frontDoor = InMemoryFrontDoor(timeline: timeline)
        comments = InMemoryComments(timeline: timeline)
        deployments = InMemoryDeployments(timeline: timeline)
        builder = InMemoryBuilder(runtime: runtime)
        let logger = Logger(label: "controller-test")
        let templates = try Templates.load()
        let seams = ControllerSeams(
            environments: environments,
            runtime: EngineStacks(engine: runtime, probe: InMemoryProber(runtime: runtime), logger: logger),
            frontDoor: frontDoor,
            announcer: Announcer(
                environments: environments,
                publisher: comments,
                deployments: deployments,
                comment: templates.comment,
                config: config,
                logger: logger
            ),
            probe: InMemoryProber(runtime: runtime),
            builder: builder,
            permissions: InMemoryPermissions(permissions: permissions)
        )
        controller = Controller(config: config, seams: seams, metrics: StagerMetrics(), logger: logger)
    }

    func key(_ number: Int) -> PullRequestKey { PullRequestKey(repo: repo, number: number) }

    func change(_ number: Int, _ intent: Intent, sha: String, headRepo: String? = nil) -> DesiredStateChange {
        DesiredStateChange(
            id: UUID().uuidString,
            key: key(number),
            intent: intent,
            pullRequest: PullRequestFacts(branch: "feature-\(number)", headSha: sha, headRepo: headRepo ?? repo),
            action: intent == .teardown ? "closed" : "synchronize",
            source: .webhook
        )
    }

    func open(_ number: Int, sha: String, labeledBy: String? = nil, headRepo: String? = nil) async {
        var change = change(number, .deploy(sha: sha), sha: sha, headRepo: headRepo)
        change.labeledBy = labeledBy
        await environments.accept(change)
    }

    func close(_ number: Int, sha: String) async {
        await environments.accept(change(number, .teardown, sha: sha))
    }

    func converge(_ number: Int) async throws {
        try await controller.convergeNow(key(number))
    }

    func environment(_ number: Int) async -> Environment? { await environments.environment(key(number)) }

    func comment(_ number: Int) async -> String { await comments.bodies[key(number)] ?? "" }
}

@Suite("Controller on in-memory seams")
struct ControllerTests {
    let a = Fixtures.sha("a"), b = Fixtures.sha("b")

    @Test func aFirstDeployRunsRoutesThenSaysSoDeploymentBeforeComment() async throws {
        let bench = try ControllerBench()
        await bench.open(1, sha: a)
        try await bench.converge(1)
        #expect(await bench.environment(1)?.status == .ready)
        #expect(await bench.environment(1)?.deployedSha == a)
        let events = await bench.timeline.events
        let run = try #require(events.firstIndex { $0.hasPrefix("run pr-1") })
        let route = try #require(events.firstIndex { $0.hasPrefix("route pr-1") })
        let success = try #require(events.firstIndex { $0 == "deployment 1 success" })
        let comment = try #require(events.firstIndex { $0.hasPrefix("comment ### :rocket:") })
        #expect(run < route && route < success && success < comment, "\(events)")
        #expect(await bench.comment(1).contains("http://pr-1."))
    }

    @Test func approvalComesFromAWriterNotAReader() async throws {
        let bench = try ControllerBench(repoOptions: "    require_label: true", permissions: ["rita": "read", "wanda": "write"])
        await bench.open(2, sha: a, labeledBy: "rita")
        try await bench.converge(2)
        #expect(await bench.environment(2)?.status == .blocked)
        #expect(await bench.comment(2).contains("`@rita`"))
        #expect(await bench.timeline.count("run") == 0)

        await bench.open(2, sha: a, labeledBy: "wanda")
        try await bench.converge(2)
        #expect(await bench.environment(2)?.status == .ready)
        #expect(await bench.environment(2)?.approvedBy == "wanda")

        // A new commit needs a new approval.
        await bench.open(2, sha: b)
        try await bench.converge(2)
        #expect(await bench.environment(2)?.status == .blocked)
        #expect(await bench.environment(2)?.deployedSha == a)
    }

    @Test func prsWaitForRoomOldestFirst() async throws {
        let bench = try ControllerBench(maxEnvironments: 1)
        for number in 1...3 { await bench.open(number, sha: Fixtures.sha("\(number)")) }
        for number in 1...3 { try await bench.converge(number) }
        #expect(await bench.environment(1)?.status == .ready)
        #expect(await bench.environment(2)?.status == .waiting)
        #expect(await bench.comment(3).contains("number 2"))

        await bench.close(1, sha: Fixtures.sha("1"))
        try await bench.converge(1)
        // PR 3 asks first, but PR 2 waits longer: the room is 2's.
        try await bench.converge(3)
        #expect(await bench.environment(3)?.status == .waiting)
        try await bench.converge(2)
        #expect(await bench.environment(2)?.status == .ready)
    }

    @Test func aFailedDeployKeepsTheOldContainerServing() async throws {
        let bench = try ControllerBench()
        await bench.open(4, sha: a)
        try await bench.converge(4)
        await bench.runtime.setUnhealthy("acme/web:\(b)")
        await bench.open(4, sha: b)
        try await bench.converge(4)

        let env = try #require(await bench.environment(4))
        #expect(env.status == .failed && env.failedSha == b && env.deployedSha == a)
        #expect(await bench.frontDoor.routes["pr-4"]?.sha == a)
        #expect(await bench.runtime.containers.map(\.sha) == [a])
        #expect(await bench.comment(4).contains("The previous version (\(a.prefix(12))) still serves"))
        #expect(await bench.comment(4).contains("boom"))
        #expect(await bench.deployments.statuses[2] == ["in_progress", "failure"])

        // The same sha is not tried again until a newer intent arrives.
        try await bench.converge(4)
        #expect(await bench.timeline.count("run pr-4 \(b)") == 1)
    }

    /// A repository that builds, PR `number` opened at `a`, converging in a task until its build started.
    func startBuilding(_ number: Int) async throws -> (ControllerBench, Task<Void, any Error>) {
        let bench = try ControllerBench(
            repoOptions: """
                    build:
                      dockerfile: Dockerfile
                """
        )
        await bench.open(number, sha: a)
        let converging = Task { try await bench.converge(number) }
        // A build that has not started cannot be finished: stop here rather than wait for ever on it.
        let started = try await Wait.until { await bench.builder.started == [a] }
        if !started { converging.cancel() }
        try #require(started)
        return (bench, converging)
    }

    @Test func aPushStopsTheBuildOfTheCommitItReplaces() async throws {
        let (bench, first) = try await startBuilding(5)
        #expect(await bench.environment(5)?.status == .building)

        await bench.open(5, sha: b)
        #expect(try await Wait.until { await bench.builder.started == [a, b] })
        await bench.builder.finish(succeeding: true)
        try await first.value

        #expect(await bench.environment(5)?.status == .ready)
        #expect(await bench.environment(5)?.deployedSha == b)
        #expect(await bench.timeline.count("run pr-5 \(a)") == 0)
        #expect(await bench.runtime.images == ["acme/web:\(b)"])
    }

    @Test func aFailedBuildSaysWhyWithTheBuildLog() async throws {
        let (bench, converging) = try await startBuilding(6)
        await bench.builder.finish(succeeding: false)
        try await converging.value
        #expect(await bench.environment(6)?.status == .failed)
        #expect(await bench.comment(6).contains("Last lines of the build log"))
        #expect(await bench.comment(6).contains("error: boom"))
    }

    @Test func aTeardownTakesTheURLDownBeforeTheContainer() async throws {
        let bench = try ControllerBench()
        await bench.open(7, sha: a)
        try await bench.converge(7)
        await bench.close(7, sha: a)
        try await bench.converge(7)

        let events = await bench.timeline.events
        let unroute = try #require(events.firstIndex(of: "unroute pr-7"))
        let rm = try #require(events.firstIndex { $0.hasPrefix("rm pr-7") })
        let deleted = try #require(events.firstIndex(of: "comment deleted"))
        #expect(unroute < rm && rm < deleted, "\(events)")
        #expect(await bench.environment(7)?.status == .removed)
        #expect(await bench.deployments.statuses[1]?.last == "inactive")
        #expect(await bench.runtime.containers.isEmpty)
    }

    @Test func aVhostNginxRejectsFailsTheDeployAndLeavesNothing() async throws {
        let bench = try ControllerBench()
        await bench.frontDoor.setRejectNext()
        await bench.open(8, sha: a)
        try await bench.converge(8)
        let env = try #require(await bench.environment(8))
        #expect(env.status == .failed)
        #expect(env.failureReason?.contains("nginx rejected the vhost") == true)
        #expect(await bench.runtime.containers.isEmpty)
        #expect(await bench.frontDoor.routes.isEmpty)
    }

    @Test func anEngineThatDoesNotAnswerIsRetriedNotFailed() async throws {
        let bench = try ControllerBench()
        await bench.runtime.setUnavailable(true)
        await bench.open(9, sha: a)
        await #expect(throws: EngineUnavailable.self) { try await bench.converge(9) }
        let waiting = try #require(await bench.environment(9))
        #expect(waiting.status != .failed && waiting.failedSha == nil && waiting.appliedVersion == 0)

        await bench.runtime.setUnavailable(false)
        try await bench.converge(9)
        #expect(await bench.environment(9)?.status == .ready)
        #expect(await bench.runtime.containers.count == 1)
    }

    /// The engine's return brings retries forward: the PR does not wait out its backoff.
    @Test func theEngineComingBackRetriesAtOnce() async throws {
        let bench = try ControllerBench()
        await bench.runtime.setUnavailable(true)
        await bench.open(11, sha: a)
        await bench.controller.converge(bench.key(11))
        #expect(await bench.controller.engineHealth.down != nil)
        #expect(await bench.controller.retries.takeDue().isEmpty)

        await bench.controller.checkTheEngine()
        #expect(await bench.controller.engineHealth.down != nil, "still down: nothing changes")
        #expect(await bench.controller.retries.takeDue().isEmpty)

        await bench.runtime.setUnavailable(false)
        await bench.controller.checkTheEngine()
        #expect(await bench.controller.engineHealth.down == nil)
        #expect(await bench.controller.retries.takeDue() == [bench.key(11)])
    }

    @Test func aRefusedImageIsAFailedDeployNamingDocker() async throws {
        let bench = try ControllerBench()
        await bench.runtime.refuse("acme/web:\(a)")
        await bench.open(10, sha: a)
        try await bench.converge(10)
        #expect(await bench.environment(10)?.failureReason?.hasPrefix("docker could not start the container") == true)
    }

    @Test func aCrashAfterTheContainerStartedConvergesWithoutASecondOne() async throws {
        let bench = try ControllerBench()
        await bench.open(11, sha: a)
        // The state a process killed right after `docker run` leaves: a running container, no vhost, nothing applied.
        let env = try #require(await bench.environment(11))
        let config = bench.controller.config
        let repo = try #require(config.repo(bench.repo))
        _ = try await bench.runtime.start(ContainerSpec.app(of: env, repo: repo, sha: a, image: "acme/web:\(a)", config: config))
        try await bench.converge(11)
        #expect(await bench.timeline.count("run pr-11") == 1)
        #expect(await bench.environment(11)?.status == .ready)
        #expect(await bench.frontDoor.routes["pr-11"]?.sha == a)
    }

    @Test func aCrashAfterTheURLWentDownFinishesTheTeardown() async throws {
        let bench = try ControllerBench()
        await bench.open(12, sha: a)
        try await bench.converge(12)
        await bench.close(12, sha: a)
        // Killed after the vhost went: the container and the comment are still there.
        try await bench.frontDoor.remove(slugs: ["pr-12"])
        try await bench.converge(12)
        #expect(await bench.environment(12)?.status == .removed)
        #expect(await bench.runtime.containers.isEmpty)
        #expect(await bench.comment(12).isEmpty)
    }

    @Test func theGateDecidesFromWhatIsRecorded() throws {
        var env = Environment(
            repo: "acme/web",
            number: 1,
            slug: "s",
            branch: "b",
            title: "",
            author: "",
            headRepo: "fork/web",
            desired: .present,
            desiredSha: a,
            desiredVersion: 1,
            appliedVersion: 0,
            sourceUpdatedAt: "",
            status: .queued,
            commentPending: false,
            createdAt: Date(),
            updatedAt: Date(),
            lastActivityAt: nil,
            admitted: false,
            waitingSince: nil,
            approvedSha: nil,
            approvedBy: nil,
            labelSha: nil,
            labelSender: nil
        )
        #expect(Gate.approval(env, requireLabel: false, allowForks: true) == .notNeeded)
        #expect(Gate.approval(env, requireLabel: false, allowForks: false) == .blocked)
        env.labelSender = "wanda"
        env.labelSha = b
        #expect(Gate.approval(env, requireLabel: false, allowForks: false) == .blocked, "a label on an older head approves nothing")
        env.labelSha = a
        #expect(Gate.approval(env, requireLabel: false, allowForks: false) == .checkLabel(sender: "wanda"))
        env.approvedSha = a
        #expect(Gate.approval(env, requireLabel: true, allowForks: true) == .approved)
        #expect(Gate.mayApprove("maintain") && !Gate.mayApprove("triage"))
    }
}

/// Polls a condition until it holds or the timeout passes.
enum Wait {
    /// 30 s: the unit tests share the machine with every end-to-end suite in a full run, where a 5 s wait for a
    /// build to start was once too short.
    static func until(timeout: Duration = .seconds(30), _ condition: @Sendable () async -> Bool) async throws -> Bool {
        try await Poller(first: .milliseconds(2), longest: .milliseconds(20)).until(timeout: timeout, condition)
    }
}

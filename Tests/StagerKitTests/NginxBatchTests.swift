import Foundation
import Logging
import StagerTestSupport
import Testing

@testable import StagerKit

/// Reload batching: changes that arrive together share one test and one reload, and a bad vhost in a
/// batch fails alone.
@Suite("nginx reload batching")
struct NginxBatchTests {
    static func route(_ slug: String, container: String) -> Route {
        Route(
            key: PullRequestKey(repo: "acme/web", number: slug.count),
            slug: slug,
            hostName: "\(slug).preview.localhost",
            upstreamPort: 40000,
            containerName: container,
            sha: "abc"
        )
    }

    /// A runner standing in for nginx: `-t` fails while any vhost in the folder routes to a container named "broken".
    static func nginx(sites: URL) -> RecordingRunner {
        RecordingRunner { command in
            guard command.arguments.contains("-t") else { return CommandResult(exitCode: 0) }
            let files = (try? FileManager.default.contentsOfDirectory(atPath: sites.path)) ?? []
            let broken = files.contains { name in
                (try? String(contentsOf: sites.appendingPathComponent(name), encoding: .utf8))?.contains("container=broken") ?? false
            }
            return broken ? CommandResult(exitCode: 1, standardError: "nginx: [emerg] broken vhost") : CommandResult(exitCode: 0)
        }
    }

    @Test func changesArrivingTogetherShareOneTestAndOneReload() async throws {
        let dir = try TestConfig.temporaryDirectory("batch")
        let config = try TestConfig.load("nginx:\n  sites_dir: sites\n  batch_delay: 50ms\n", in: dir)
        let runner = Self.nginx(sites: config.nginx.sitesDir)
        let door = NginxFrontDoor(
            config: config.nginx,
            wakePath: WakePath(address: "127.0.0.1:9", token: "t", holdFor: .seconds(60)),
            template: try Templates.load().vhost,
            runner: runner,
            logger: Logger(label: "t")
        )
        try await withThrowingTaskGroup(of: Void.self) { group in
            for index in 0..<10 {
                group.addTask { try await door.apply(Self.route("feature-\(index)", container: "c\(index)")) }
            }
            try await group.waitForAll()
        }
        // The first change may find nginx idle and go alone; the others arrive meanwhile and go together.
        let reloads = await door.reloadCount
        #expect((1...2).contains(reloads), "\(reloads) reloads for 10 changes")
        #expect(runner.commands.map(\.arguments) == Array(repeating: [["-t"], ["-s", "reload"]], count: reloads).flatMap { $0 })
        #expect(await door.inventory().managed.count == 10)

        try await withThrowingTaskGroup(of: Void.self) { group in
            for index in 0..<10 {
                group.addTask { try await door.remove(slug: "feature-\(index)") }
            }
            try await group.waitForAll()
        }
        #expect((reloads + 1...reloads + 2).contains(await door.reloadCount))
        #expect(await door.inventory().managed.isEmpty)
    }

    /// nginx as a reload leaves it: the new workers answer with the container, but for a moment an old one
    /// may still take a connection and give its default 404. Answers are scripted by the order asked.
    actor ReloadingNginx: Prober {
        let oldWorkerAnswers: Set<Int>
        private(set) var asked: [ContinuousClock.Instant] = []
        init(oldWorkerAnswers: Set<Int>) { self.oldWorkerAnswers = oldWorkerAnswers }

        func get(host: String, port: Int, path: String, hostHeader: String?, headers: [String: String]) async throws -> ProbeAnswer {
            asked.append(.now)
            return oldWorkerAnswers.contains(asked.count)
                ? ProbeAnswer(status: 404, headers: [:], body: "no preview here")
                : ProbeAnswer(status: 200, headers: ["x-stager-upstream": "c1"], body: "new")
        }
        nonisolated func accepts(host: String, port: Int) async -> Bool { true }
    }

    /// Good answers in a row may all come from one new worker while an old one still accepts: "ready" waits
    /// until nginx's old workers stopped taking connections, counted from the first good answer after an old one.
    @Test func confirmationOutlastsTheOldWorkersAndStartsAgainAfterAnOldAnswer() async throws {
        let dir = try TestConfig.temporaryDirectory("confirm")
        defer { try? FileManager.default.removeItem(at: dir) }
        let config = try TestConfig.load("nginx:\n  sites_dir: sites\n", in: dir)
        let nginx = ReloadingNginx(oldWorkerAnswers: [2])
        let door = NginxFrontDoor(
            config: config.nginx,
            wakePath: WakePath(address: "127.0.0.1:9", token: "t", holdFor: .seconds(60)),
            template: try Templates.load().vhost,
            runner: RecordingRunner { _ in CommandResult(exitCode: 0) },
            probe: nginx,
            logger: Logger(label: "t")
        )
        try await door.confirmRouted(hostName: "feature.preview.localhost", to: "c1")
        let done = ContinuousClock.now
        let asked = await nginx.asked
        try #require(asked.count >= 2 + NginxFrontDoor.confirmations, "five good answers after the old worker's")
        #expect(done - asked[2] >= NginxFrontDoor.oldWorkersWindow, "good answers for the whole window after the old one")
        #expect(NginxFrontDoor.oldWorkersWindow > .milliseconds(100), "nginx's master gives its old workers 100 ms")
    }

    /// A sleeping vhost names serve's address; one written for another address (server.listen changed)
    /// does not count as asleep, so the planner routes it to the wake path again.
    @Test func aSleepingVhostOfAnotherServeAddressIsWrittenAgain() async throws {
        let dir = try TestConfig.temporaryDirectory("wake-address")
        let config = try TestConfig.load("nginx:\n  sites_dir: sites\n", in: dir)
        let template = try Templates.load().vhost
        func door(_ address: String) -> NginxFrontDoor {
            NginxFrontDoor(
                config: config.nginx,
                wakePath: WakePath(address: address, token: "t", holdFor: .seconds(60)),
                template: template,
                runner: Self.nginx(sites: config.nginx.sitesDir),
                logger: Logger(label: "t")
            )
        }
        var route = Self.route("sleepy", container: "c1")
        route.asleep = true
        try await door("127.0.0.1:8080").apply(route)
        #expect(await door("127.0.0.1:8080").routed(slug: "sleepy")?.asleep == true)
        let elsewhere = await door("127.0.0.1:9090").routed(slug: "sleepy")
        #expect(elsewhere?.container == "c1" && elsewhere?.port == route.upstreamPort && elsewhere?.asleep == false)
        let text = try String(contentsOf: config.nginx.sitesDir.appendingPathComponent("sleepy.conf"), encoding: .utf8)
        #expect(
            text.contains("rewrite ^ /_stager/wake/sleepy? break;") && text.contains("proxy_pass http://127.0.0.1:8080;")
                && text.contains("internal;")
        )
        let observed = Observation(
            of: Self.sleepingEnvironment,
            containers: [Self.stopped],
            routed: await door("127.0.0.1:9090").routed(slug: "sleepy")
        )
        #expect(Planner.plan(desired: .asleep(sha: Self.stopped.sha), observed: observed) == [.routeToWake(Self.stopped)])
    }

    /// A vhost an older Stager wrote (no keys, the app's X-Accel headers obeyed) is written again: it reads as
    /// routed to port 0, so the planner routes the running container anew.
    /// Only a missing vhost routes nowhere: one that exists and cannot be read (here a folder in its place)
    /// routes somewhere unknown, so a removed environment's teardown still takes it away.
    @Test func anUnreadableVhostIsNotReadAsNone() async throws {
        let dir = try TestConfig.temporaryDirectory("unreadable-vhost")
        let config = try TestConfig.load("nginx:\n  sites_dir: nginx/sites\n", in: dir)
        try FileManager.default.createDirectory(at: config.nginx.sitesDir.appendingPathComponent("odd.conf"), withIntermediateDirectories: true)
        let door = NginxFrontDoor(
            config: config.nginx,
            wakePath: WakePath(address: "127.0.0.1:9", token: "t", holdFor: .seconds(60)),
            template: try Templates.load().vhost,
            runner: Self.nginx(sites: config.nginx.sitesDir),
            logger: Logger(label: "t")
        )
        #expect(await door.routed(slug: "odd") == RoutedUpstream(container: "", port: 0))
        #expect(await door.routed(slug: "missing") == nil)
    }

    @Test func aVhostOfAnOlderStagerIsWrittenAgain() async throws {
        let dir = try TestConfig.temporaryDirectory("old-vhost")
        let config = try TestConfig.load("nginx:\n  sites_dir: nginx/sites\n", in: dir)
        try FileManager.default.createDirectory(at: config.nginx.sitesDir, withIntermediateDirectories: true)
        try "# stager-vhost slug=old container=c1 port=40001 sha=sha1 repo=acme/web env=pr-1\nserver {}\n"
            .write(to: config.nginx.sitesDir.appendingPathComponent("old.conf"), atomically: true, encoding: .utf8)
        let door = NginxFrontDoor(
            config: config.nginx,
            wakePath: WakePath(address: "127.0.0.1:9", token: "t", holdFor: .seconds(60)),
            template: try Templates.load().vhost,
            runner: Self.nginx(sites: config.nginx.sitesDir),
            logger: Logger(label: "t")
        )
        let routed = await door.routed(slug: "old")
        #expect(routed?.container == "c1" && routed?.port == 0)
        let running = ContainerInfo(id: "id-c1", name: "c1", repo: "acme/web", number: 1, sha: "sha1", slug: "old", running: true, hostPort: 40001)
        var env = Self.sleepingEnvironment
        env.status = .ready
        let observed = Observation(of: env, containers: [running], routed: routed)
        #expect(Planner.plan(desired: .present(sha: "sha1"), observed: observed).contains(.routeToCandidate))
        // Written by this Stager, the same file reads as routed to its port.
        try await door.apply(
            Route(
                key: PullRequestKey(repo: "acme/web", number: 1),
                slug: "old",
                hostName: "old.preview.localhost",
                upstreamPort: 40001,
                containerName: "c1",
                sha: "sha1"
            )
        )
        #expect(await door.routed(slug: "old")?.port == 40001)
    }

    static let stopped = ContainerInfo(
        id: "id-c1",
        name: "c1",
        repo: "acme/web",
        number: 1,
        sha: "sha1",
        slug: "sleepy",
        running: false,
        hostPort: 40001
    )
    static var sleepingEnvironment: StagerKit.Environment {
        StagerKit.Environment(
            repo: "acme/web",
            number: 1,
            slug: "sleepy",
            branch: "b",
            title: "",
            author: "",
            headRepo: "acme/web",
            desired: .present,
            desiredSha: "sha1",
            desiredVersion: 2,
            appliedVersion: 2,
            sourceUpdatedAt: "",
            status: .sleeping,
            commentPending: false,
            createdAt: Date(),
            updatedAt: Date(),
            lastActivityAt: nil,
            admitted: true,
            waitingSince: nil,
            approvedSha: nil,
            approvedBy: nil,
            labelSha: nil,
            labelSender: nil
        )
    }

    /// The activity file is written once and reloaded; an nginx that refuses it gets it removed, is not asked
    /// again at the next reconcile, and a reload owed meanwhile still happens.
    @Test func theActivityFileIsWrittenOnceAndARefusalIsNotRepeated() async throws {
        let dir = try TestConfig.temporaryDirectory("activity")
        let config = try TestConfig.load("nginx:\n  sites_dir: nginx/sites\n", in: dir)
        let file = config.nginx.activityFile
        let accepting = RecordingRunner { _ in CommandResult(exitCode: 0) }
        let door = NginxFrontDoor(
            config: config.nginx,
            wakePath: WakePath(address: "127.0.0.1:9", token: "t", holdFor: .seconds(60)),
            template: try Templates.load().vhost,
            runner: accepting,
            logger: Logger(label: "t")
        )
        #expect(try await door.reloadIfOwed())
        #expect(
            try String(contentsOf: file, encoding: .utf8).contains("access_log syslog:server=127.0.0.1:8089,tag=stager,nohostname stager_activity;")
        )
        #expect(try await door.reloadIfOwed() == false, "written already: nothing to do")
        #expect(accepting.commands.count == 2)

        try FileManager.default.removeItem(at: file)
        let refusing = RecordingRunner { command in
            command.arguments.contains("-t") ? CommandResult(exitCode: 1, standardError: "nginx: [emerg] unknown syslog") : CommandResult(exitCode: 0)
        }
        let strict = NginxFrontDoor(
            config: config.nginx,
            wakePath: WakePath(address: "127.0.0.1:9", token: "t", holdFor: .seconds(60)),
            template: try Templates.load().vhost,
            runner: refusing,
            logger: Logger(label: "t")
        )
        try FileManager.default.createDirectory(at: config.nginx.sitesDir, withIntermediateDirectories: true)
        try Data().write(to: config.nginx.sitesDir.appendingPathComponent(".stager-reload-owed"))
        #expect(try await strict.reloadIfOwed(), "the owed reload happened")
        #expect(!FileManager.default.fileExists(atPath: file.path))
        #expect(refusing.commands.map(\.arguments) == [["-t"], ["-s", "reload"]])
        #expect(try await strict.reloadIfOwed() == false)
        #expect(refusing.commands.count == 2, "a refused activity file is not offered again")
    }

    @Test func aBadVhostInABatchFailsAloneAndTheRestGoLive() async throws {
        let dir = try TestConfig.temporaryDirectory("batch-bad")
        let config = try TestConfig.load("nginx:\n  sites_dir: sites\n  batch_delay: 50ms\n", in: dir)
        let runner = Self.nginx(sites: config.nginx.sitesDir)
        let door = NginxFrontDoor(
            config: config.nginx,
            wakePath: WakePath(address: "127.0.0.1:9", token: "t", holdFor: .seconds(60)),
            template: try Templates.load().vhost,
            runner: runner,
            logger: Logger(label: "t")
        )
        try await door.apply(Self.route("serving", container: "old"))

        let results = await withTaskGroup(of: (String, Bool).self) { group in
            for (slug, container) in [("good-one", "g1"), ("serving", "broken"), ("good-two", "g2")] {
                group.addTask { ((slug), (try? await door.apply(Self.route(slug, container: container))) != nil) }
            }
            return await group.reduce(into: [String: Bool]()) { $0[$1.0] = $1.1 }
        }
        #expect(results == ["good-one": true, "serving": false, "good-two": true])
        // The bad change was rolled back: the environment it would have replaced still routes to its old container.
        #expect(await door.routed(slug: "serving")?.container == "old")
        #expect(await door.routed(slug: "good-one")?.container == "g1")
        #expect(await door.routed(slug: "good-two")?.container == "g2")
        // One reload for the first apply; the good ones share one (or go alone if the first found nginx idle).
        #expect((2...3).contains(await door.reloadCount))
    }

    @Test func batchDelayIsBounded() throws {
        let dir = try TestConfig.temporaryDirectory("batch-config")
        #expect(try TestConfig.load("nginx:\n  sites_dir: sites\n", in: dir).nginx.batchDelay == .milliseconds(20))
        #expect(throws: ConfigError.self) { try TestConfig.load("nginx:\n  batch_delay: 5s\n", in: dir) }
    }
}

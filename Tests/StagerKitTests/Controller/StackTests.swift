import Foundation
import StagerTestSupport
import Testing

@testable import StagerKit

/// Services beside the app, on the in-memory seams: order, seeding, release, failures, teardown.
@Suite("Controller: services beside the app")
struct StackTests {
    let a = Fixtures.sha("a"), b = Fixtures.sha("b")

    static let services = """
            release: ["bin/migrate"]
            services:
              db:
                image: "postgres:16"
                port: 5432
                volumes: {data: "/var/lib/postgresql/data"}
                seed: {data: "acme-seed"}
                health_timeout: 300ms
              cache:
                image: "redis:7"
                port: 6379
              worker:
                image: "acme/worker:1"
                depends_on: [db, cache]
        """

    func bench(_ options: String = Self.services) async throws -> ControllerBench {
        let bench = try ControllerBench(repoOptions: options)
        await bench.runtime.addVolume("acme-seed", data: "seeded rows")
        return bench
    }

    @Test func aFirstDeployBuildsTheStackInOrderThenTheApp() async throws {
        let bench = try await bench()
        await bench.open(1, sha: a)
        try await bench.converge(1)
        #expect(await bench.environment(1)?.status == .ready)
        let events = await bench.timeline.events
        func index(_ prefix: String) throws -> Int { try #require(events.firstIndex { $0.hasPrefix(prefix) }, "\(prefix) in \(events)") }
        let network = try index("network stager-default-pr-1")
        let seed = try index("seed stager-default-pr-1-db-data")
        let db = try index("service db")
        let cache = try index("service cache")
        let worker = try index("service worker")
        let release = try index("release acme/web:\(a)")
        let run = try index("run pr-1")
        let route = try index("route pr-1")
        #expect(network < seed && seed < db && db < worker && cache < worker && worker < release && release < run && run < route, "\(events)")
        #expect(await bench.runtime.volumeData["stager-default-pr-1-db-data"] == "seeded rows")
        // The app joined the environment's network.
        #expect(await bench.runtime.containers.filter { $0.service != nil }.count == 3)
    }

    @Test func aPushKeepsServicesAndDataAndRunsTheReleaseAgain() async throws {
        let bench = try await bench()
        await bench.open(2, sha: a)
        try await bench.converge(2)
        let services = await bench.runtime.containers.filter { $0.service != nil }.map(\.id)
        await bench.open(2, sha: b)
        try await bench.converge(2)
        #expect(await bench.environment(2)?.deployedSha == b)
        #expect(await bench.runtime.containers.filter { $0.service != nil }.map(\.id) == services)
        #expect(await bench.timeline.count("release") == 2)
        #expect(await bench.timeline.count("seed") == 1)
    }

    @Test func aChangedServiceDefinitionRecreatesOnlyThatService() async throws {
        let bench = try await bench()
        await bench.open(3, sha: a)
        try await bench.converge(3)
        let before = await bench.runtime.containers.filter { $0.service != nil }
        // The same PR under a configuration whose cache image changed.
        let changed = try ControllerBench(repoOptions: Self.services.replacingOccurrences(of: "redis:7", with: "redis:7.2"))
        let env = try #require(await bench.environment(3))
        let layout = try #require(StackLayout.of(env, config: changed.controller.config))
        let observed = Observation(of: env, containers: before, routed: nil)
        let desire = layout.desire(sha: a)
        #expect(desire.needsPreparing(observed.services))
        #expect(desire.services["db"] == before.first { $0.service == "db" }?.definition)
        #expect(desire.services["cache"] != before.first { $0.service == "cache" }?.definition)
    }

    @Test func aServiceThatNeverGetsHealthyFailsNamingItAndKeepsTheOldApp() async throws {
        let bench = try await bench()
        await bench.open(4, sha: a)
        try await bench.converge(4)
        await bench.runtime.setUnhealthy("postgres:16")
        // The db container goes (as if removed by hand); its replacement never becomes healthy.
        let db = try #require(await bench.runtime.containers.first { $0.service == "db" })
        try await bench.runtime.remove(db.id)
        await bench.open(4, sha: b)
        try await bench.converge(4)
        let env = try #require(await bench.environment(4))
        #expect(env.status == .failed)
        #expect(env.failureReason?.contains("service db was not healthy") == true, "\(env.failureReason ?? "")")
        #expect(await bench.comment(4).contains("Last lines of the log of service db"))
        #expect(await bench.frontDoor.routes["pr-4"]?.sha == a, "the old app keeps serving")
    }

    @Test func aFailingReleaseFailsTheDeployNamingTheCommand() async throws {
        let bench = try await bench()
        await bench.runtime.setReleaseExit(3)
        await bench.open(5, sha: a)
        try await bench.converge(5)
        let env = try #require(await bench.environment(5))
        #expect(env.status == .failed)
        #expect(env.failureReason == "the release command `bin/migrate` exited 3")
        #expect(await bench.comment(5).contains("migrating"))
        #expect(await bench.timeline.count("run pr-5") == 0, "the app never started")
    }

    @Test func aMissingSeedVolumeIsAFailureNamingIt() async throws {
        let bench = try ControllerBench(repoOptions: Self.services)
        await bench.open(6, sha: a)
        try await bench.converge(6)
        #expect(await bench.environment(6)?.failureReason?.contains("the seed volume acme-seed does not exist") == true)
    }

    @Test func closeRemovesServicesNetworkAndVolumes() async throws {
        let bench = try await bench()
        await bench.open(7, sha: a)
        try await bench.converge(7)
        await bench.close(7, sha: a)
        try await bench.converge(7)
        #expect(await bench.environment(7)?.status == .removed)
        #expect(await bench.runtime.containers.isEmpty)
        #expect(await bench.runtime.networks.isEmpty)
        #expect(await bench.runtime.volumes.keys.sorted() == ["acme-seed"])
        // Reopened, the volume is seeded again.
        await bench.open(7, sha: b)
        try await bench.converge(7)
        #expect(await bench.timeline.count("seed") == 2)
    }

    /// A volume removed behind Stager's back (gc, a person) leaves its mark in the store; the new one is
    /// seeded all the same.
    @Test func aVolumeMadeAnewIsSeededWhoeverRemovedTheOldOne() async throws {
        let bench = try await bench()
        await bench.open(9, sha: a)
        try await bench.converge(9)
        let db = try #require(await bench.runtime.containers.first { $0.service == "db" })
        try await bench.runtime.remove(db.id)
        try await bench.runtime.remove(StackResource(kind: .volume, name: "stager-default-pr-9-db-data", repo: "acme/web", number: 9))
        try await bench.converge(9)
        #expect(await bench.timeline.count("seed stager-default-pr-9-db-data") == 2)
        #expect(await bench.runtime.volumeData["stager-default-pr-9-db-data"] == "seeded rows")
        // The service removed alone (its volume kept) is not seeded over.
        let again = try #require(await bench.runtime.containers.first { $0.service == "db" })
        try await bench.runtime.remove(again.id)
        try await bench.converge(9)
        #expect(await bench.timeline.count("seed stager-default-pr-9-db-data") == 2)
    }

    @Test func aServiceRemovedByHandComesBackWithoutTouchingTheApp() async throws {
        let bench = try await bench()
        await bench.open(8, sha: a)
        try await bench.converge(8)
        let app = try #require(await bench.runtime.containers.first { $0.service == nil })
        let cache = try #require(await bench.runtime.containers.first { $0.service == "cache" })
        try await bench.runtime.remove(cache.id)
        try await bench.converge(8)
        #expect(await bench.runtime.containers.contains { $0.service == "cache" })
        #expect(await bench.runtime.containers.first { $0.service == nil } == app)
    }
}

import Foundation
import StagerKit
import StagerTestSupport
import Testing

/// The Docker engine stopped (SIGTERM to dockerd by its pid) and started again while Stager works: every
/// engine failure is retried, never a failed deploy; afterwards every open PR is ready and serving with
/// exactly one running container and one comment, and nothing of a closed PR is left. These stop every
/// container on the engine, so they run alone: `scripts/test` runs them after the other suites.
@Suite(
    "End to end: the engine stopped and started again",
    .serialized,
    .enabled(if: E2EHarness.available && EngineControl.enabled)
)
struct EngineFaultTests {
    /// A repository whose container takes two seconds to listen: a window to stop the engine mid-deploy.
    static let slowRepo = """
          acme/slow:
            image: "\(E2EHarness.image)"
            command: ["/bin/busybox", "sh", "-c", "sleep 2; echo \\"sha=$STAGER_SHA\\" > /www/index.html; exec /bin/busybox httpd -f -p 8080 -h /www"]
            port: 8080
            health_timeout: "30s"
        """

    /// The default interval: what the outage stopped is found when the engine answers again, not at the
    /// next reconcile.
    static let reconcile = "60s"

    @Test func engineRestartedMidDeploy() async throws {
        try await E2EHarness.run(name: "engine-mid", extraRepos: Self.slowRepo, reconcileInterval: Self.reconcile) { harness in
            let before = Fixtures.sha("before-outage")
            try await harness.send("opened", number: 60, branch: "before-outage", sha: before)
            #expect(try await harness.waitSettled(60, status: .ready))

            let mid = Fixtures.sha("mid-deploy")
            try await harness.send("opened", number: 61, branch: "mid-deploy", sha: mid, repo: "acme/slow")
            // Stop the engine once #61's container exists, before it listens.
            #expect(try await harness.waitUntil(timeout: .seconds(20)) { try await harness.containers().contains { $0.number == 61 } })
            try await EngineControl.whileStopped {
                // The deploy meets an engine that does not answer: it waits, it does not fail.
                try await Task.sleep(for: .seconds(3))
                #expect(try harness.environment(61, repo: "acme/slow")?.status != .failed)
            }

            try await expectServingOnce(harness, 60, repo: "acme/web", slug: "before-outage", sha: before)
            try await expectServingOnce(harness, 61, repo: "acme/slow", slug: "mid-deploy", sha: mid)
        }
    }

    @Test func closeDuringOutage() async throws {
        try await E2EHarness.run(name: "engine-close", reconcileInterval: Self.reconcile) { harness in
            let kept = Fixtures.sha("kept")
            try await harness.send("opened", number: 62, branch: "kept", sha: kept)
            try await harness.send("opened", number: 63, branch: "closing", sha: Fixtures.sha("closing"))
            #expect(try await harness.waitSettled(62, status: .ready))
            #expect(try await harness.waitSettled(63, status: .ready))

            try await EngineControl.whileStopped {
                let (status, _) = try await harness.send(
                    "closed",
                    number: 63,
                    branch: "closing",
                    sha: Fixtures.sha("closing"),
                    updatedAt: "2026-11-24T09:05:00Z"
                )
                #expect(status == 202)
                // The URL goes first, engine or not: nginx alone takes it down.
                #expect(try await harness.waitUntil(timeout: .seconds(15)) { await harness.throughNginx(slug: "closing")?.status == 404 })
            }

            try await expectServingOnce(harness, 62, repo: "acme/web", slug: "kept", sha: kept)
            try await expectGone(harness, 63, repo: "acme/web", slug: "closing")
        }
    }

    @Test func serveStartedWhileTheEngineIsDown() async throws {
        try await E2EHarness.run(name: "engine-down", reconcileInterval: Self.reconcile, start: false) { harness in
            let sha = Fixtures.sha("engine-down")
            try await EngineControl.whileStopped {
                try await harness.start()
                // Serve answers and accepts while the engine is away.
                #expect(try await harness.get("/healthz").status == 200)
                let (status, _) = try await harness.send("opened", number: 64, branch: "engine-down", sha: sha)
                #expect(status == 202)
                try await Task.sleep(for: .seconds(3))
                #expect(try harness.environment(64)?.status != .failed)
            }
            try await expectServingOnce(harness, 64, repo: "acme/web", slug: "engine-down", sha: sha)
        }
    }

    // MARK: Expectations

    /// Ready, serving its sha through nginx, one running container, one comment.
    func expectServingOnce(
        _ harness: E2EHarness,
        _ number: Int,
        repo: String,
        slug: String,
        sha: String,
        sourceLocation: SourceLocation = #_sourceLocation
    ) async throws {
        #expect(
            try await harness.waitUntil(timeout: .seconds(30)) {
                await harness.throughNginx(slug: slug)?.body.contains("sha=\(sha)") == true
            },
            "\(repo)#\(number) serves \(sha) through nginx",
            sourceLocation: sourceLocation
        )
        #expect(
            try await harness.waitUntil(timeout: .seconds(30)) {
                let mine = try await harness.containers().filter { $0.repo == repo && $0.number == number }
                return mine.count == 1 && mine.allSatisfy(\.running)
            },
            "\(repo)#\(number) has exactly one running container",
            sourceLocation: sourceLocation
        )
        #expect(try await harness.waitSettled(number, repo: repo, status: .ready), sourceLocation: sourceLocation)
        #expect(
            try await harness.waitUntil(timeout: .seconds(15)) { await harness.github.comments(on: repo, issue: number).count == 1 },
            "\(repo)#\(number) has one comment",
            sourceLocation: sourceLocation
        )
    }

    /// No container, no vhost, no comment, and the environment removed.
    func expectGone(
        _ harness: E2EHarness,
        _ number: Int,
        repo: String,
        slug: String,
        sourceLocation: SourceLocation = #_sourceLocation
    ) async throws {
        #expect(
            try await harness.waitUntil(timeout: .seconds(30)) {
                try await harness.containers().filter { $0.repo == repo && $0.number == number }.isEmpty
            },
            "no container of \(repo)#\(number) is left",
            sourceLocation: sourceLocation
        )
        #expect(!harness.vhosts().contains("\(slug).conf"), sourceLocation: sourceLocation)
        #expect(
            try await harness.waitUntil(timeout: .seconds(15)) { await harness.github.comments(on: repo, issue: number).isEmpty },
            "the comment of \(repo)#\(number) is deleted",
            sourceLocation: sourceLocation
        )
        #expect(try await harness.waitSettled(number, repo: repo, status: .removed), sourceLocation: sourceLocation)
    }
}

import Foundation
import StagerKit
import StagerTestSupport
import Subprocess
import Testing

#if canImport(System)
import System
#else
import SystemPackage
#endif

@Suite("End to end: faults", .serialized, .enabled(if: E2EHarness.available))
struct CrashTests {
    /// kill -9 while the container is starting (it takes a second to listen), then a restart: the accepted
    /// intent is finished with exactly one container, and a closed PR ends with none.
    @Test func killedMidDeployFinishesAfterRestart() async throws {
        try await E2EHarness.run(
            name: "crash",
            extraRepos: """
                  acme/slow:
                    image: "\(E2EHarness.image)"
                    command: ["/bin/busybox", "sh", "-c", "sleep 2; echo \\"sha=$STAGER_SHA\\" > /www/index.html; exec /bin/busybox httpd -f -p 8080 -h /www"]
                    port: 8080
                    health_timeout: "30s"
                """,
            start: false
        ) { harness in
            let port = try E2EHarness.freePort()
            _ = try harness.loadConfig(port: port)
            let log = harness.dir.appendingPathComponent("serve.log")
            let first = try StagerProcess(config: harness.configFile, environment: harness.environment, log: log)
            #expect(try await harness.waitUntil { (try? await harness.probeHealth(port: port)) == true })

            let sha = Fixtures.sha("slow")
            #expect(try await harness.send("opened", number: 20, branch: "slow", sha: sha, repo: "acme/slow", port: port).0 == 202)
            #expect(try await harness.send("opened", number: 21, branch: "gone", sha: Fixtures.sha("gone"), repo: "acme/slow", port: port).0 == 202)
            #expect(
                try await harness.send(
                    "closed",
                    number: 21,
                    branch: "gone",
                    sha: Fixtures.sha("gone"),
                    updatedAt: "2026-11-24T09:01:00Z",
                    repo: "acme/slow",
                    port: port
                ).0 == 202
            )
            // Kill once the container exists but before it is healthy and routed.
            #expect(try await harness.waitUntil(timeout: .seconds(15)) { try await harness.containers().contains { $0.number == 20 } })
            try await first.kill9()
            #expect(harness.vhosts().isEmpty)

            let second = try StagerProcess(config: harness.configFile, environment: harness.environment, log: log)
            #expect(
                try await harness.waitUntil(timeout: .seconds(40)) {
                    await harness.throughNginx(slug: "slow")?.body.contains("sha=\(sha)") == true
                }
            )
            #expect(
                try await harness.waitUntil(timeout: .seconds(10)) {
                    try await harness.containers().filter { $0.number == 20 }.count == 1
                }
            )
            // The killed serve's `docker run` for #21 may still be starting its container: `docker rm -f` then waits
            // for the start, seconds on a busy machine. Gone, not necessarily gone by the time #20 serves.
            #expect(try await harness.waitUntil(timeout: .seconds(30)) { try await harness.containers().filter { $0.number == 21 }.isEmpty })
            #expect(try await harness.waitUntil(timeout: .seconds(10)) { await harness.github.comments(on: "acme/slow", issue: 20).count == 1 })
            try await second.terminate()
        }
    }

    /// A container removed by hand comes back; one started by hand with our labels but no environment goes.
    @Test func reconcilerRepairsDrift() async throws {
        try await E2EHarness.run(name: "drift", reconcileInterval: "1s") { harness in
            try await harness.send("opened", number: 30, branch: "drift", sha: Fixtures.sha("drift"))
            #expect(try await harness.waitSettled(30, status: .ready))
            let original = try #require(try await harness.containers().first)
            _ = try await SubprocessRunner().check(Command("docker", ["rm", "-f", original.id]))
            let stray = try await SubprocessRunner().check(
                Command(
                    "docker",
                    [
                        "run", "-d", "--label", "stager.managed=true", "--label", "stager.instance=\(harness.instance)",
                        "--label", "stager.repo=acme/web", "--label", "stager.pr=999", "--", E2EHarness.image,
                    ]
                )
            ).standardOutput.trimmingCharacters(in: .whitespacesAndNewlines)
            #expect(
                try await harness.waitUntil(timeout: .seconds(30)) {
                    let containers = try await harness.containers()
                    return containers.count == 1 && containers.first?.id != original.id && !containers.contains { $0.id == stray }
                }
            )
            #expect(try await harness.waitUntil { await harness.throughNginx(slug: "drift")?.status == 200 })
            #expect(await harness.github.comments(on: "acme/web", issue: 30).count == 1)
        }
    }

    /// A container the engine restarts comes back on a new loopback port (as after a dockerd restart with
    /// Stager down): the reconciler points the vhost at it again, so the URL answers without a new event.
    @Test func aRestartedContainerIsRoutedAgain() async throws {
        try await E2EHarness.run(name: "restart") { harness in
            try await harness.open(31, branch: "restarted")
            #expect(try await harness.waitSettled(31, status: .ready))
            let before = try #require(try await harness.containers().first)
            await harness.stop()
            _ = try await SubprocessRunner().check(Command("docker", ["restart", "--time", "0", before.id]))
            try await harness.start()
            let after = try #require(try await harness.containers().first)
            #expect(after.id == before.id && after.hostPort != before.hostPort)
            #expect(
                try await harness.waitUntil(timeout: .seconds(30)) {
                    try String(contentsOf: harness.dir.appendingPathComponent("nginx/sites/restarted.conf"), encoding: .utf8)
                        .contains("port=\(after.hostPort ?? 0)")
                }
            )
            #expect(try await harness.waitUntil(timeout: .seconds(10)) { await harness.throughNginx(slug: "restarted")?.status == 200 })
            #expect(try await harness.waitUntil(timeout: .seconds(10)) { try harness.environment(31)?.hostPort == after.hostPort })
        }
    }

    /// GitHub failing three times with 500 still ends with exactly one comment.
    @Test func githubErrorsStillYieldOneComment() async throws {
        try await E2EHarness.run(name: "gh500") { harness in
            await harness.github.inject(.init(status: 500), times: 3)
            try await harness.send("opened", number: 40, branch: "gh", sha: Fixtures.sha("gh"))
            #expect(try await harness.waitUntil(timeout: .seconds(40)) { await harness.github.comments(on: "acme/web", issue: 40).count == 1 })
            #expect(try await harness.waitSettled(40, status: .ready))
        }
    }
}

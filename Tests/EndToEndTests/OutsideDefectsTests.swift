import Foundation
import StagerKit
import StagerTestSupport
import Testing

extension E2EHarness {
    /// Builds `tag` FROM the base image with the labels Stager puts on an image it built for PR `number`.
    func buildLabelledImage(_ tag: String, number: Int) async throws {
        let context = dir.appendingPathComponent("image-\(number)")
        try FileManager.default.createDirectory(at: context, withIntermediateDirectories: true)
        try "FROM \(E2EHarness.image)\n".write(to: context.appendingPathComponent("Dockerfile"), atomically: true, encoding: .utf8)
        try await SubprocessRunner().check(
            Command(
                "docker",
                [
                    "build", "--quiet", "--tag", tag, "--label", "stager.managed=true", "--label", "stager.instance=\(instance)",
                    "--label", "stager.repo=acme/web", "--label", "stager.pr=\(number)", "--", context.path,
                ],
                environment: ["DOCKER_BUILDKIT": "0"]
            )
        )
    }

    func imageTags() async throws -> String {
        try await SubprocessRunner().check(Command("docker", ["image", "ls", "--format", "{{.Repository}}:{{.Tag}}"])).standardOutput
    }
}

/// Regressions for the defects found by testing from the outside (issue 12), each on the real engine and nginx.
@Suite("End to end: defects found from the outside", .serialized, .enabled(if: E2EHarness.available))
struct OutsideDefectsTests {
    /// gc reads the labels of images Stager built (the docker CLI's image list has no `.Label`): it removes the
    /// image of a PR without an environment, keeps a live one's, and exits 0.
    @Test func gcWorksWhileBuiltImagesExist() async throws {
        try await E2EHarness.run(name: "gc-built") { harness in
            try await harness.open(1, branch: "live")
            #expect(try await harness.waitSettled(1, status: .ready))
            let repository = "stager/e2e-built-\(UUID().uuidString.prefix(8).lowercased())"
            try await harness.buildLabelledImage("\(repository):live", number: 1)
            try await harness.buildLabelledImage("\(repository):gone", number: 5)

            let gc = try await harness.stager(["gc"])
            #expect(gc.exitCode == 0, "\(gc.standardError)")
            #expect(gc.standardOutput.contains("gc: removed 0 environments, 0 containers, 0 vhosts, 1 image; kept 1"), "\(gc.standardOutput)")
            let images = try await harness.imageTags()
            #expect(!images.contains("\(repository):gone"))
            #expect(images.contains("\(repository):live"))
            #expect(await harness.throughNginx(slug: "live")?.status == 200)
            _ = try? await SubprocessRunner().run(Command("docker", ["image", "rm", "\(repository):live"]))
        }
    }

    /// GitHub's word that a PR is closed is the newest there is, even when its `updated_at` is older than the
    /// last webhook's: gc tears the environment down for good and reports only that.
    @Test func gcTearsDownAClosedPullRequestWhoseWebhooksLookNewer() async throws {
        try await E2EHarness.run(name: "gc-older-close") { harness in
            let first = Fixtures.sha("older-1")
            let second = Fixtures.sha("older-2")
            try await harness.open(2, branch: "older", sha: first)
            #expect(try await harness.waitSettled(2, status: .ready))
            #expect(try await harness.send("synchronize", number: 2, branch: "older", sha: second, updatedAt: "2026-11-24T10:00:00Z").0 == 202)
            #expect(try await harness.waitUntil { try harness.environment(2)?.deployedSha == second })
            #expect(try await harness.waitSettled(2, status: .ready))
            // The first sha's container drains for a while after the switch; gc is about the environment, not that.
            #expect(try await harness.waitUntil { try await harness.containers().count == 1 })
            await harness.github.setPull(number: 2, branch: "older", sha: second, state: "closed", updatedAt: "2026-11-24T09:30:00Z")

            let gc = try await harness.stager(["gc"])
            #expect(gc.exitCode == 0, "\(gc.standardError)")
            #expect(gc.standardOutput.contains("gc: removed 1 environment, 0 containers, 0 vhosts; kept 0"), "\(gc.standardOutput)")
            let env = try #require(try harness.environment(2))
            #expect(env.desired == .absent)
            #expect(env.status == .removed)
            #expect(env.appliedVersion == env.desiredVersion)
            #expect(try await harness.containers().isEmpty)
            #expect(harness.vhosts().isEmpty)
            #expect(await harness.throughNginx(slug: "older")?.status == 404)
        }
    }

    /// nginx not running when a vhost changes is an outage, not a failed deploy: no failure comment, and the
    /// PR goes live once nginx is back.
    @Test func nginxDownWhileDeployingIsRetriedUntilItIsBack() async throws {
        try await E2EHarness.run(name: "nginx-down") { harness in
            let script = Fixtures.repoRoot.appendingPathComponent("scripts/private-nginx").path
            let nginxDir = harness.dir.appendingPathComponent("nginx").path
            try await SubprocessRunner().check(Command(script, ["stop", nginxDir]))
            let sha = Fixtures.sha("nginx-down")
            let key = PullRequestKey(repo: "acme/web", number: 3)
            #expect(try await harness.send("opened", number: 3, branch: "nginx-down", sha: sha).0 == 202)
            // The deploy reached the reload and is being retried.
            #expect(
                try await harness.waitUntil(timeout: .seconds(30)) {
                    try harness.app?.store.auditEvents(for: key).contains { $0.kind == "error" && $0.message.contains("nginx reload failed") } == true
                }
            )
            #expect(try harness.environment(3)?.status != .failed)

            try await SubprocessRunner().check(Command(script, ["start", nginxDir, "127.0.0.1:\(harness.nginxPort)"]))
            #expect(try await harness.waitSettled(3, status: .ready, timeout: .seconds(60)))
            #expect(await harness.throughNginx(slug: "nginx-down")?.body.contains("sha=\(sha)") == true)
            let comments = await harness.github.comments(on: "acme/web", issue: 3)
            #expect(comments.count == 1)
            #expect(comments.allSatisfy { !$0.body.contains("failed") })
            #expect(try await harness.containers().count == 1)
        }
    }

    /// serve killed after removing a closed PR's vhost but before nginx reloaded: the next start reloads
    /// nginx, so the URL stops routing to the container that then goes (404, never 502).
    @Test func killedBetweenVhostRemovalAndReloadLeavesNoStaleRoute() async throws {
        try await E2EHarness.run(name: "kill-after-close", start: false) { harness in
            let port = try E2EHarness.freePort()
            _ = try harness.loadConfig(port: port)
            // The reload command kills serve (its parent) once, when the flag exists: a kill -9 in the exact window.
            let flag = harness.dir.appendingPathComponent("kill-on-reload")
            let wrapper = harness.dir.appendingPathComponent("reload-or-die")
            try "#!/bin/sh\nif [ -f '\(flag.path)' ]; then rm -f '\(flag.path)'; kill -9 $PPID; exit 1; fi\nexec \"$@\"\n"
                .write(to: wrapper, atomically: true, encoding: .utf8)
            try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: wrapper.path)
            let yaml = try String(contentsOf: harness.configFile, encoding: .utf8)
                .replacingOccurrences(of: "reload_command: [", with: "reload_command: [\"\(wrapper.path)\", ")
            try yaml.write(to: harness.configFile, atomically: true, encoding: .utf8)

            let log = harness.dir.appendingPathComponent("serve.log")
            let first = try StagerProcess(config: harness.configFile, environment: harness.environment, log: log)
            #expect(try await harness.waitUntil { (try? await harness.probeHealth(port: port)) == true })
            let sha = Fixtures.sha("killed-close")
            #expect(try await harness.send("opened", number: 22, branch: "killed-close", sha: sha, port: port).0 == 202)
            #expect(try await harness.waitUntil(timeout: .seconds(30)) { await harness.throughNginx(slug: "killed-close")?.status == 200 })

            try Data().write(to: flag)
            #expect(
                try await harness.send("closed", number: 22, branch: "killed-close", sha: sha, updatedAt: "2026-11-24T09:01:00Z", port: port).0 == 202
            )
            let pid = try await first.processID
            #expect(try await harness.waitUntil(timeout: .seconds(30)) { !ProcessLiveness.isRunning(pid_t(pid)) })
            #expect(harness.vhosts().isEmpty)
            // nginx still has the vhost loaded: the state a restart must repair.
            let stale = try await harness.requestThroughNginx(slug: "killed-close")
            #expect(stale.status == 200, "\(stale.headers)")

            let second = try StagerProcess(config: harness.configFile, environment: harness.environment, log: log)
            #expect(try await harness.waitUntil(timeout: .seconds(30)) { try await harness.containers().isEmpty })
            #expect(try await harness.waitUntil(timeout: .seconds(10)) { await harness.throughNginx(slug: "killed-close")?.status == 404 })
            #expect(await harness.throughNginx(slug: "killed-close")?.status == 404)
            try await second.terminate()
        }
    }
}

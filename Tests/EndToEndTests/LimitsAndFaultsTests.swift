import Foundation
import StagerKit
import StagerTestSupport
import Testing

/// Limits and faults of the outside world (nginx, GitHub, the engine) on the real parts.
@Suite("End to end: limits and faults", .serialized, .enabled(if: E2EHarness.available))
struct LimitsAndFaultsTests {
    /// Over `max_environments` a PR waits with a comment saying so, and deploys once room frees up, oldest first.
    @Test func maxEnvironmentsQueuesAndLaterDeploys() async throws {
        try await E2EHarness.run(name: "limit", extraLimits: "  max_environments: 1") { harness in
            try await harness.open(1, branch: "first")
            #expect(try await harness.waitSettled(1, status: .ready))
            try await harness.open(2, branch: "second")
            #expect(try await harness.waitSettled(2, status: .waiting))
            try await harness.open(3, branch: "third")
            #expect(try await harness.waitSettled(3, status: .waiting))
            let waiting = try #require(await harness.github.comments(on: "acme/web", issue: 2).first)
            #expect(waiting.body.contains("1 of 1 preview environments are in use") && waiting.body.contains("number 1"))
            #expect(await harness.github.comments(on: "acme/web", issue: 3).first?.body.contains("number 2") == true)
            #expect(try await harness.containers().map(\.number) == [1])

            try await harness.send("closed", number: 1, branch: "first", sha: Fixtures.sha("first"), updatedAt: "2026-11-24T09:30:00Z")
            #expect(try await harness.waitSettled(2, status: .ready))
            #expect(await harness.throughNginx(slug: "second")?.status == 200)
            // The same comment now carries the URL; the third still waits.
            let comments = await harness.github.comments(on: "acme/web", issue: 2)
            #expect(comments.map(\.id) == [waiting.id] && comments.first?.body.contains("Preview ready") == true)
            #expect(try harness.environment(3)?.status == .waiting)
            #expect(try await harness.containers().map(\.number) == [2])
        }
    }

    /// nginx refusing one vhost rolls that file back and fails that environment with nginx's own message;
    /// the other environment keeps serving.
    @Test func nginxRejectingOneVhostLeavesTheOthersServing() async throws {
        let templates = try TestConfig.temporaryDirectory("templates")
        let extras = templates.appendingPathComponent("extras")
        try FileManager.default.createDirectory(at: extras, withIntermediateDirectories: true)
        // A template that includes a per-environment file: a missing one makes `nginx -t` fail for that vhost only.
        let vhost = try String(contentsOf: Fixtures.repoRoot.appendingPathComponent("templates/vhost.conf.mustache"), encoding: .utf8)
            .replacingOccurrences(of: "    location / {", with: "    include \(extras.path)/{{slug}}.inc;\n    location / {")
        try vhost.write(to: templates.appendingPathComponent("vhost.conf.mustache"), atomically: true, encoding: .utf8)
        try "# nothing extra\n".write(to: extras.appendingPathComponent("good.inc"), atomically: true, encoding: .utf8)

        try await E2EHarness.run(name: "nginx-reject", extraConfig: "templates_dir: \"\(templates.path)\"") { harness in
            try await harness.open(1, branch: "good")
            #expect(try await harness.waitSettled(1, status: .ready))
            try await harness.open(2, branch: "bad")
            #expect(try await harness.waitSettled(2, status: .failed))
            let failed = try #require(try harness.environment(2))
            #expect(failed.failureReason?.contains("nginx rejected the vhost") == true)
            #expect(failed.failureReason?.contains("bad.inc") == true, "\(failed.failureReason ?? "")")
            #expect(harness.vhosts() == ["good.conf"])
            #expect(try await harness.containers().map(\.number) == [1])
            #expect(await harness.throughNginx(slug: "good")?.status == 200)
            #expect(await harness.github.comments(on: "acme/web", issue: 2).first?.body.contains("Preview failed") == true)
        }
    }

    /// GitHub's rate limit (403, x-ratelimit-remaining 0, reset in 2 s) delays the comment, then it lands once.
    @Test func rateLimitDelaysThenSucceeds() async throws {
        try await E2EHarness.run(name: "ratelimit") { harness in
            let reset = Int(Date().timeIntervalSince1970) + 2
            await harness.github.inject(
                .init(
                    status: 403,
                    headers: ["x-ratelimit-remaining": "0", "x-ratelimit-reset": String(reset)],
                    body: "{\"message\":\"API rate limit exceeded\"}",
                    pathContains: "/comments",
                    method: "POST"
                )
            )
            let sent = Date()
            try await harness.open(50, branch: "limited")
            #expect(try await harness.waitSettled(50, status: .ready, timeout: .seconds(40)))
            #expect(await harness.github.comments(on: "acme/web", issue: 50).count == 1)
            #expect(Date().timeIntervalSince(sent) >= 2)
            let posts = await harness.github.requests.filter { $0.method == "POST" }.map(\.status)
            #expect(posts == [403, 201])
        }
    }

    /// The engine stops answering: the webhook is still accepted, /healthz stays 200, the API shows the
    /// degraded state, and the deploy happens once the engine is back.
    @Test func engineDownKeepsTheIntentAndDeploysWhenBack() async throws {
        let switchDir = try TestConfig.temporaryDirectory("engine-switch")
        let script = switchDir.appendingPathComponent("docker")
        let flag = switchDir.appendingPathComponent("down")
        try """
        #!/bin/sh
        # The docker CLI, or what it prints when the engine is down while the flag file exists.
        if [ -e "\(flag.path)" ]; then
          echo "Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?" >&2
          exit 1
        fi
        exec docker "$@"
        """.write(to: script, atomically: true, encoding: .utf8)
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: script.path)
        try Data().write(to: flag)

        try await E2EHarness.run(name: "engine-down", extraConfig: "docker:\n  command: [\"\(script.path)\"]") { harness in
            try await harness.open(60, branch: "patient")
            #expect(try await harness.probeHealth(port: harness.port))
            let probe = HTTPProbe()
            #expect(
                try await harness.waitUntil(timeout: .seconds(20)) {
                    let answer = try await probe.get(host: "127.0.0.1", port: harness.port, path: "/api/environments")
                    let views = try JSONDecoder().decode([EnvironmentView].self, from: Data(answer.body.utf8))
                    return views.first?.degraded?.contains("Cannot connect to the Docker daemon") == true
                }
            )
            #expect(try harness.environment(60)?.status != .failed)
            #expect(try await probe.get(host: "127.0.0.1", port: harness.port, path: "/").body.contains("Degraded:"))
            let list = try await harness.stager(["ls"])
            #expect(list.standardOutput.hasPrefix("WARNING: the Docker engine has not answered since"), "\(list.standardOutput)")

            try FileManager.default.removeItem(at: flag)
            #expect(try await harness.waitSettled(60, status: .ready, timeout: .seconds(60)))
            #expect(await harness.throughNginx(slug: "patient")?.status == 200)
            #expect(
                try await harness.waitUntil(timeout: .seconds(10)) {
                    let answer = try await probe.get(host: "127.0.0.1", port: harness.port, path: "/api/environments")
                    return try JSONDecoder().decode([EnvironmentView].self, from: Data(answer.body.utf8)).first?.degraded == nil
                }
            )
        }
    }
}

import Foundation
import StagerKit
import StagerTestSupport

/// A repository with one seeded service (`db`, busybox httpd serving its volume) whose app reads a value
/// from it at start: open→live against the same docker commands run by hand, and a push against a plain
/// app's push.
extension Bench {
    static let stackRepo = "acme/stack"

    static func stackRepoConfig(seed: String) -> String {
        """
          \(stackRepo):
            image: "\(E2EHarness.image)"
            command: \(appReadingData)
            port: 8080
            health_timeout: "30s"
            drain: "100ms"
            services:
              db:
                image: "\(E2EHarness.image)"
                command: ["/bin/busybox", "httpd", "-f", "-p", "8080", "-h", "/data"]
                port: 8080
                health_path: "/value"
                volumes: {data: "/data"}
                seed: {data: "\(seed)"}
        """
    }

    /// The app's argv: its page holds its sha and what `db` answered.
    static let appReadingData =
        #"["/bin/busybox", "sh", "-c", "v=$(/bin/busybox wget -qO- http://db:8080/value); echo \"sha=$STAGER_SHA data=$v\" > /www/index.html; exec /bin/busybox httpd -f -p 8080 -h /www"]"#

    static func makeSeed(_ name: String, runner: SubprocessRunner) async throws {
        _ = try await runner.check(Command("docker", ["volume", "create", "--label", "stager.bench-seed=true", name]))
        _ = try await runner.check(
            Command(
                "docker",
                [
                    "run", "--rm", "--mount", "type=volume,src=\(name),dst=/d", E2EHarness.image,
                    "/bin/busybox", "sh", "-c", "echo seeded > /d/value",
                ]
            )
        )
    }

    struct Stack: Encodable {
        var open: OpenClose
        /// Push → the new sha served: the stack's and a plain app's, same run.
        var pushStack: Samples
        var pushPlain: Samples
        var pushRatio: Double
    }

    func stack() async throws -> Stack {
        var open = (stager: Samples(), floor: Samples())
        var push = (stack: Samples(), plain: Samples())
        for run in 1...sizes.stackRuns {
            let number = 500 + run
            let branch = "bench-stack-\(run)"
            open.stager.add(try await stagerOpen(number: number, branch: branch, repo: Self.stackRepo))
            open.floor.add(try await floorStackOpen(run))
            push.stack.add(try await stagerPush(number: number, branch: branch, repo: Self.stackRepo))
            let plain = 600 + run
            let plainBranch = "bench-plain-\(run)"
            _ = try await stagerOpen(number: plain, branch: plainBranch)
            push.plain.add(try await stagerPush(number: plain, branch: plainBranch))
            _ = try await stagerClose(number: number, branch: branch, repo: Self.stackRepo)
            _ = try await stagerClose(number: plain, branch: plainBranch)
            try await floorStackClose(run)
        }
        return Stack(
            open: OpenClose(stager: open.stager, floor: open.floor, ratio: open.stager.median / open.floor.median, reloads: 0),
            pushStack: push.stack,
            pushPlain: push.plain,
            pushRatio: push.stack.median / push.plain.median
        )
    }

    /// From sending `synchronize` to the new sha served through nginx.
    func stagerPush(number: Int, branch: String, repo: String = "acme/web") async throws -> Double {
        let sha = Fixtures.sha("\(branch)-pushed")
        let start = clock.now
        try await send("synchronize", number: number, branch: branch, sha: sha, updatedAt: "2026-11-24T09:30:00Z", repo: repo)
        guard try await waitServed(slug: branch, sha: sha) else {
            throw BenchFailure("\(repo)#\(number)'s push was not live within 60 s; see \(log.path)")
        }
        let elapsed = (clock.now - start).seconds
        _ = try await waitUntil(timeout: .seconds(30)) { try await self.status(number, repo: repo) == "ready" }
        return elapsed
    }

    /// By hand: network, volume and its copy, the service and a poll of its port, the app and a poll of
    /// its port, a vhost and a reload, polled through nginx.
    func floorStackOpen(_ run: Int) async throws -> Double {
        let prefix = "stager-bench-floor-\(harness.instance)-stack-\(run)"
        let sha = Fixtures.sha("floor-stack-\(run)")
        let slug = "floor-stack-\(run)"
        let label = ["--label", "stager.bench=\(harness.instance)"]
        let start = clock.now
        try await runner.check(Command("docker", ["network", "create"] + label + [prefix]))
        try await runner.check(Command("docker", ["volume", "create"] + label + ["\(prefix)-data"]))
        try await runner.check(
            Command(
                "docker",
                [
                    "run", "--rm", "--network", "none", "--mount", "type=volume,src=\(stackSeed),dst=/from,readonly",
                    "--mount", "type=volume,src=\(prefix)-data,dst=/to", "--", E2EHarness.image,
                    "busybox", "cp", "-a", "/from/.", "/to/",
                ]
            )
        )
        let db = try await runner.check(
            Command(
                "docker",
                [
                    "run", "-d", "--name", "\(prefix)-db", "--network", prefix, "--network-alias", "db",
                    "--mount", "type=volume,src=\(prefix)-data,dst=/data",
                ] + label
                    + ["--", E2EHarness.image, "/bin/busybox", "httpd", "-f", "-p", "8080", "-h", "/data"]
            )
        )
        .standardOutput.trimmingCharacters(in: .whitespacesAndNewlines)
        let format = "{{with index .NetworkSettings.Networks \"\(prefix)\"}}{{.IPAddress}}{{end}}"
        let address = try await runner.check(Command("docker", ["container", "inspect", "--format", format, db])).standardOutput
            .trimmingCharacters(in: .whitespacesAndNewlines)
        _ = try await waitUntil(timeout: .seconds(30), fast: true) { [probe] in
            (try? await probe.get(host: address, port: 8080, path: "/value"))?.status == 200
        }
        let app = try await runner.check(
            Command(
                "docker",
                [
                    "run", "-d", "--name", "\(prefix)-app", "--network", prefix, "--publish", "127.0.0.1::8080",
                    "--env", "STAGER_SHA=\(sha)",
                ] + label + [
                    "--", E2EHarness.image, "/bin/busybox", "sh", "-c",
                    "v=$(/bin/busybox wget -qO- http://db:8080/value); echo \"sha=$STAGER_SHA data=$v\" > /www/index.html; exec /bin/busybox httpd -f -p 8080 -h /www",
                ]
            )
        ).standardOutput.trimmingCharacters(in: .whitespacesAndNewlines)
        try await routeByHand(container: app, slug: slug, sha: sha)
        return (clock.now - start).seconds
    }

    func floorStackClose(_ run: Int) async throws {
        let prefix = "stager-bench-floor-\(harness.instance)-stack-\(run)"
        let slug = "floor-stack-\(run)"
        try FileManager.default.removeItem(at: config.nginx.sitesDir.appendingPathComponent("\(slug).conf"))
        try await runner.check(Command(argv: config.nginx.reloadCommand))
        try await runner.check(Command("docker", ["rm", "-f", "\(prefix)-app", "\(prefix)-db"]))
        try await runner.check(Command("docker", ["network", "rm", prefix]))
        try await runner.check(Command("docker", ["volume", "rm", "\(prefix)-data"]))
    }
}

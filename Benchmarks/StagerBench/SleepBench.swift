import Foundation
import StagerKit
import StagerTestSupport

/// Sleep and wake: a GET to a sleeping environment answered by its app, against the floor (`docker start`
/// of a stopped container of the same image, a poll of its port, and the answer through nginx with the vhost
/// already pointing at it); then `density` environments under `max_awake`, and the same wake among them.
extension Bench {
    static let sleepyRepo = "acme/sleepy"
    static let sleepAfter = "5s"
    static let maxAwake = 10

    struct Sleep: Encodable {
        var wake: Samples
        var floor: Samples
        var ratio: Double
        var density: Int
        /// From the first `opened` to every environment ready or sleeping, at most `max_awake` awake.
        var settledSeconds: Double
        var awake: Int
        var sleeping: Int
        var rssMegabytes: Double
        /// The engine's memory cgroups: of the running containers, and how many stopped ones still have one.
        var runningContainers: Int
        var runningMegabytes: Double
        var stoppedContainers: Int
        var stoppedWithMemory: Int
        var wakeAmong: Samples
        var floorAmong: Samples
        var ratioAmong: Double
    }

    func sleepAndWake() async throws -> Sleep {
        let floorSlug = "floor-wake"
        let floorPort = try await floorWakeSetUp(slug: floorSlug)
        let number = 900
        let branch = "bench-wake"
        let sha = Fixtures.sha("bench-wake")
        _ = try await stagerOpen(number: number, branch: branch, sha: sha, repo: Self.sleepyRepo)
        var alone = (stager: Samples(), floor: Samples())
        for _ in 1...sizes.wakeRuns {
            alone.stager.add(try await stagerWake(number: number, slug: branch, sha: sha))
            alone.floor.add(try await floorWake(slug: floorSlug, port: floorPort))
        }

        let count = sizes.density
        let numbers = (0..<count).map { 3000 + $0 }
        let start = clock.now
        for number in numbers {
            try await send("opened", number: number, branch: "bench-dense-\(number)", sha: Fixtures.sha("dense-\(number)"), repo: Self.sleepyRepo)
        }
        let settled = try await waitUntil(timeout: .seconds(900)) {
            let counts = try await self.awakeAndAsleep()
            return counts.awake + counts.sleeping == count + 1 && counts.awake <= Self.maxAwake
        }
        let counts = try await awakeAndAsleep()
        guard settled else {
            throw BenchFailure(
                "\(count) environments did not settle (ready or sleeping, ≤ \(Self.maxAwake) awake) within 900 s: \(counts); see \(log.path)"
            )
        }
        let settledSeconds = (clock.now - start).seconds
        let rss = try residentMegabytes(pid: try await serve.processID)
        let containers = try await harness.containers()
        let running = containers.filter(\.running)
        let stopped = containers.filter { !$0.running }
        var runningBytes = 0.0
        for container in running { runningBytes += try await memoryBytes(container.id) ?? 0 }
        var stoppedWithMemory = 0
        for container in stopped where try await memoryBytes(container.id) != nil { stoppedWithMemory += 1 }

        var among = (stager: Samples(), floor: Samples())
        for _ in 1...sizes.wakeRuns {
            among.stager.add(try await stagerWake(number: number, slug: branch, sha: sha))
            among.floor.add(try await floorWake(slug: floorSlug, port: floorPort))
        }
        return Sleep(
            wake: alone.stager,
            floor: alone.floor,
            ratio: alone.stager.median / alone.floor.median,
            density: count,
            settledSeconds: settledSeconds,
            awake: counts.awake,
            sleeping: counts.sleeping,
            rssMegabytes: rss,
            runningContainers: running.count,
            runningMegabytes: runningBytes / 1_048_576,
            stoppedContainers: stopped.count,
            stoppedWithMemory: stoppedWithMemory,
            wakeAmong: among.stager,
            floorAmong: among.floor,
            ratioAmong: among.stager.median / among.floor.median
        )
    }

    /// `stager sleep` (it returns once the environment sleeps), then the time from sending a GET through
    /// nginx to its answer from the app; then waits until the environment is ready again.
    func stagerWake(number: Int, slug: String, sha: String) async throws -> Double {
        let key = "\(Self.sleepyRepo)#\(number)"
        let slept = try await runner.run(
            Command(stagerBinary, ["sleep", key, "--config", harness.configFile.path], environment: harness.environment)
        )
        guard slept.succeeded, try await status(number, repo: Self.sleepyRepo) == "sleeping" else {
            throw BenchFailure("stager sleep \(key) did not put it to sleep: \(slept.message)")
        }
        let start = clock.now
        let answer = try await harness.requestThroughNginx(slug: slug)
        let elapsed = (clock.now - start).seconds
        guard answer.status == 200, answer.body.contains("sha=\(sha)") else {
            throw BenchFailure("the wake of \(key) answered \(answer.status): \(answer.body.prefix(200))")
        }
        _ = try await waitUntil(timeout: .seconds(30)) { try await self.status(number, repo: Self.sleepyRepo) == "ready" }
        return elapsed
    }

    /// The floor's container, published on a fixed port so that the vhost points at it across a stop and a
    /// start; routed and served once.
    func floorWakeSetUp(slug: String) async throws -> Int {
        let port = try E2EHarness.freePort()
        let name = "stager-bench-floor-\(harness.instance)-wake"
        let sha = Fixtures.sha(slug)
        try await runner.check(
            Command(
                "docker",
                [
                    "run", "-d", "--init", "--name", name, "--publish", "127.0.0.1:\(port):8080", "--label", "stager.bench=\(harness.instance)",
                    "--env", "STAGER_SHA=\(sha)", "--", E2EHarness.image,
                    "/bin/busybox", "sh", "-c", "echo \"sha=$STAGER_SHA\" > /www/index.html && exec /bin/busybox httpd -f -p 8080 -h /www",
                ]
            )
        )
        let vhost =
            "server {\n  listen \(config.nginx.listen);\n  server_name \(slug).\(config.preview.domain);\n  location / { proxy_pass http://127.0.0.1:\(port); }\n}\n"
        try vhost.write(to: config.nginx.sitesDir.appendingPathComponent("\(slug).conf"), atomically: true, encoding: .utf8)
        try await runner.check(Command(argv: config.nginx.reloadCommand))
        guard try await waitServed(slug: slug, sha: sha) else { throw BenchFailure("the floor's \(slug) was not served") }
        return port
    }

    /// Stopped first (not timed); then `docker start`, its port polled until it answers, and a GET through nginx.
    func floorWake(slug: String, port: Int) async throws -> Double {
        let name = "stager-bench-floor-\(harness.instance)-wake"
        try await runner.check(Command("docker", ["stop", name]))
        let start = clock.now
        try await runner.check(Command("docker", ["start", name]))
        _ = try await waitUntil(timeout: .seconds(30), fast: true) { [probe] in
            (try? await probe.get(host: "127.0.0.1", port: port, path: "/"))?.status == 200
        }
        let answer = try await harness.requestThroughNginx(slug: slug)
        guard answer.status == 200 else { throw BenchFailure("the floor's wake answered \(answer.status)") }
        return (clock.now - start).seconds
    }

    /// How many of the sleepy repository's environments are ready, and how many sleep.
    func awakeAndAsleep() async throws -> (awake: Int, sleeping: Int) {
        let body = try await get("/api/environments?repo=\(Self.sleepyRepo)")
        let statuses = try JSONDecoder().decode([EnvironmentView].self, from: Data(body.utf8)).map(\.status)
        return (statuses.filter { $0 == "ready" }.count, statuses.filter { $0 == "sleeping" }.count)
    }

    /// The container's memory cgroup usage; nil when it has none (a stopped container).
    func memoryBytes(_ id: String) async throws -> Double? {
        let full = try await runner.check(Command("docker", ["inspect", "--format", "{{.Id}}", id])).standardOutput
            .trimmingCharacters(in: .whitespacesAndNewlines)
        let files = [
            "/sys/fs/cgroup/memory/docker/\(full)/memory.usage_in_bytes", "/sys/fs/cgroup/system.slice/docker-\(full).scope/memory.current",
            "/sys/fs/cgroup/docker/\(full)/memory.current",
        ]
        for file in files {
            // the next layout
            if let text = try? String(contentsOfFile: file, encoding: .utf8) { return Double(text.trimmingCharacters(in: .whitespacesAndNewlines)) }
        }
        return nil
    }
}

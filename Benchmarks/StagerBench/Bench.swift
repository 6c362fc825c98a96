import Foundation
import StagerKit
import StagerTestSupport

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// One benchmark run: `stager serve` (the built binary) as its own process, on the real engine and a
/// private nginx, with the GitHub stand-in; and the floor — the same work done directly — in the same run.
final class Bench: @unchecked Sendable {
    struct Sizes {
        var openRuns: Int
        var redeployRate: Int
        var ackRate: Int
        var ackSeconds: Int
        var scale: Int
        /// Opens and pushes of the stack scenario.
        var stackRuns: Int
        /// Wakes measured against the floor, alone and among `density` environments.
        var wakeRuns: Int
        var density: Int
        /// GETs through the shared host, and as many to the environment's own URL.
        var sharedRequests: Int
    }

    let sizes: Sizes
    let harness: E2EHarness
    let serve: StagerProcess
    let servePort: Int
    let config: StagerConfig
    let log: URL
    let stagerBinary: String
    let runner = SubprocessRunner()
    let probe = HTTPProbe()
    private let api = URLSession(configuration: .ephemeral)
    let clock = ContinuousClock()
    private var floorContainers: [String] = []
    /// The docker volume the stack scenario's service is seeded from.
    let stackSeed: String

    /// Where `finish` keeps serve's log: `.build/bench-serve.log`, or `bench-sleep-serve.log` for the sleep scenario's.
    private let logName: String

    /// `sleepy`: a serve of its own for the sleep scenario, whose `max_awake` would put the others' environments to sleep.
    /// `swarm`: the manager's socket of the swarm lab, for `runtime: swarm` (`scripts/bench --swarm`).
    init(sizes: Sizes, stagerBinary: String, sleepy: Bool = false, swarm manager: String? = nil) async throws {
        self.sizes = sizes
        self.stagerBinary = stagerBinary
        logName = manager != nil ? "bench-swarm-serve.log" : sleepy ? "bench-sleep-serve.log" : "bench-serve.log"
        stackSeed = "stager-bench-seed-\(UUID().uuidString.prefix(8).lowercased())"
        try await Self.makeSeed(stackSeed, runner: runner)
        if let manager {
            harness = try await E2EHarness(name: "bench-swarm", extraConfig: Self.swarmConfig(manager: manager))
        } else if sleepy {
            harness = try await E2EHarness(
                name: "bench-sleep",
                extraRepos: E2EHarness.servingRepo(Self.sleepyRepo, "sleep_after: \"\(Self.sleepAfter)\""),
                extraLimits: "  max_environments: \(sizes.density + 50)\n  concurrent_deploys: 4\n  max_awake: \(Self.maxAwake)"
            )
        } else {
            // acme/gated: every PR waits for a writer's label, so its deliveries cost the controller no container.
            harness = try await E2EHarness(
                name: "bench",
                extraRepos: E2EHarness.servingRepo("acme/gated", "require_label: true")
                    + Self.sharedRepoConfig + Self.stackRepoConfig(seed: stackSeed),
                extraLimits: "  max_environments: \(sizes.scale + 50)\n  concurrent_deploys: 4",
                extraConfig: "docker:\n  seed_image: \"\(E2EHarness.image)\""
            )
        }
        servePort = try E2EHarness.freePort()
        config = try harness.loadConfig(port: servePort)
        log = harness.dir.appendingPathComponent("serve.log")
        serve = try StagerProcess(binary: stagerBinary, config: harness.configFile, environment: harness.environment, log: log)
        let started = try await waitUntil(timeout: .seconds(30)) { [harness, servePort] in (try? await harness.probeHealth(port: servePort)) == true }
        guard started else { throw BenchFailure("stager serve did not answer /healthz; see \(log.path)") }
    }

    func finish() async {
        try? await serve.terminate()
        // Kept for reading after the run; the harness's folder goes.
        let kept = Fixtures.repoRoot.appendingPathComponent(".build/\(logName)")
        try? FileManager.default.removeItem(at: kept)
        try? FileManager.default.copyItem(at: log, to: kept)
        for name in floorContainers { _ = try? await runner.run(Command("docker", ["rm", "-f", name])) }
        await harness.shutdown()
        // What a failed run of the floor left, then the seed.
        let leftovers = ["--filter", "label=stager.bench=\(harness.instance)"]
        let containers = (try? await runner.run(Command("docker", ["ps", "-aq"] + leftovers)))?.standardOutput ?? ""
        for id in containers.split(separator: "\n") { _ = try? await runner.run(Command("docker", ["rm", "-f", String(id)])) }
        for kind in ["network", "volume"] {
            let names = (try? await runner.run(Command("docker", [kind, "ls", "-q"] + leftovers)))?.standardOutput ?? ""
            for name in names.split(separator: "\n") { _ = try? await runner.run(Command("docker", [kind, "rm", String(name)])) }
        }
        _ = try? await runner.run(Command("docker", ["volume", "rm", stackSeed]))
    }

    // MARK: Scenarios

    struct OpenClose: Encodable {
        var stager: Samples
        var floor: Samples
        var ratio: Double
        var reloads: Int
    }

    /// open→live and close→gone, Stager and floor runs interleaved so the machine's noise falls on both.
    func openAndClose() async throws -> (open: OpenClose, close: OpenClose) {
        var open = (stager: Samples(), floor: Samples())
        var close = (stager: Samples(), floor: Samples())
        let reloadsBeforeOpen = try await reloads()
        for run in 1...sizes.openRuns {
            open.stager.add(try await stagerOpen(number: 100 + run, branch: "bench-open-\(run)"))
            open.floor.add(try await floorOpen(run))
        }
        let reloadsAfterOpen = try await reloads()
        for run in 1...sizes.openRuns {
            close.stager.add(try await stagerClose(number: 100 + run, branch: "bench-open-\(run)"))
            close.floor.add(try await floorClose(run))
        }
        let reloadsAfterClose = try await reloads()
        return (
            OpenClose(
                stager: open.stager,
                floor: open.floor,
                ratio: open.stager.median / open.floor.median,
                reloads: reloadsAfterOpen - reloadsBeforeOpen
            ),
            OpenClose(
                stager: close.stager,
                floor: close.floor,
                ratio: close.stager.median / close.floor.median,
                reloads: reloadsAfterClose - reloadsAfterOpen
            )
        )
    }

    struct Redeploy: Encodable {
        var requests: Int
        var failed: Int
        var rate: Int
        var newShaServedAfter: Double
        var reloads: Int
        /// What the failed requests got, for a reader to judge.
        var failures: [String]
    }

    /// A synchronize while a bounded load hits the URL.
    func redeploy() async throws -> Redeploy {
        let number = 300
        let branch = "bench-redeploy"
        let sha1 = Fixtures.sha("redeploy-1")
        let sha2 = Fixtures.sha("redeploy-2")
        _ = try await stagerOpen(number: number, branch: branch, sha: sha1)
        let before = try await reloads()
        let stop = Load.Switch()
        let harness = self.harness
        let loadStart = clock.now
        let load = Task {
            await Load.run(perSecond: sizes.redeployRate, limit: .seconds(60), until: stop) { _ in try await harness.requestThroughNginx(slug: branch)
            }
        }
        try await Task.sleep(for: .seconds(1))
        let pushedAt = clock.now - loadStart
        try await send("synchronize", number: number, branch: branch, sha: sha2, updatedAt: "2026-11-24T10:00:00Z")
        let switched = try await waitUntil(timeout: .seconds(60)) {
            let shas = try await self.containerShas(number: number)
            return shas == [sha2]
        }
        try await Task.sleep(for: .milliseconds(500))
        await stop.stop()
        let outcomes = await load.value
        guard switched else { throw BenchFailure("the redeploy did not finish within 60 s; see \(log.path)") }
        let firstNew = outcomes.first { $0.body.contains("sha=\(sha2)") }?.sentAt
        let result = Redeploy(
            requests: outcomes.count,
            failed: outcomes.filter { !$0.ok }.count,
            rate: sizes.redeployRate,
            newShaServedAfter: firstNew.map { ($0 - pushedAt).seconds } ?? .nan,
            reloads: try await reloads() - before,
            failures: outcomes.filter { !$0.ok }.prefix(10).map(Self.describe)
        )
        _ = try await stagerClose(number: number, branch: branch)
        return result
    }

    private static func describe(_ failure: Load.Outcome) -> String {
        let answer = failure.status.map { "HTTP \($0)" } ?? "no answer (\(failure.error ?? "?"))"
        return String(format: "at %.2f s: ", failure.sentAt.seconds) + answer + " " + failure.body.prefix(60)
    }

    struct Ack: Encodable {
        var load: String
        var rate: Int
        var seconds: Int
        var sent: Int
        var non2xx: Int
        var p50Milliseconds: Double
        var p99Milliseconds: Double
        var maxMilliseconds: Double
        var stored: Int
        /// The server's own p99 (`stager_webhook_ack_seconds`, as the upper bound of its bucket): what the
        /// handler took, without the client's and the network's share.
        var serverP99Milliseconds: Double
    }

    /// The `stager_webhook_ack_seconds` buckets now (upper bound → cumulative count).
    func ackBuckets() async throws -> [(bound: Double, count: Double)] {
        try PrometheusText(try await get("/metrics")).samples
            .filter { $0.name == "stager_webhook_ack_seconds_bucket" }
            .map { (Double($0.labels["le"] ?? "") ?? .infinity, $0.value) }
            .sorted { $0.bound < $1.bound }
    }

    /// Signed deliveries with unique ids at a fixed rate, each acknowledged and durably stored. `storm`: pushes
    /// to 20 PRs that deploy (`opened` first, then `synchronize`s with newer `updated_at`), so the controller
    /// runs docker while the webhook answers; else 200 PRs of a repository gated by `require_label`, so the
    /// load is the webhook path and the controller's bookkeeping only.
    func ack(storm: Bool) async throws -> Ack {
        let total = sizes.ackRate * sizes.ackSeconds
        let prs = storm ? 20 : 200
        let repo = storm ? "acme/web" : "acme/gated"
        let first = storm ? 400 : 2000
        let stamp = ISO8601DateFormatter()
        let base = Date(timeIntervalSince1970: 1_795_000_000)
        var deliveries: [(id: String, body: Data)] = []
        for index in 0..<total {
            let pr = index % prs
            let body = try Fixtures.pullRequest(
                action: index < prs ? "opened" : "synchronize",
                repo: repo,
                number: first + pr,
                branch: "bench-ack-\(pr)",
                sha: Fixtures.sha("ack-\(index)"),
                updatedAt: stamp.string(from: base.addingTimeInterval(Double(index)))
            )
            deliveries.append(("bench-ack-\(UUID().uuidString)", body))
        }
        let store = try Store(path: config.dataDir.appendingPathComponent("stager.sqlite"))
        let storedBefore = try store.deliveryCount()
        let bucketsBefore = try await ackBuckets()
        let (harness, port) = (harness, servePort)
        let start = clock.now
        let interval = Duration.seconds(1) / sizes.ackRate
        let clock = self.clock
        let answers: [(Int, Duration)] = await withTaskGroup(of: (Int, Duration).self) { group in
            for (index, delivery) in deliveries.enumerated() {
                let due = start + interval * index
                if due > clock.now { try? await Task.sleep(until: due, clock: clock) }
                group.addTask {
                    let began = clock.now
                    let status = (try? await harness.post(delivery.body, event: "pull_request", delivery: delivery.id, port: port))?.0 ?? 0
                    return (status, clock.now - began)
                }
            }
            return await group.reduce(into: []) { $0.append($1) }
        }
        let latencies = Samples(seconds: answers.map(\.1.seconds))
        let stored = try store.deliveryCount() - storedBefore
        let bucketsAfter = try await ackBuckets()
        let counts = bucketsAfter.map { after in (after.bound, after.count - (bucketsBefore.first { $0.bound == after.bound }?.count ?? 0)) }
        let serverP99 = counts.first { $0.1 >= 0.99 * (counts.last?.1 ?? 0) }?.0 ?? .infinity
        // Close them all and let the controller finish, so the next scenario starts from a quiet machine.
        for pr in 0..<prs {
            _ = try await harness.send(
                "closed",
                number: first + pr,
                branch: "bench-ack-\(pr)",
                sha: Fixtures.sha("ack-closed"),
                updatedAt: "2027-12-01T00:00:00Z",
                repo: repo,
                port: servePort
            )
        }
        _ = try await waitUntil(timeout: .seconds(180)) {
            try await self.containerShas(number: nil).isEmpty ? try await self.get("/api/environments?repo=\(repo)") == "[]" : false
        }
        return Ack(
            load: storm ? "pushes to 20 deploying PRs" : "200 PRs gated by require_label",
            rate: sizes.ackRate,
            seconds: sizes.ackSeconds,
            sent: total,
            non2xx: answers.filter { !(200..<300).contains($0.0) }.count,
            p50Milliseconds: latencies.median * 1000,
            p99Milliseconds: latencies.p99 * 1000,
            maxMilliseconds: latencies.max * 1000,
            stored: stored,
            serverP99Milliseconds: serverP99 * 1000
        )
    }

    struct Scale: Encodable {
        var environments: Int
        var openAllSeconds: Double
        var reloadsOpening: Int
        var nextOpenToLive: Double
        var firstOpenToLive: Double
        var nextRatio: Double
        var gcSeconds: Double
        var gcOutput: String
        var rssMegabytes: Double
        var closeAllSeconds: Double
        var reloadsClosing: Int
    }

    /// N environments, then one more, gc with nothing to remove, memory, and closing them all.
    func scale(firstOpenToLive: Double) async throws -> Scale {
        let count = sizes.scale
        let numbers = (0..<count).map { 1000 + $0 }
        for number in numbers + (0..<3).map({ 1000 + count + $0 }) {
            await harness.github.setPull(number: number, branch: "bench-scale-\(number)", sha: Fixtures.sha("scale-\(number)"))
        }
        let before = try await reloads()
        let start = clock.now
        for number in numbers {
            try await send("opened", number: number, branch: "bench-scale-\(number)", sha: Fixtures.sha("scale-\(number)"))
        }
        let allReady = try await waitUntil(timeout: .seconds(600)) { try await self.readyCount() >= count }
        guard allReady else { throw BenchFailure("\(count) environments were not ready within 600 s; see \(log.path)") }
        let openAll = (clock.now - start).seconds
        let reloadsOpening = try await reloads() - before

        // The next three, one at a time: one sample alone is at the mercy of the machine's noise.
        var beyond = Samples()
        for extra in 0..<3 {
            let number = 1000 + count + extra
            beyond.add(try await stagerOpen(number: number, branch: "bench-scale-\(number)", sha: Fixtures.sha("scale-\(number)")))
        }
        let next = beyond.median

        let gcStart = clock.now
        let gc = try await runner.run(Command(stagerBinary, ["gc", "--config", harness.configFile.path], environment: harness.environment))
        let gcSeconds = (clock.now - gcStart).seconds
        guard gc.succeeded else { throw BenchFailure("stager gc failed: \(gc.message)") }
        let rss = try residentMegabytes(pid: try await serve.processID)

        let beforeClose = try await reloads()
        let closeStart = clock.now
        // A burst, as when a release merges many PRs: GitHub sends the closes without waiting for each answer.
        try await withThrowingTaskGroup(of: Void.self) { group in
            for (index, number) in (numbers + (0..<3).map({ 1000 + count + $0 })).enumerated() {
                if index >= 16 { try await group.next() }
                group.addTask {
                    try await self.send(
                        "closed",
                        number: number,
                        branch: "bench-scale-\(number)",
                        sha: Fixtures.sha("scale-\(number)"),
                        updatedAt: "2026-11-24T11:00:00Z"
                    )
                }
            }
            try await group.waitForAll()
        }
        let allGone = try await waitUntil(timeout: .seconds(600)) {
            self.harness.vhosts().isEmpty ? try await self.containerShas(number: nil).isEmpty : false
        }
        guard allGone else { throw BenchFailure("the environments were not all gone within 600 s; see \(log.path)") }
        return Scale(
            environments: count,
            openAllSeconds: openAll,
            reloadsOpening: reloadsOpening,
            nextOpenToLive: next,
            firstOpenToLive: firstOpenToLive,
            nextRatio: next / firstOpenToLive,
            gcSeconds: gcSeconds,
            gcOutput: gc.standardOutput.split(separator: "\n").last.map(String.init) ?? "",
            rssMegabytes: rss,
            closeAllSeconds: (clock.now - closeStart).seconds,
            reloadsClosing: try await reloads() - beforeClose
        )
    }

    // MARK: Stager's side

    /// From sending `opened` to the first 200 through nginx on the announced URL with this sha's page;
    /// then waits for the environment to settle (its comment written) before the next run.
    func stagerOpen(number: Int, branch: String, sha: String? = nil, repo: String = "acme/web") async throws -> Double {
        let sha = sha ?? Fixtures.sha(branch)
        let start = clock.now
        try await send("opened", number: number, branch: branch, sha: sha, repo: repo)
        guard try await waitServed(slug: branch, sha: sha) else { throw BenchFailure("\(repo)#\(number) was not live within 60 s; see \(log.path)") }
        let elapsed = (clock.now - start).seconds
        _ = try await waitUntil(timeout: .seconds(30)) { try await self.status(number, repo: repo) == "ready" }
        return elapsed
    }

    /// From sending `closed` to the URL no longer served and the container gone.
    func stagerClose(number: Int, branch: String, repo: String = "acme/web") async throws -> Double {
        let start = clock.now
        try await send("closed", number: number, branch: branch, sha: Fixtures.sha(branch), updatedAt: "2026-11-24T10:30:00Z", repo: repo)
        guard try await waitUntil(timeout: .seconds(60), fast: true, { await self.harness.throughNginx(slug: branch)?.status == 404 }),
            try await waitUntil(timeout: .seconds(60), fast: true, { try await self.containerShas(number: number).isEmpty })
        else {
            throw BenchFailure("#\(number) was not gone within 60 s; see \(log.path)")
        }
        let elapsed = (clock.now - start).seconds
        _ = try await waitUntil(timeout: .seconds(30)) { try await self.status(number, repo: repo) == "removed" }
        return elapsed
    }

    // MARK: The floor: the same work, directly

    private var nginxListen: String { config.nginx.listen }

    /// `docker run -d` of the same image and command, poll its port until 200, write a vhost, reload nginx,
    /// poll through nginx until 200 with this sha's page.
    func floorOpen(_ run: Int) async throws -> Double {
        let name = "stager-bench-floor-\(harness.instance)-\(run)"
        let sha = Fixtures.sha("floor-\(run)")
        let slug = "floor-\(run)"
        floorContainers.append(name)
        let start = clock.now
        let id = try await runner.check(
            Command(
                "docker",
                [
                    "run", "-d", "--name", name, "--publish", "127.0.0.1::8080", "--label", "stager.bench=\(harness.instance)",
                    "--env", "STAGER_SHA=\(sha)", "--env", "STAGER_BRANCH=\(slug)", "--", E2EHarness.image,
                    "/bin/busybox", "sh", "-c",
                    "echo \"sha=$STAGER_SHA branch=$STAGER_BRANCH\" > /www/index.html && exec /bin/busybox httpd -f -p 8080 -h /www",
                ]
            )
        ).standardOutput.trimmingCharacters(in: .whitespacesAndNewlines)
        try await routeByHand(container: id, slug: slug, sha: sha)
        return (clock.now - start).seconds
    }

    /// The floor's second half: the container's port polled until 200, a vhost written, nginx reloaded and
    /// polled until it serves this sha.
    func routeByHand(container id: String, slug: String, sha: String) async throws {
        let portText = try await runner.check(Command("docker", ["port", id, "8080/tcp"])).standardOutput
        guard let port = portText.split(separator: "\n").first.flatMap({ $0.split(separator: ":").last }).flatMap({ Int($0) }) else {
            throw BenchFailure("docker port said \(portText)")
        }
        _ = try await waitUntil(timeout: .seconds(30), fast: true) { [probe] in
            (try? await probe.get(host: "127.0.0.1", port: port, path: "/"))?.status == 200
        }
        let vhost =
            "server {\n  listen \(nginxListen);\n  server_name \(slug).\(config.preview.domain);\n  location / { proxy_pass http://127.0.0.1:\(port); }\n}\n"
        try vhost.write(to: config.nginx.sitesDir.appendingPathComponent("\(slug).conf"), atomically: true, encoding: .utf8)
        try await runner.check(Command(argv: config.nginx.reloadCommand))
        guard try await waitServed(slug: slug, sha: sha) else { throw BenchFailure("the floor's \(slug) was not served") }
    }

    /// Remove the vhost, reload, poll through nginx until it is gone, remove the container.
    func floorClose(_ run: Int) async throws -> Double {
        let name = "stager-bench-floor-\(harness.instance)-\(run)"
        let slug = "floor-\(run)"
        let start = clock.now
        try FileManager.default.removeItem(at: config.nginx.sitesDir.appendingPathComponent("\(slug).conf"))
        try await runner.check(Command(argv: config.nginx.reloadCommand))
        _ = try await waitUntil(timeout: .seconds(30), fast: true) { await self.harness.throughNginx(slug: slug)?.status == 404 }
        try await runner.check(Command("docker", ["rm", "-f", name]))
        floorContainers.removeAll { $0 == name }
        return (clock.now - start).seconds
    }

    // MARK: Helpers

    func send(
        _ action: String,
        number: Int,
        branch: String,
        sha: String,
        updatedAt: String = "2026-11-24T09:00:00Z",
        repo: String = "acme/web"
    ) async throws {
        let (status, body) = try await harness.send(
            action,
            number: number,
            branch: branch,
            sha: sha,
            updatedAt: updatedAt,
            repo: repo,
            port: servePort
        )
        guard (200..<300).contains(status) else { throw BenchFailure("webhook answered \(status): \(body)") }
    }

    func waitServed(slug: String, sha: String) async throws -> Bool {
        try await waitUntil(timeout: .seconds(60), fast: true) {
            guard let answer = await self.harness.throughNginx(slug: slug) else { return false }
            return answer.status == 200 && answer.body.contains("sha=\(sha)")
        }
    }

    /// Polls every 5 ms when `fast` (what is being timed), else every 50 ms.
    func waitUntil(timeout: Duration, fast: Bool = false, _ condition: @Sendable () async throws -> Bool) async throws -> Bool {
        let every: Duration = .milliseconds(fast ? 5 : 50)
        return try await Poller(first: every, longest: every).until(timeout: timeout) { (try? await condition()) == true }
    }

    func url(_ path: String) throws -> URL {
        guard let url = URL(string: "http://127.0.0.1:\(servePort)\(path)") else { throw BenchFailure("bad URL \(path)") }
        return url
    }

    /// Stager's API, read whole (the probe keeps only the first 64 KiB of a body).
    func get(_ path: String) async throws -> String {
        let (data, _) = try await api.data(from: try url(path))
        return String(decoding: data, as: UTF8.self)
    }

    func reloads() async throws -> Int {
        Int(try PrometheusText(try await get("/metrics")).value("stager_nginx_reloads_total") ?? 0)
    }

    func status(_ number: Int, repo: String = "acme/web") async throws -> String? {
        let body = try await get("/api/environments/\(repo)/\(number)")
        return try? JSONDecoder().decode(EnvironmentDetail.self, from: Data(body.utf8)).environment.status
    }

    func readyCount() async throws -> Int {
        let body = try await get("/api/environments?status=ready")
        return try JSONDecoder().decode([EnvironmentView].self, from: Data(body.utf8)).count
    }

    /// The shas of this instance's containers, of one PR or all.
    func containerShas(number: Int?) async throws -> [String] {
        var filters = ["--filter", "label=stager.instance=\(harness.instance)"]
        if let number { filters += ["--filter", "label=stager.pr=\(number)"] }
        let output = try await runner.check(Command("docker", ["ps", "-a"] + filters + ["--format", "{{.Label \"stager.sha\"}}"])).standardOutput
        return output.split(separator: "\n").map(String.init)
    }

    func residentMegabytes(pid: Int) throws -> Double {
        let status = try String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)
        guard let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }),
            let kilobytes = line.split(separator: " ").dropFirst().first.flatMap({ Double($0) })
        else {
            throw BenchFailure("no VmRSS for pid \(pid)")
        }
        return kilobytes / 1024
    }
}

struct BenchFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

import AsyncHTTPClient
import Foundation
import Hummingbird
import Logging
import StagerKit

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// A whole Stager on real parts: the real Docker engine, a private nginx on a free loopback port, SQLite
/// in a temporary folder, the HTTP server on a real socket, and the GitHub stand-in. Everything it creates
/// carries its own instance label and is removed by `shutdown()`.
public final class E2EHarness: @unchecked Sendable {
    public static let image = "stager/busybox:local"
    /// Writes the sha into the page, then serves it: each deploy's content tells which sha answers.
    public static let servingCommand =
        #"["/bin/busybox", "sh", "-c", "echo \"sha=$STAGER_SHA branch=$STAGER_BRANCH\" > /www/index.html && exec /bin/busybox httpd -f -p 8080 -h /www"]"#

    /// A repository block for `extraRepos` running the serving command, with `extra` lines (YAML, indented
    /// as under the repository) appended.
    public static func servingRepo(_ name: String, _ extra: String = "") -> String {
        let lines =
            ["  \(name):", "    image: \"\(image)\"", "    command: \(servingCommand)", "    port: 8080"]
            + extra.split(separator: "\n").map { "    " + $0 }
        return lines.joined(separator: "\n") + "\n"
    }

    /// Whether the engine and nginx are here (CI's scripts/setup makes sure they are).
    public static var available: Bool {
        FileManager.default.isExecutableFile(atPath: "/usr/sbin/nginx")
            && (FileManager.default.fileExists(atPath: "/var/run/docker.sock") || FileManager.default.fileExists(atPath: "/run/docker.sock"))
    }

    public let dir: URL
    public let instance: String
    public let nginxPort: Int
    public let github: GitHubFake
    public let configYAML: String
    public let configFile: URL
    public let token = "ghp_e2e_token"
    public private(set) var app: StagerApp?
    public private(set) var port = 0
    private var servePort: Int?
    private var server: ServiceRunner?
    private var githubServer: ServiceRunner?
    private let runner = SubprocessRunner()
    private let sender = WebhookSender()
    /// Requests through nginx as a browser makes them: a request held while a preview wakes may wait as long
    /// as `sleep.wake_timeout` (60 s), and a machine busy with every suite at once takes 6–10 s to wake one.
    private let browser = WebhookSender(timeout: .seconds(70))
    /// A timeout that tells a lost request from a slow one on a busy machine: with every suite at once, a page
    /// took more than the probe's default 2 s now and then.
    private let probe = HTTPProbe(timeout: .seconds(10))

    /// `extraLimits`: lines under `limits:`; `extraConfig`: more top-level keys (`templates_dir`, `docker`…).
    /// `extraGitHub`: lines under `github:` (`deployments: true`…).
    public init(
        name: String,
        extraRepos: String = "",
        reconcileInterval: String = "60s",
        extraLimits: String = "",
        extraConfig: String = "",
        extraServer: String = "",
        extraGitHub: String = "",
        accessLog: Bool = false
    ) async throws {
        dir = try TestConfig.temporaryDirectory("e2e-\(name)")
        instance = "e2e-\(UUID().uuidString.prefix(8).lowercased())"
        github = GitHubFake(token: token)
        let (githubURL, githubTask) = try await github.start()
        githubServer = githubTask
        let nginxDir = dir.appendingPathComponent("nginx").path
        let script = Fixtures.repoRoot.appendingPathComponent("scripts/private-nginx").path
        // A free port can be taken by another suite's server between the look and nginx's bind: another one then.
        var port = try Self.freePort()
        for attempt in 1...5 {
            let started = try await runner.run(Command(script, ["start", nginxDir, "127.0.0.1:\(port)"] + (accessLog ? ["--access-log"] : [])))
            if started.succeeded { break }
            guard attempt < 5, started.message.contains("Address already in use") else {
                throw CommandError.failed(Command(script, ["start", nginxDir, "127.0.0.1:\(port)"]), started)
            }
            port = try Self.freePort()
        }
        nginxPort = port
        let nginxArgs = try await runner.check(Command(script, ["args", nginxDir])).standardOutput
            .split(separator: "\n").map { "\"\($0)\"" }.joined(separator: ", ")
        configYAML = """
            server:
              listen: "127.0.0.1:0"
            \(extraServer)
            data_dir: data
            instance: "\(instance)"
            reconcile_interval: "\(reconcileInterval)"
            github:
              api_url: "\(githubURL.absoluteString)"
              token_env: E2E_GITHUB_TOKEN
              max_attempts: 5
            \(extraGitHub)
            preview:
              domain: "preview.localhost"
            nginx:
              sites_dir: "\(nginxDir)/sites"
              listen: "127.0.0.1:\(nginxPort)"
              test_command: [\(nginxArgs), "-t", "-q"]
              reload_command: [\(nginxArgs), "-s", "reload"]
              confirm_timeout: "10s"
              activity_listen: "127.0.0.1:\(try Self.freePort())"
              activity_file: "\(nginxDir)/stager-activity.conf"
            limits:
              memory: "64m"
              cpus: "0.5"
              pids: 64
            \(extraLimits)
            \(extraConfig)
            repos:
              acme/web:
                image: "\(Self.image)"
                command: \(Self.servingCommand)
                port: 8080
                health_timeout: "20s"
            \(extraRepos)
            """
        configFile = dir.appendingPathComponent("stager.yml")
        try configYAML.write(to: configFile, atomically: true, encoding: .utf8)
    }

    /// Runs `body` with a fresh harness and always cleans up after it, whether it passed, failed or threw.
    public static func run(
        name: String,
        extraRepos: String = "",
        reconcileInterval: String = "60s",
        extraLimits: String = "",
        extraConfig: String = "",
        extraServer: String = "",
        extraGitHub: String = "",
        accessLog: Bool = false,
        start: Bool = true,
        _ body: (E2EHarness) async throws -> Void
    ) async throws {
        let harness = try await E2EHarness(
            name: name,
            extraRepos: extraRepos,
            reconcileInterval: reconcileInterval,
            extraLimits: extraLimits,
            extraConfig: extraConfig,
            extraServer: extraServer,
            extraGitHub: extraGitHub,
            accessLog: accessLog
        )
        do {
            if start { try await harness.start() }
            try await body(harness)
        } catch {
            await harness.shutdown()
            throw error
        }
        await harness.shutdown()
    }

    /// Secrets the end-to-end runs use; scripts/test checks that none of them reaches a log line.
    public static let adminToken = "e2e-admin-token-5c1f"
    public static let previewUsers = "pm:e2e-preview-pass-77a2"
    public static let ownSecret = "e2e-own-repo-secret-91b0"

    public static let slackSecret = "e2e-slack-signing-3d7e"

    /// Variables a test adds before it starts serve (a stand-in's URL known only once it runs).
    public var extraEnvironment: [String: String] = [:]

    public var environment: [String: String] {
        [
            "STAGER_WEBHOOK_SECRET": TestConfig.secret, "E2E_GITHUB_TOKEN": token, "E2E_ADMIN_TOKEN": Self.adminToken,
            "E2E_PREVIEW_USERS": Self.previewUsers, "E2E_OWN_SECRET": Self.ownSecret, "E2E_SLACK_SECRET": Self.slackSecret,
        ]
        .merging(extraEnvironment) { $1 }
    }

    public func loadConfig(port: Int = 0) throws -> StagerConfig {
        let yaml = configYAML.replacingOccurrences(of: "127.0.0.1:0\"", with: "127.0.0.1:\(port)\"")
        try yaml.write(to: configFile, atomically: true, encoding: .utf8)
        return try ConfigLoader(environment: environment).load(file: configFile)
    }

    /// Starts Stager in this process on a free port, the same one when it starts again: a sleeping
    /// environment's vhost names serve's address.
    public func start() async throws {
        let chosen = try servePort ?? Self.freePort()
        servePort = chosen
        let app = try StagerApp(config: loadConfig(port: chosen), logger: Logger(label: "stager-e2e"))
        let box = PortBox()
        let application = try app.buildApplication { port in await box.set(port) }
        server = ServiceRunner(application, logger: Logger(label: "stager-e2e"))
        port = try await box.wait()
        self.app = app
    }

    /// Stops the in-process Stager (as a graceful shutdown would).
    public func stop() async {
        await server?.stop()
        server = nil
    }

    public func shutdown() async {
        await stop()
        await githubServer?.stop()
        if let containers = try? await containers() {
            for container in containers { _ = try? await runner.run(Command("docker", ["rm", "-f", container.id])) }
        }
        // Then the networks and volumes of services (none unless a test configured some).
        for kind in ["network", "volume"] {
            let listed =
                (try? await runner.run(Command("docker", [kind, "ls", "-q", "--filter", "label=stager.instance=\(instance)"])))?.standardOutput ?? ""
            for name in listed.split(separator: "\n") { _ = try? await runner.run(Command("docker", [kind, "rm", String(name)])) }
        }
        _ = try? await runner.run(
            Command(Fixtures.repoRoot.appendingPathComponent("scripts/private-nginx").path, ["stop", dir.appendingPathComponent("nginx").path])
        )
        try? FileManager.default.removeItem(at: dir)
        // The builds' cgroup (BuildCgroup), empty once its builds ended: rmdir, as the kernel wants it.
        for path in ["/sys/fs/cgroup/pids/stager-\(instance)-builds", "/sys/fs/cgroup/stager-\(instance)-builds"] { rmdir(path) }
    }

    // MARK: Acting

    @discardableResult
    public func send(
        _ action: String,
        number: Int,
        branch: String,
        sha: String,
        updatedAt: String = "2026-11-24T09:00:00Z",
        repo: String = "acme/web",
        delivery: String = UUID().uuidString,
        port: Int? = nil,
        headRepo: String? = nil,
        label: String? = nil,
        sender: String? = nil,
        title: String? = nil,
        author: String? = nil
    ) async throws -> (Int, String) {
        let body = try Fixtures.pullRequest(
            action: action,
            repo: repo,
            number: number,
            branch: branch,
            sha: sha,
            updatedAt: updatedAt,
            headRepo: headRepo,
            label: label,
            sender: sender,
            title: title,
            author: author
        )
        // GitHub shows what the delivery says: a labeled PR carries the label at that head (Stager reads it back).
        if action == "labeled", let label { await github.setPull(repo: repo, number: number, branch: branch, sha: sha, labels: [label]) }
        return try await post(body, event: "pull_request", delivery: delivery, port: port)
    }

    /// A `push` of `branch` to `after` (or its deletion), as GitHub sends it.
    @discardableResult
    public func push(
        _ branch: String,
        after: String,
        deleted: Bool = false,
        repo: String = "acme/web",
        delivery: String = UUID().uuidString
    ) async throws -> (Int, String) {
        try await post(try Fixtures.push(repo: repo, ref: "refs/heads/\(branch)", after: after, deleted: deleted), event: "push", delivery: delivery)
    }

    /// The branch's environment as the store has it.
    public func branchEnvironment(_ branch: String, repo: String = "acme/web") throws -> StagerKit.Environment? {
        try app?.store.allEnvironments().first { $0.repo == repo && $0.kind == .branch && $0.branch == branch }
    }

    /// Waits until the branch's environment has `status`.
    public func waitBranch(
        _ branch: String,
        repo: String = "acme/web",
        status: EnvironmentStatus,
        timeout: Duration = .seconds(60)
    ) async throws -> Bool {
        try await waitUntil(timeout: timeout) { try self.branchEnvironment(branch, repo: repo)?.status == status }
    }

    /// POSTs a raw body to /webhook, signed with `secret` (the global one by default) unless `signed` is false.
    public func post(
        _ body: Data,
        event: String,
        delivery: String = UUID().uuidString,
        port: Int? = nil,
        secret: String = TestConfig.secret,
        signed: Bool = true
    ) async throws -> (Int, String) {
        var headers = [("Content-Type", "application/json"), ("X-GitHub-Event", event), ("X-GitHub-Delivery", delivery)]
        if signed { headers.append(("X-Hub-Signature-256", WebhookSignature(secret: secret).header(for: body))) }
        return try await sender.post("http://127.0.0.1:\(port ?? self.port)/webhook", headers: headers, body: body)
    }

    // MARK: Looking

    /// GET on Stager's own HTTP server (dashboard, API, metrics). A page that reads a container's log waits
    /// for docker, which a machine busy with the other suites makes slow.
    public func get(_ path: String) async throws -> ProbeAnswer {
        try await probe.get(host: "127.0.0.1", port: port, path: path)
    }

    public func probeHealth(port: Int) async throws -> Bool {
        try await probe.get(host: "127.0.0.1", port: port, path: "/healthz").status == 200
    }

    public func containers() async throws -> [ContainerInfo] {
        try await DockerCLI(command: ["docker"], instance: instance, runner: runner).list(for: nil)
    }

    /// What the private nginx logged, one entry a request (the harness must have been made with `accessLog`).
    public func accessLog() -> [NginxAccessEntry] {
        let text = (try? String(contentsOf: dir.appendingPathComponent("nginx/access.log"), encoding: .utf8)) ?? ""
        return text.split(separator: "\n").compactMap(NginxAccessEntry.init)
    }

    /// The environments' vhost files (not a repository's shared host, `stager-shared-*.conf`).
    public func vhosts() -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: dir.appendingPathComponent("nginx/sites").path)) ?? [])
            .filter { $0.hasSuffix(".conf") && !$0.hasPrefix("stager-shared-") }.sorted()
    }

    /// GET / through nginx with the environment's Host header.
    public func throughNginx(slug: String, headers: [String: String] = [:]) async -> ProbeAnswer? {
        try? await probe.get(host: "127.0.0.1", port: nginxPort, path: "/", hostHeader: "\(slug).preview.localhost", headers: headers)
    }

    /// A request to serve's own HTTP server with any method, headers and body.
    public func request(_ method: String, _ path: String, headers: [(String, String)] = [], body: Data = Data()) async throws -> ProbeAnswer {
        try await sender.request(method, "http://127.0.0.1:\(port)\(path)", headers: headers, body: body)
    }

    /// A request with any method through nginx with the environment's Host header.
    public func requestThroughNginx(_ method: String, slug: String, path: String = "/") async throws -> ProbeAnswer {
        try await browser.request(method, "http://127.0.0.1:\(nginxPort)\(path)", headers: [("Host", "\(slug).preview.localhost")])
    }

    /// One request of a load through nginx, throwing what went wrong when nginx gave no answer.
    public func requestThroughNginx(slug: String, headers: [String: String] = [:]) async throws -> ProbeAnswer {
        try await probe.get(host: "127.0.0.1", port: nginxPort, path: "/", hostHeader: "\(slug).preview.localhost", headers: headers)
    }

    public func environment(_ number: Int, repo: String = "acme/web") throws -> StagerKit.Environment? {
        try app?.store.environment(PullRequestKey(repo: repo, number: number))
    }

    /// Waits until the environment has `status` and its comment is published (the comment follows the status).
    /// 60 s: with every suite starting at once, one `docker run` took 20 s in a full run, and two deploys
    /// missed a 30 s wait.
    public func waitSettled(
        _ number: Int,
        repo: String = "acme/web",
        status: EnvironmentStatus,
        timeout: Duration = .seconds(60)
    ) async throws -> Bool {
        try await waitUntil(timeout: timeout) {
            guard let env = try self.environment(number, repo: repo) else { return false }
            return env.status == status && !env.commentPending
        }
    }

    /// Waits until the environment settles in any status a deploy ends in, and returns it.
    public func settledStatus(_ number: Int, repo: String = "acme/web", timeout: Duration = .seconds(60)) async throws -> EnvironmentStatus? {
        _ = try await waitUntil(timeout: timeout) {
            guard let env = try self.environment(number, repo: repo) else { return false }
            return [.ready, .failed, .blocked, .waiting].contains(env.status) && !env.commentPending
        }
        return try environment(number, repo: repo)?.status
    }

    /// Waits until serve's first reconcile pass (at start) is done: what a test leaks after it is left to gc.
    public func waitReconciled() async throws -> Bool {
        try await waitUntil {
            guard let metrics = self.app?.deps.metrics.render() else { return false }
            return metrics.split(separator: "\n").contains { $0.hasPrefix("stager_reconciles_total ") && !$0.hasSuffix(" 0") }
        }
    }

    /// Waits until `condition` holds; false after `timeout`.
    public func waitUntil(timeout: Duration = .seconds(30), _ condition: @Sendable () async throws -> Bool) async throws -> Bool {
        try await Poller(first: .milliseconds(20), longest: .milliseconds(250)).until(timeout: timeout) {
            (try? await condition()) ?? false
        }
    }

    /// A port that is free now, chosen below the kernel's ephemeral range (32768 and up), which is where
    /// docker publishes containers and outgoing connections take theirs: a port picked there can be taken
    /// by a container of a test running beside this one before nginx or serve binds it.
    public static func freePort() throws -> Int {
        for _ in 0..<200 {
            let candidate = Int.random(in: 20_000..<32_000)
            if canBind(candidate) { return candidate }
        }
        throw POSIXError(.EADDRINUSE)
    }

    private static func canBind(_ port: Int) -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = UInt16(port).bigEndian
        let length = socklen_t(MemoryLayout<sockaddr_in>.size)
        return withUnsafeMutablePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) == 0 }
        }
    }
}

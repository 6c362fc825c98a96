import Foundation
import Logging

/// `stager check`: one line per check, each saying what is wrong and how to fix it.
public struct Preflight: Sendable {
    public struct Result: Sendable {
        public var name: String
        public var passed: Bool
        public var detail: String

        public var line: String { "\(passed ? "ok  " : "FAIL") \(name): \(detail)" }
    }

    let config: StagerConfig
    let runner: any CommandRunner

    public init(config: StagerConfig, runner: any CommandRunner) {
        self.config = config
        self.runner = runner
    }

    public func run() async -> [Result] {
        var results = [
            Result(name: "config", passed: true, detail: "\(config.configFile?.path ?? "(embedded)") is valid, \(config.repos.count) repositories")
        ]
        let docker = config.makeEngine(runner: runner)
        do {
            try await docker.ping()
            results.append(
                Result(
                    name: "engine",
                    passed: true,
                    detail: config.runtime == .swarm ? "docker.command reaches a manager of an active swarm" : "the Docker engine answers"
                )
            )
            results += await seedVolumes(docker)
            results += await buildLimits()
            if let swarm = docker as? SwarmRuntime { results += await swarmChecks(swarm) }
        } catch {
            results.append(Result(name: "engine", passed: false, detail: "\(error); start dockerd or fix docker.command"))
        }
        results.append(sitesDirWritable())
        let test = try? await runner.run(Command(argv: config.nginx.testCommand))  // nil is reported as "could not run"
        if let test, test.succeeded {
            results.append(Result(name: "nginx", passed: true, detail: "`\(config.nginx.testCommand.joined(separator: " "))` passes"))
        } else {
            let message = test?.message ?? "could not run it"
            results.append(
                Result(
                    name: "nginx",
                    passed: false,
                    detail: "`\(config.nginx.testCommand.joined(separator: " "))` fails: \(message); fix nginx.test_command or nginx's configuration"
                )
            )
        }
        results += await sitesIncluded()
        results += await wakePathInTemplate()
        results += sharedHosts()
        results += await github()
        return results
    }

    /// With sleep configured, the vhost template (a custom one too) must route a sleeping environment to
    /// the wake path and take the request back, or a sleeping URL answers 502. Rendered as serve renders it.
    func wakePathInTemplate() async -> [Result] {
        guard config.sleeps else { return [] }
        let name = "wake path"
        do {
            let rendered = try await renderedVhost(
                Route(
                    key: PullRequestKey(repo: "check/check", number: 1),
                    slug: "check",
                    hostName: "check.invalid",
                    upstreamPort: 1,
                    containerName: "check",
                    sha: "check",
                    asleep: true
                )
            )
            // The wake path, and the internal location a held request is handed back to (its regex escapes the dot).
            guard rendered.contains(WakePath.route), rendered.contains("stager-upstream/") else {
                return [
                    Result(
                        name: name,
                        passed: false,
                        detail:
                            "the vhost template has no {{#asleep}} part sending requests to the wake path; copy it from the built-in vhost.conf.mustache"
                    )
                ]
            }
            return [Result(name: name, passed: true, detail: "the vhost template routes a sleeping environment to serve's wake path")]
        } catch {
            return [Result(name: name, passed: false, detail: "\(error)")]
        }
    }

    /// Each repository's shared host: its address, and whether its default and canary have a vhost now
    /// (without one, a visitor with no choice gets 503 until it does).
    func sharedHosts() -> [Result] {
        let routed = NginxFrontDoor.routedEnvironments(in: config.nginx.sitesDir)
        return config.repos.values.sorted { $0.name < $1.name }.compactMap { repo -> Result? in
            guard let shared = repo.sharedHost else { return nil }
            let names = Set((routed[repo.name] ?? []).map(\.name))
            func state(_ env: String) -> String { names.contains(env) ? "\(env) (routed)" : "\(env) (not routed now)" }
            var detail = "\(config.preview.url(forSlug: shared.name)) serves \(names.count) environment(s); default \(state(shared.defaultEnv))"
            if let canary = shared.canary {
                detail += ", canary \(state(canary.env)) for \(SharedHostVhost.percent(canary.percent))% of new visitors"
            }
            if !names.contains(shared.defaultEnv) { detail += "; until the default is routed, a visitor with no choice gets 503" }
            return Result(name: "shared host \(repo.name)", passed: true, detail: detail)
        }
    }

    /// The vhost serve would write for `route`, from the configured template.
    func renderedVhost(_ route: Route) async throws -> String {
        let door = NginxFrontDoor(
            config: config.nginx,
            wakePath: WakePath(address: "127.0.0.1:1", token: "check", holdFor: config.wakeTimeout),
            template: try Templates.load(overrideDir: config.templatesDir).vhost,
            runner: runner,
            logger: Logger(label: "stager-check")
        )
        return try await door.render(route)
    }

    /// Builds run a PR's code: say how their processes are bounded (a warning line, not a failure, where not).
    private func buildLimits() async -> [Result] {
        guard config.repos.values.contains(where: { $0.build != nil }) else { return [] }
        let limits = "builds: at most \(config.build.timeout) each (build.timeout), \(config.build.memory) of memory (build.memory)"
        switch await BuildCgroup(config: config, runner: runner).parent() {
        case .success(let name):
            return [
                Result(name: "build limits", passed: true, detail: "\(limits), \(config.build.pids) processes together (cgroup \(name), build.pids)")
            ]
        case .failure(let problem):
            return [Result(name: "build limits", passed: true, detail: "\(limits); their processes are not bounded: \(problem)")]
        }
    }

    /// Every volume a service is seeded from exists (dependencies and cycles were checked with the configuration).
    private func seedVolumes(_ docker: any ContainerEngine) async -> [Result] {
        var results: [Result] = []
        if config.repos.values.contains(where: { $0.services.contains { !$0.seed.isEmpty } }) {
            results.append(
                Result(name: "seed copies", passed: true, detail: "\(SeedCopier.describe(seedImage: config.seedImage)); nothing is pulled")
            )
        }
        for repo in config.repos.values.sorted(by: { $0.name < $1.name }) {
            for service in repo.services {
                for (volume, seed) in service.seed.sorted(by: { $0.key < $1.key }) {
                    let name = "seed repos.\(repo.name).services.\(service.name).seed.\(volume)"
                    do {
                        results.append(
                            try await docker.volumeExists(seed)
                                ? Result(name: name, passed: true, detail: "the docker volume \(seed) exists")
                                : Result(
                                    name: name,
                                    passed: false,
                                    detail: "no docker volume \(seed); create it (docker volume create \(seed)) and fill it"
                                )
                        )
                    } catch {
                        results.append(Result(name: name, passed: false, detail: "\(error)"))
                    }
                }
            }
        }
        return results
    }

    /// `nginx -T` prints the whole configuration: the sites folder must be included in it, or vhosts are
    /// written and nginx never reads them.
    private func sitesIncluded() async -> [Result] {
        guard let flag = config.nginx.testCommand.firstIndex(of: "-t") else { return [] }
        var dump = config.nginx.testCommand
        dump[flag] = "-T"
        guard let result = try? await runner.run(Command(argv: dump)), result.succeeded else { return [] }  // no dump: the check is skipped
        let includes = result.standardOutput.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }.filter { $0.hasPrefix("include") }
        /// Whether an include names `prefix` (absolute, or relative to /etc/nginx).
        func included(_ prefix: String) -> Bool {
            let relative = prefix.hasPrefix("/etc/nginx/") ? String(prefix.dropFirst("/etc/nginx/".count)) : prefix
            return includes.contains { $0.contains(prefix) || $0.contains(" " + relative) }
        }
        let dir = config.nginx.sitesDir.standardizedFileURL.path
        let activity = config.nginx.activityFile.standardizedFileURL.path
        let pattern = activity.hasSuffix(".conf") ? String(activity.dropLast(".conf".count)) + "*.conf" : activity
        return [
            included(dir + "/")
                ? Result(name: "nginx include", passed: true, detail: "nginx reads \(dir)")
                : Result(
                    name: "nginx include",
                    passed: false,
                    detail: "nginx's configuration does not include \(dir); add `include \(dir)/*.conf;` to its http block"
                ),
            included(String(activity.dropLast(".conf".count)))
                ? Result(name: "nginx activity include", passed: true, detail: "nginx reads \(activity): last_request_at moves with each request")
                : Result(
                    name: "nginx activity include",
                    passed: false,
                    detail:
                        "nginx's configuration does not include \(activity); add `include \(pattern);` to its http block (or last_request_at never moves)"
                ),
        ]
    }

    /// The token can read each configured repository's pull requests.
    private func github() async -> [Result] {
        var logger = Logger(label: "stager-check")
        logger.logLevel = .critical
        guard let client = GitHubClient(config: config.github, maxAttempts: 2, logger: logger) else {
            return [Result(name: "github", passed: true, detail: "no token: PR comments go to the log and dashboard only")]
        }
        var results: [Result] = []
        for repo in config.repos.keys.sorted() {
            do {
                try await client.canReadPullRequests(repo)
                results.append(Result(name: "github \(repo)", passed: true, detail: "the token reads its pull requests"))
            } catch {
                results.append(
                    Result(
                        name: "github \(repo)",
                        passed: false,
                        detail: "\(error); give the token access to \(repo) (pull requests: read, issues: write) or fix github.api_url"
                    )
                )
            }
        }
        if results.isEmpty { results.append(Result(name: "github", passed: true, detail: "token set; no repositories configured")) }
        return results
    }

    private func sitesDirWritable() -> Result {
        let dir = config.nginx.sitesDir
        let probe = dir.appendingPathComponent(".stager-check-\(UUID().uuidString)")
        do {
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
            try Data().write(to: probe)
            try FileManager.default.removeItem(at: probe)
            return Result(name: "sites_dir", passed: true, detail: "\(dir.path) is writable")
        } catch {
            return Result(
                name: "sites_dir",
                passed: false,
                detail: "\(dir.path) is not writable (\(error.localizedDescription)); fix nginx.sites_dir"
            )
        }
    }
}

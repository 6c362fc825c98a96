import Crypto
import Foundation
import Yams

/// A configuration problem, naming the key and the file so the message alone says what to fix.
public struct ConfigError: Error, CustomStringConvertible, Equatable {
    public var file: String
    public var key: String
    public var message: String

    public var description: String { "\(file): \(key): \(message)" }
}

/// Reads the YAML file, applies the embedded defaults, resolves secrets from the environment or files,
/// and validates every value once.
public struct ConfigLoader: Sendable {
    private let environment: [String: String]

    public init(environment: [String: String] = ProcessInfo.processInfo.environment) {
        self.environment = environment
    }

    /// `--config`, else `$STAGER_CONFIG`, else `./stager.yml`.
    public func resolvePath(_ explicit: String?) -> URL {
        if let explicit, !explicit.isEmpty { return URL(fileURLWithPath: explicit) }
        if let fromEnv = environment["STAGER_CONFIG"], !fromEnv.isEmpty { return URL(fileURLWithPath: fromEnv) }
        return URL(fileURLWithPath: "stager.yml")
    }

    public func load(file: URL) throws -> StagerConfig {
        let text: String
        do {
            text = try String(contentsOf: file, encoding: .utf8)
        } catch {
            throw ConfigError(file: file.path, key: "(file)", message: "cannot read the configuration file; pass --config FILE or set STAGER_CONFIG")
        }
        return try load(yaml: text, file: file)
    }

    public func load(yaml: String, file: URL?) throws -> StagerConfig {
        let fileName = file?.path ?? "(embedded)"
        let baseDir = file?.deletingLastPathComponent() ?? URL(fileURLWithPath: FileManager.default.currentDirectoryPath)
        let document: ConfigFile
        do {
            if let node = try Yams.compose(yaml: yaml) {
                try KnownKeys.check(node, file: fileName)
            }
            document = try YAMLDecoder().decode(ConfigFile.self, from: yaml.isEmpty ? "{}" : yaml)
        } catch let error as ConfigError {
            throw error
        } catch let error as DecodingError {
            throw ConfigError(file: fileName, key: error.keyPath, message: error.reason)
        } catch {
            throw ConfigError(file: fileName, key: "(file)", message: "not valid YAML: \(error)")
        }
        var validator = Validator(file: fileName, baseDir: baseDir, environment: environment)
        return try validator.build(document, configFile: file)
    }
}

struct Validator {
    let file: String
    let baseDir: URL
    let environment: [String: String]

    func fail(_ key: String, _ message: String) -> ConfigError {
        ConfigError(file: file, key: key, message: message)
    }

    func path(_ value: String) -> URL {
        value.hasPrefix("/") ? URL(fileURLWithPath: value) : baseDir.appendingPathComponent(value)
    }

    func hostPort(_ value: String, key: String) throws -> (String, Int) {
        guard let colon = value.lastIndex(of: ":"), let port = Int(value[value.index(after: colon)...]),
              (0...65535).contains(port) else {
            throw fail(key, "expected HOST:PORT such as \"127.0.0.1:8080\", got \"\(value)\"")
        }
        var host = String(value[..<colon])
        if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        guard !host.isEmpty, host.allSatisfy({ $0.isLetter || $0.isNumber || ".-:".contains($0) }) else {
            throw fail(key, "expected HOST:PORT such as \"127.0.0.1:8080\", got \"\(value)\"")
        }
        return (host, port)
    }

    func duration(_ value: String?, key: String, default fallback: Duration) throws -> Duration {
        guard let value else { return fallback }
        guard let parsed = DurationParser.parse(value), parsed > .zero else {
            throw fail(key, "expected a positive duration such as \"500ms\", \"60s\", \"5m\" or \"72h\", got \"\(value)\"")
        }
        return parsed
    }

    /// A secret from a file, or from the named variable (else `defaultEnv`). With `requiredWhenNamed`, a
    /// variable the configuration names but the environment lacks is an error rather than "not set".
    func secret(envKey: String?, fileKey: String?, keyPrefix: String, defaultEnv: String?, requiredWhenNamed: Bool = false) throws -> String? {
        if let path = fileKey {
            guard let text = try? String(contentsOf: self.path(path), encoding: .utf8) else {  // the else branch names the file that cannot be read
                throw fail("\(keyPrefix)_file", "cannot read \(path)")
            }
            let value = text.trimmingCharacters(in: .whitespacesAndNewlines)
            guard !value.isEmpty else { throw fail("\(keyPrefix)_file", "\(path) is empty") }
            return value
        }
        guard let name = envKey ?? defaultEnv, let value = environment[name], !value.isEmpty else {
            if requiredWhenNamed, let envKey {
                throw fail("\(keyPrefix)_env", "the variable \(envKey) is not set; export it or remove the key")
            }
            return nil
        }
        return value
    }

    func command(_ value: [String]?, key: String, default fallback: [String]) throws -> [String] {
        guard let value else { return fallback }
        guard let first = value.first, !first.isEmpty else { throw fail(key, "must be a non-empty argv list such as [\"nginx\", \"-t\"]") }
        return value
    }

    mutating func build(_ doc: ConfigFile, configFile: URL?) throws -> StagerConfig {
        let (host, port) = try hostPort(doc.server?.listen ?? "127.0.0.1:8080", key: "server.listen")
        let maxBody = doc.server?.max_body_bytes ?? 5 * 1024 * 1024
        guard maxBody > 0 else { throw fail("server.max_body_bytes", "must be positive") }

        let instance = doc.instance ?? "default"
        guard Slug.isValidLabel(instance), instance.count <= 30 else {
            throw fail("instance", "must be 1 to 30 characters of a-z, 0-9 and '-', got \"\(instance)\"")
        }

        guard let secret = try self.secret(envKey: doc.webhook?.secret_env, fileKey: doc.webhook?.secret_file,
                                           keyPrefix: "webhook.secret", defaultEnv: "STAGER_WEBHOOK_SECRET") else {
            let name = doc.webhook?.secret_env ?? "STAGER_WEBHOOK_SECRET"
            throw fail("webhook.secret_env", "the variable \(name) is not set; export it (or set webhook.secret_file) with the secret configured on the GitHub webhook")
        }

        let adminToken = try self.secret(envKey: doc.server?.admin_token_env, fileKey: doc.server?.admin_token_file,
                                         keyPrefix: "server.admin_token", defaultEnv: "STAGER_ADMIN_TOKEN", requiredWhenNamed: true)
        let dataDir = path(doc.data_dir ?? ".stager")
        let forksLabel = doc.forks?.label ?? "stager:deploy"
        guard !forksLabel.isEmpty, forksLabel.count <= 50 else { throw fail("forks.label", "must be a label name of 1 to 50 characters") }

        let apiString = doc.github?.api_url ?? "https://api.github.com"
        guard let apiURL = URL(string: apiString.hasSuffix("/") ? String(apiString.dropLast()) : apiString),
              let scheme = apiURL.scheme, ["http", "https"].contains(scheme), apiURL.host != nil else {
            throw fail("github.api_url", "expected an http(s) URL such as https://api.github.com, got \"\(apiString)\"")
        }
        let token = try self.secret(envKey: doc.github?.token_env, fileKey: doc.github?.token_file,
                                    keyPrefix: "github.token", defaultEnv: "STAGER_GITHUB_TOKEN")
        let maxAttempts = doc.github?.max_attempts ?? 5
        guard (1...20).contains(maxAttempts) else { throw fail("github.max_attempts", "must be between 1 and 20") }

        let domain = (doc.preview?.domain ?? "preview.localhost").lowercased()
        let labels = domain.split(separator: ".", omittingEmptySubsequences: false)
        guard !labels.isEmpty, labels.allSatisfy({ Slug.isValidLabel(String($0)) }) else {
            throw fail("preview.domain", "must be a DNS name such as preview.example.com, got \"\(domain)\"")
        }
        let previewScheme = doc.preview?.scheme ?? "http"
        guard ["http", "https"].contains(previewScheme) else { throw fail("preview.scheme", "must be http or https") }
        let (nginxHost, nginxPort) = try hostPort(doc.nginx?.listen ?? "127.0.0.1:8088", key: "nginx.listen")
        let publicPort = doc.preview?.public_port ?? nginxPort
        let (activityHost, activityPort) = try hostPort(doc.nginx?.activity_listen ?? "127.0.0.1:8089", key: "nginx.activity_listen")
        guard ["127.0.0.1", "::1"].contains(activityHost), activityPort > 0 else {
            throw fail("nginx.activity_listen", "must be a loopback address with a port, such as 127.0.0.1:8089 (nginx sends every request's line there), got \"\(doc.nginx?.activity_listen ?? "")\"")
        }
        guard (1...65535).contains(publicPort) else { throw fail("preview.public_port", "must be a port number") }

        let limits = StagerConfig.Limits(
            maxEnvironments: doc.limits?.max_environments ?? 100,
            memory: doc.limits?.memory ?? "512m",
            cpus: doc.limits?.cpus ?? "1",
            pids: doc.limits?.pids ?? 256,
            concurrentDeploys: doc.limits?.concurrent_deploys ?? 4,
            idleTTL: try doc.limits?.idle_ttl.map { try duration($0, key: "limits.idle_ttl", default: .zero) },
            concurrentBuilds: doc.limits?.concurrent_builds ?? 1,
            maxAwake: doc.limits?.max_awake
        )
        guard limits.maxEnvironments > 0 else { throw fail("limits.max_environments", "must be positive") }
        guard limits.concurrentDeploys > 0 else { throw fail("limits.concurrent_deploys", "must be positive") }
        guard limits.concurrentBuilds > 0 else { throw fail("limits.concurrent_builds", "must be positive") }
        try checkMemory(limits.memory, key: "limits.memory")
        try checkCPUs(limits.cpus, key: "limits.cpus")
        guard limits.pids > 0 else { throw fail("limits.pids", "must be positive") }
        if let maxAwake = limits.maxAwake, maxAwake <= 0 { throw fail("limits.max_awake", "must be positive") }

        var repos: [String: StagerConfig.Repo] = [:]
        for (name, repo) in doc.repos ?? [:] {
            repos[name] = try buildRepo(name, repo, dataDir: dataDir)
        }
        var sharedHosts: [String: String] = [:]
        for (name, repo) in repos.sorted(by: { $0.key < $1.key }) {
            guard let host = repo.sharedHost?.name else { continue }
            if let other = sharedHosts[host] { throw fail("repos.\(name).shared_host", "\"\(host)\" is the shared host of \(other) already") }
            sharedHosts[host] = name
        }
        for (name, repo) in repos.sorted(by: { $0.key < $1.key }) {
            for branch in repo.branches {
                if let owner = sharedHosts[Slug.readable(branch: branch)] {
                    throw fail("repos.\(name).branches", "\"\(branch)\" would take the address of the shared host of \(owner)")
                }
            }
        }

        let github = StagerConfig.GitHub(
            apiURL: apiURL,
            token: token,
            deployments: doc.github?.deployments ?? false,
            deploymentEnvironment: try deploymentEnvironment(doc.github?.deployment_environment),
            requestTimeout: try duration(doc.github?.request_timeout, key: "github.request_timeout", default: .seconds(10)),
            maxAttempts: maxAttempts
        )

        var config = StagerConfig(
            configFile: configFile,
            server: .init(host: host, port: port, maxBodyBytes: maxBody, adminToken: adminToken,
                          publicURL: try publicURL(doc.server?.public_url, host: host, port: port)),
            dataDir: dataDir,
            instance: instance,
            reconcileInterval: try duration(doc.reconcile_interval, key: "reconcile_interval", default: .seconds(60)),
            webhookSecret: secret,
            forks: .init(label: forksLabel),
            github: github,
            preview: .init(domain: domain, scheme: previewScheme, publicPort: publicPort),
            nginx: .init(
                sitesDir: path(doc.nginx?.sites_dir ?? "/etc/nginx/stager"),
                listenHost: nginxHost,
                listenPort: nginxPort,
                testCommand: try command(doc.nginx?.test_command, key: "nginx.test_command", default: ["nginx", "-t"]),
                reloadCommand: try command(doc.nginx?.reload_command, key: "nginx.reload_command", default: ["nginx", "-s", "reload"]),
                confirmTimeout: try duration(doc.nginx?.confirm_timeout, key: "nginx.confirm_timeout", default: .seconds(10)),
                batchDelay: try batchDelay(doc.nginx?.batch_delay),
                activityHost: activityHost,
                activityPort: activityPort,
                activityFile: try activityFile(doc.nginx, sitesDir: path(doc.nginx?.sites_dir ?? "/etc/nginx/stager"))
            ),
            dockerCommand: try command(doc.docker?.command, key: "docker.command", default: ["docker"]),
            seedImage: try seedImage(doc.docker?.seed_image),
            repos: repos,
            limits: limits,
            templatesDir: doc.templates_dir.map(path),
            gcRemovesImages: doc.gc?.remove_images ?? false,
            build: try build(doc.build, github: github),
            wakeTimeout: try duration(doc.sleep?.wake_timeout, key: "sleep.wake_timeout", default: .seconds(60)),
            slack: try slack(doc.slack)
        )
        config.maxHeldRequests = try positive(doc.sleep?.max_held_requests, key: "sleep.max_held_requests", default: config.maxHeldRequests)
        config.wakesPerMinute = try positive(doc.sleep?.wakes_per_minute, key: "sleep.wakes_per_minute", default: config.wakesPerMinute)
        config.forks.maxBlocked = try positive(doc.forks?.max_blocked, key: "forks.max_blocked", default: config.forks.maxBlocked)
        config.server.publicRead = doc.server?.public_read ?? false
        config.server.idleTimeout = try duration(doc.server?.idle_timeout, key: "server.idle_timeout", default: config.server.idleTimeout)
        if adminToken == nil, !config.server.publicRead, !Self.isLoopback(host) {
            throw fail("server.admin_token_env", "server.listen is \(host), beyond this machine, and no admin token is set: anyone who reaches it would read the dashboard, the API and /metrics. Set server.admin_token_env (or admin_token_file), or server.public_read: true to allow it")
        }
        (config.runtime, config.swarm) = try runtime(doc, repos: repos)
        return config
    }

    /// `runtime` and `swarm.*`, checked against what the repositories need of them.
    func runtime(_ doc: ConfigFile, repos: [String: StagerConfig.Repo]) throws -> (StagerConfig.Runtime, StagerConfig.Swarm) {
        let name = doc.runtime ?? "docker"
        guard let runtime = StagerConfig.Runtime(rawValue: name) else {
            throw fail("runtime", "must be \"docker\" or \"swarm\", got \"\(name)\"")
        }
        var swarm = StagerConfig.Swarm.standard
        if let registry = doc.swarm?.registry {
            guard registry.range(of: #"^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?(:[0-9]{1,5})?$"#, options: .regularExpression) != nil else { throw fail("swarm.registry", "must be host[:port] of a registry such as registry.example.com:5000, got \"\(registry)\"") }
            swarm.registry = registry
        }
        for constraint in doc.swarm?.constraints ?? [] {
            guard constraint.range(of: #"^[A-Za-z0-9._-]+ *(==|!=) *[A-Za-z0-9._:/-]+$"#, options: .regularExpression) != nil else {
                throw fail("swarm.constraints", "each entry is a placement constraint such as node.labels.previews==true, got \"\(constraint)\"")
            }
        }
        swarm.constraints = doc.swarm?.constraints ?? []
        if let ports = doc.swarm?.published_ports {
            let bounds = ports.split(separator: "-", omittingEmptySubsequences: false).map { Int($0.trimmingCharacters(in: .whitespaces)) }
            guard bounds.count == 2, let low = bounds[0], let high = bounds[1], 1024 <= low, low <= high, high <= 65535 else {
                throw fail("swarm.published_ports", "must be a range of ports such as 30000-32767 (within 1024-65535), got \"\(ports)\"")
            }
            swarm.publishedPorts = low...high
        }
        guard runtime == .swarm else { return (runtime, swarm) }
        for (name, repo) in repos.sorted(by: { $0.key < $1.key }) {
            if repo.build != nil, swarm.registry == nil {
                throw fail("swarm.registry", "is needed with runtime: swarm: \(name) builds its image (repos.\(name).build), and every node must be able to pull it")
            }
            for service in repo.services where !service.seed.isEmpty {
                throw fail("repos.\(name).services.\(service.name).seed",
                           "is not supported with runtime: swarm: a volume lives on one node, and the service may run on another")
            }
        }
        return (runtime, swarm)
    }

    static func isLoopback(_ host: String) -> Bool {
        host == "localhost" || host == "::1" || host.hasPrefix("127.")
    }

    func positive(_ value: Int?, key: String, default fallback: Int) throws -> Int {
        guard let value else { return fallback }
        guard value > 0 else { throw fail(key, "must be a whole number above 0, got \(value)") }
        return value
    }

    func build(_ build: ConfigFile.Build?, github: StagerConfig.GitHub) throws -> StagerConfig.Build {
        var result = StagerConfig.Build(allowedHosts: build?.allowed_hosts ?? [github.webHost], allowFileURLs: build?.allow_file_urls ?? false)
        result.timeout = try duration(build?.timeout, key: "build.timeout", default: result.timeout)
        if let memory = build?.memory {
            guard memory.range(of: #"^[0-9]+[bkmg]?$"#, options: .regularExpression) != nil else {
                throw fail("build.memory", "must be an amount of memory such as 2g or 512m, got \"\(memory)\"")
            }
            result.memory = memory
        }
        result.logLimitBytes = try positive(build?.log_limit_bytes, key: "build.log_limit_bytes", default: result.logLimitBytes)
        result.pids = try positive(build?.pids, key: "build.pids", default: result.pids)
        return result
    }

    func slack(_ slack: ConfigFile.Slack?) throws -> StagerConfig.Slack {
        let secret = try self.secret(envKey: slack?.signing_secret_env, fileKey: slack?.signing_secret_file,
                                     keyPrefix: "slack.signing_secret", defaultEnv: nil, requiredWhenNamed: true)
        for user in slack?.allowed_users ?? [] where user.isEmpty || !user.allSatisfy({ $0.isLetter || $0.isNumber }) {
            throw fail("slack.allowed_users", "each entry is a Slack user id such as U012AB3CD, got \"\(user)\"")
        }
        var result = StagerConfig.Slack(signingSecret: secret, allowedUsers: Set(slack?.allowed_users ?? []),
                                        webhookURL: try slack?.webhook_url_env.map { try webhookURL(env: $0, key: "slack.webhook_url_env") })
        if let hosts = slack?.response_hosts {
            guard !hosts.isEmpty, hosts.allSatisfy({ $0.range(of: #"^[A-Za-z0-9.-]+(:[0-9]{1,5})?$"#, options: .regularExpression) != nil }) else {
                throw fail("slack.response_hosts", "must list host names such as hooks.slack.com, got \(hosts)")
            }
            result.responseHosts = hosts.map { $0.lowercased() }
        }
        if let team = slack?.team_id {
            guard !team.isEmpty, team.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber) }) else {
                throw fail("slack.team_id", "must be a Slack team id such as T0123ABCD, got \"\(team)\"")
            }
            result.teamID = team
        }
        return result
    }

    /// An incoming-webhook URL from the named variable: https (http only to this machine, for a stand-in).
    func webhookURL(env name: String, key: String) throws -> URL {
        guard let text = environment[name], !text.isEmpty else { throw fail(key, "the variable \(name) is not set") }
        guard let url = URL(string: text), url.isSlackPostable else {
            throw fail(key, "\(name) must hold an https URL (Slack's incoming webhook)")
        }
        return url
    }

    func repoBuild(_ build: ConfigFile.RepoBuild?, key: String) throws -> StagerConfig.RepoBuild? {
        guard let build else { return nil }
        func relative(_ value: String, _ name: String) throws -> String {
            let parts = value.split(separator: "/")
            guard !value.hasPrefix("/"), !parts.contains(".."), !value.contains(where: { $0.isNewline }) else {
                throw fail("\(key).\(name)", "must be a path inside the repository, got \"\(value)\"")
            }
            return value.isEmpty ? "." : value
        }
        for (name, value) in build.args ?? [:] {
            guard let first = name.first, first.isLetter || first == "_", name.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_") }) else {
                throw fail("\(key).args.\(name)", "is not a valid build argument name")
            }
            guard (try? ImageReference.template(value)) != nil else { throw fail("\(key).args.\(name)", "is not a valid Mustache template") }  // the throw says what is wrong
        }
        if let target = build.target, !target.isEmpty, !target.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "-_.".contains($0)) }) {
            throw fail("\(key).target", "is not a build stage name, got \"\(target)\"")
        }
        return StagerConfig.RepoBuild(
            context: try relative(build.context ?? ".", "context"), dockerfile: try relative(build.dockerfile ?? "Dockerfile", "dockerfile"),
            args: build.args ?? [:], target: build.target.flatMap { $0.isEmpty ? nil : $0 }
        )
    }

    func batchDelay(_ value: String?) throws -> Duration {
        let delay = try duration(value, key: "nginx.batch_delay", default: .milliseconds(20))
        guard delay <= .seconds(1) else { throw fail("nginx.batch_delay", "at most 1s: every vhost change waits this long, got \"\(value ?? "")\"") }
        return delay
    }

    func publicURL(_ value: String?, host: String, port: Int) throws -> String {
        guard let value else {
            let reachable = ["0.0.0.0", "::", "*"].contains(host) ? "127.0.0.1" : host
            return "http://\(reachable.contains(":") ? "[\(reachable)]" : reachable):\(port)"
        }
        let trimmed = value.hasSuffix("/") ? String(value.dropLast()) : value
        guard let url = URL(string: trimmed), ["http", "https"].contains(url.scheme ?? ""), url.host != nil, url.query == nil else {
            throw fail("server.public_url", "expected the dashboard's address such as https://stager.example.com, got \"\(value)\"")
        }
        return trimmed
    }

    func deploymentEnvironment(_ value: String?) throws -> String {
        let template = value ?? "pr-{{number}}"
        guard !template.trimmingCharacters(in: .whitespaces).isEmpty, (try? ImageReference.template(template)) != nil else {  // the throw says what is wrong
            throw fail("github.deployment_environment", "must be a Mustache template such as \"pr-{{number}}\", got \"\(template)\"")
        }
        return template
    }

    func buildRepo(_ name: String, _ repo: ConfigFile.Repo, dataDir: URL) throws -> StagerConfig.Repo {
        let key = "repos.\(name)"
        let parts = name.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, parts.allSatisfy({ !$0.isEmpty && $0.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || "-_.".contains($0)) } }) else {
            throw fail(key, "repository names are OWNER/NAME, got \"\(name)\"")
        }
        let build = try repoBuild(repo.build, key: "\(key).build")
        // A repository that builds tags its images per commit, so a commit built once is never built again.
        let image = repo.image ?? (build != nil ? "stager/\(ConfigRepoSlug.make(name)):{{sha}}" : "")
        guard !image.isEmpty else {
            throw fail("\(key).image", "is required (or a build: block): the image to run, e.g. \"acme/web:pr-{{number}}\"")
        }
        if build != nil, !image.contains("{{sha}}") {
            throw fail("\(key).image", "names the tag of images built per commit, so it must contain {{sha}}, got \"\(image)\"")
        }
        if let cloneURL = repo.clone_url, URL(string: cloneURL)?.scheme == nil {
            throw fail("\(key).clone_url", "expected a URL such as https://github.com/acme/web.git, got \"\(cloneURL)\"")
        }
        do { _ = try ImageReference.template(image) } catch {
            throw fail("\(key).image", "is not a valid Mustache template: \(error)")
        }
        let port = repo.port ?? 8080
        guard (1...65535).contains(port) else { throw fail("\(key).port", "must be a port number, got \(port)") }
        let healthPath = repo.health_path ?? "/"
        guard healthPath.hasPrefix("/"), !healthPath.contains(where: { $0.isWhitespace || $0.isNewline }) else {
            throw fail("\(key).health_path", "must be a path starting with '/', got \"\(healthPath)\"")
        }
        if let memory = repo.memory { try checkMemory(memory, key: "\(key).memory") }
        if let cpus = repo.cpus { try checkCPUs(cpus, key: "\(key).cpus") }
        if let pids = repo.pids, pids <= 0 { throw fail("\(key).pids", "must be positive") }
        if let max = repo.max_environments, max <= 0 { throw fail("\(key).max_environments", "must be positive") }
        if repo.privileged != nil {
            throw fail("\(key).privileged", "privileged containers are never run: a preview runs untrusted code; use cap_add for the one capability it needs")
        }
        for path in repo.smoke ?? [] where !path.hasPrefix("/") || path.contains(where: { $0.isWhitespace || $0.isNewline }) {
            throw fail("\(key).smoke", "each entry is a path starting with '/', got \"\(path)\"")
        }
        var built = StagerConfig.Repo(
            name: name,
            image: image,
            command: repo.command ?? [],
            port: port,
            healthPath: healthPath,
            healthTimeout: try duration(repo.health_timeout, key: "\(key).health_timeout", default: .seconds(60)),
            env: try variables(repo.env, key: "\(key).env"),
            allowForks: repo.allow_forks ?? false,
            memory: repo.memory,
            cpus: repo.cpus,
            pids: repo.pids,
            maxEnvironments: repo.max_environments,
            capAdd: try capabilities(repo.cap_add, key: "\(key).cap_add"),
            readOnly: repo.read_only ?? false,
            requireLabel: repo.require_label ?? false,
            webhookSecret: try secret(envKey: repo.webhook_secret_env, fileKey: repo.webhook_secret_file,
                                      keyPrefix: "\(key).webhook_secret", defaultEnv: nil, requiredWhenNamed: true),
            access: try access(repo.access, key: "\(key).access", repo: name, dataDir: dataDir)
        )
        built.build = build
        built.cloneURL = repo.clone_url.flatMap { $0.isEmpty ? nil : $0 }
        built.smoke = repo.smoke ?? []
        built.drain = try duration(repo.drain, key: "\(key).drain", default: .seconds(2))
        built.services = try services(repo.services, key: "\(key).services")
        built.release = try release(repo.release, key: "\(key).release")
        built.sleepAfter = try repo.sleep_after.map { try duration($0, key: "\(key).sleep_after", default: .zero) }
        built.slackWebhookURL = try repo.slack_webhook_url_env.map { try webhookURL(env: $0, key: "\(key).slack_webhook_url_env") }
        built.branches = try branches(repo.branches, key: "\(key).branches")
        built.sharedHost = try sharedHost(repo, branches: built.branches, key: key)
        return built
    }

    /// `branches`: names a push's `refs/heads/…` can carry, each with a slug of its own that is not a PR's name.
    func branches(_ given: [String]?, key: String) throws -> [String] {
        var slugs: [String: String] = [:]
        for branch in given ?? [] {
            guard !branch.isEmpty, branch.utf8.count <= 255, !branch.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F || $0 == " " }) else {
                throw fail(key, "\"\(branch)\" is not a branch name")
            }
            let slug = Slug.readable(branch: branch)
            guard !slug.isEmpty else { throw fail(key, "\"\(branch)\" has no letter or digit to name its environment by") }
            guard !Self.isEnvironmentName(slug) else { throw fail(key, "\"\(branch)\" would be named \(slug), which is a pull request's name") }
            if let other = slugs[slug] { throw fail(key, "\"\(branch)\" and \"\(other)\" would both be named \(slug)") }
            slugs[slug] = branch
        }
        return given ?? []
    }

    /// `shared_host` with its `default_env` and optional `canary`; the others without it are an error.
    func sharedHost(_ repo: ConfigFile.Repo, branches: [String], key: String) throws -> StagerConfig.SharedHost? {
        guard let hostName = repo.shared_host else {
            if repo.default_env != nil || repo.canary != nil { throw fail("\(key).shared_host", "is needed by default_env and canary") }
            return nil
        }
        guard Slug.isValidLabel(hostName), hostName.count <= 63 else {
            throw fail("\(key).shared_host", "must be a DNS label (a-z, 0-9 and '-', no leading or trailing '-'), got \"\(hostName)\"")
        }
        guard let defaultEnv = repo.default_env else { throw fail("\(key).default_env", "is needed with shared_host: the environment served when nothing is chosen, such as pr-12") }
        // A branch is named by its slug in the shared host's choices; a PR as pr-<N>.
        let name = { (given: String) -> String? in
            if Self.isEnvironmentName(given) { return given }
            return branches.contains(given) ? Slug.readable(branch: given) : nil
        }
        let branchList = branches.isEmpty ? "none is configured in \(key).branches" : branches.joined(separator: ", ")
        guard let defaultName = name(defaultEnv) else {
            throw fail("\(key).default_env", "must be pr-<number> or a branch of \(key).branches (\(branchList)), got \"\(defaultEnv)\"")
        }
        var canary: StagerConfig.SharedHost.Canary?
        if let given = repo.canary {
            guard let env = given.env.flatMap(name) else {
                throw fail("\(key).canary.env", "must be pr-<number> or a branch of \(key).branches (\(branchList)), got \"\(given.env ?? "")\"")
            }
            guard let percent = given.percent, (0...100).contains(percent) else {
                throw fail("\(key).canary.percent", "must be a share of new visitors from 0 to 100")
            }
            canary = .init(env: env, percent: percent)
        }
        return StagerConfig.SharedHost(name: hostName, defaultEnv: defaultName, canary: canary)
    }

    /// `pr-<N>`, the name of a PR's environment.
    static func isEnvironmentName(_ name: String) -> Bool {
        guard name.hasPrefix("pr-"), let number = Int(name.dropFirst(3)), number > 0 else { return false }
        return name == "pr-\(number)"
    }

    func access(_ access: ConfigFile.Access?, key: String, repo: String, dataDir: URL) throws -> StagerConfig.Access {
        guard let access else { return .open }
        for address in access.allow_ips ?? [] {
            guard Self.isAddressOrRange(address) else {
                throw fail("\(key).allow_ips", "\"\(address)\" is not an IP address or CIDR range such as 10.0.0.0/8")
            }
        }
        var result = StagerConfig.Access(htpasswdFile: access.htpasswd_file.map(path), generatedHtpasswd: nil, allowIPs: access.allow_ips ?? [])
        if let file = result.htpasswdFile {
            guard FileManager.default.isReadableFile(atPath: file.path) else { throw fail("\(key).htpasswd_file", "cannot read \(file.path)") }
            guard !file.path.contains(where: { $0.isWhitespace || ";{}\"'$#\\".contains($0) }) else {
                throw fail("\(key).htpasswd_file", "the path may not contain spaces or any of ;{}\"'$#\\ (it goes into the vhost)")
            }
        }
        if let variable = access.users_env {
            guard result.htpasswdFile == nil else { throw fail("\(key).users_env", "give either htpasswd_file or users_env, not both") }
            guard let users = environment[variable], !users.isEmpty else {
                throw fail("\(key).users_env", "the variable \(variable) is not set; it holds user:password pairs separated by commas")
            }
            var lines: [String] = []
            for pair in users.split(separator: ",") {
                let parts = pair.split(separator: ":", maxSplits: 1).map(String.init)
                guard parts.count == 2, !parts[0].isEmpty, !parts[1].isEmpty, !parts[0].contains(where: { $0.isWhitespace }) else {
                    throw fail("\(key).users_env", "\(variable) must hold user:password pairs separated by commas")
                }
                lines.append("\(parts[0]):\(Self.ssha(parts[1]))")
            }
            result.generatedHtpasswd = lines.joined(separator: "\n") + "\n"
            result.htpasswdFile = dataDir.appendingPathComponent("access").appendingPathComponent(repo.replacingOccurrences(of: "/", with: "__") + ".htpasswd")
        }
        return result
    }

    /// nginx's `{SSHA}` scheme: base64 of SHA-1(password + salt) followed by the salt.
    static func ssha(_ password: String) -> String {
        let salt = (0..<8).map { _ in UInt8.random(in: 0...255) }
        let digest = Insecure.SHA1.hash(data: Data(password.utf8) + salt)
        return "{SSHA}" + (Data(digest) + salt).base64EncodedString()
    }

    static func isAddressOrRange(_ text: String) -> Bool {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard (1...2).contains(parts.count) else { return false }
        let address = String(parts[0])
        let isV4 = address.split(separator: ".", omittingEmptySubsequences: false).count == 4
            && address.split(separator: ".", omittingEmptySubsequences: false).allSatisfy { UInt8($0) != nil }
        let isV6 = address.contains(":") && address.allSatisfy { $0.isHexDigit || $0 == ":" || $0 == "." }
        guard isV4 || isV6 else { return false }
        guard parts.count == 2 else { return true }
        guard let bits = Int(parts[1]) else { return false }
        return (0...(isV4 ? 32 : 128)).contains(bits)
    }

    func checkMemory(_ value: String, key: String) throws {
        let number = value.lowercased().trimmingCharacters(in: CharacterSet(charactersIn: "bkmg"))
        guard !number.isEmpty, number.allSatisfy(\.isNumber), value.lowercased().drop(while: \.isNumber).count <= 1 else {
            throw fail(key, "expected a size such as \"512m\" or \"1g\", got \"\(value)\"")
        }
    }

    func checkCPUs(_ value: String, key: String) throws {
        guard let cpus = Double(value), cpus > 0 else {
            throw fail(key, "expected a positive number of CPUs such as \"1\" or \"0.5\", got \"\(value)\"")
        }
    }
}

/// Parses "250ms", "60s", "5m", "72h".
public enum DurationParser {
    public static func parse(_ text: String) -> Duration? {
        let units: [(String, Int64)] = [("ms", 1), ("s", 1000), ("m", 60_000), ("h", 3_600_000)]
        for (suffix, millis) in units where text.hasSuffix(suffix) {
            let number = text.dropLast(suffix.count)
            if let value = Int64(number), !(suffix == "m" && number.hasSuffix("m")) {
                return .milliseconds(value * millis)
            }
        }
        return nil
    }
}

extension DecodingError {
    var keyPath: String {
        let path: [any CodingKey]
        switch self {
        case .keyNotFound(let key, let context):
            // The context's path stops at the parent; the missing key completes it.
            path = context.codingPath + [key]
        case .typeMismatch(_, let context), .valueNotFound(_, let context), .dataCorrupted(let context):
            path = context.codingPath
        @unknown default:
            path = []
        }
        return path.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }.joined(separator: ".")
    }

    var reason: String {
        switch self {
        case .typeMismatch(let type, _): return "expected a value of type \(type)"
        case .valueNotFound(let type, _): return "expected a value of type \(type)"
        case .keyNotFound(let key, _): return "missing key \(key.stringValue)"
        case .dataCorrupted(let context): return context.debugDescription
        @unknown default: return "invalid value"
        }
    }
}

extension Validator {
    /// `nginx.activity_file`, by default `stager-activity.conf` beside the sites folder; never inside it,
    /// where every file is an environment's vhost.
    func activityFile(_ nginx: ConfigFile.Nginx?, sitesDir: URL) throws -> URL {
        let file = nginx?.activity_file.map(path) ?? sitesDir.deletingLastPathComponent().appendingPathComponent("stager-activity.conf")
        guard file.pathExtension == "conf", file.deletingLastPathComponent().standardizedFileURL.path != sitesDir.standardizedFileURL.path else {
            throw fail("nginx.activity_file", "must be a .conf file outside nginx.sites_dir (nginx's http block includes it), got \"\(file.path)\"")
        }
        return file
    }
}

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
            (0...65535).contains(port)
        else {
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

        guard
            let secret = try self.secret(
                envKey: doc.webhook?.secret_env,
                fileKey: doc.webhook?.secret_file,
                keyPrefix: "webhook.secret",
                defaultEnv: "STAGER_WEBHOOK_SECRET"
            )
        else {
            let name = doc.webhook?.secret_env ?? "STAGER_WEBHOOK_SECRET"
            throw fail(
                "webhook.secret_env",
                "the variable \(name) is not set; export it (or set webhook.secret_file) with the secret configured on the GitHub webhook"
            )
        }

        let adminToken = try self.secret(
            envKey: doc.server?.admin_token_env,
            fileKey: doc.server?.admin_token_file,
            keyPrefix: "server.admin_token",
            defaultEnv: "STAGER_ADMIN_TOKEN",
            requiredWhenNamed: true
        )
        let dataDir = path(doc.data_dir ?? ".stager")
        let forksLabel = doc.forks?.label ?? "stager:deploy"
        guard !forksLabel.isEmpty, forksLabel.count <= 50 else { throw fail("forks.label", "must be a label name of 1 to 50 characters") }

        let apiString = doc.github?.api_url ?? "https://api.github.com"
        guard let apiURL = URL(string: apiString.hasSuffix("/") ? String(apiString.dropLast()) : apiString),
            let scheme = apiURL.scheme, ["http", "https"].contains(scheme), apiURL.host != nil
        else {
            throw fail("github.api_url", "expected an http(s) URL such as https://api.github.com, got \"\(apiString)\"")
        }
        let token = try self.secret(
            envKey: doc.github?.token_env,
            fileKey: doc.github?.token_file,
            keyPrefix: "github.token",
            defaultEnv: "STAGER_GITHUB_TOKEN"
        )
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
            throw fail(
                "nginx.activity_listen",
                "must be a loopback address with a port, such as 127.0.0.1:8089 (nginx sends every request's line there), got \"\(doc.nginx?.activity_listen ?? "")\""
            )
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
            server: .init(
                host: host,
                port: port,
                maxBodyBytes: maxBody,
                adminToken: adminToken,
                publicURL: try publicURL(doc.server?.public_url, host: host, port: port)
            ),
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
            throw fail(
                "server.admin_token_env",
                "server.listen is \(host), beyond this machine, and no admin token is set: anyone who reaches it would read the dashboard, the API and /metrics. Set server.admin_token_env (or admin_token_file), or server.public_read: true to allow it"
            )
        }
        (config.runtime, config.swarm) = try runtime(doc, repos: repos)
        return config
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

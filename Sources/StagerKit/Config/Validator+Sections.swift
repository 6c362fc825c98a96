import Crypto
import Foundation
import Yams

/// The top-level sections other than `repos`: runtime, build, Slack, server details.
extension Validator {
    /// `runtime` and `swarm.*`, checked against what the repositories need of them.
    func runtime(_ doc: ConfigFile, repos: [String: StagerConfig.Repo]) throws -> (StagerConfig.Runtime, StagerConfig.Swarm) {
        let name = doc.runtime ?? "docker"
        guard let runtime = StagerConfig.Runtime(rawValue: name) else {
            throw fail("runtime", "must be \"docker\" or \"swarm\", got \"\(name)\"")
        }
        var swarm = StagerConfig.Swarm.standard
        if let registry = doc.swarm?.registry {
            guard registry.range(of: #"^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?(:[0-9]{1,5})?$"#, options: .regularExpression) != nil else {
                throw fail("swarm.registry", "must be host[:port] of a registry such as registry.example.com:5000, got \"\(registry)\"")
            }
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
                throw fail(
                    "swarm.registry",
                    "is needed with runtime: swarm: \(name) builds its image (repos.\(name).build), and every node must be able to pull it"
                )
            }
            for service in repo.services where !service.seed.isEmpty {
                throw fail(
                    "repos.\(name).services.\(service.name).seed",
                    "is not supported with runtime: swarm: a volume lives on one node, and the service may run on another"
                )
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
        let secret = try self.secret(
            envKey: slack?.signing_secret_env,
            fileKey: slack?.signing_secret_file,
            keyPrefix: "slack.signing_secret",
            defaultEnv: nil,
            requiredWhenNamed: true
        )
        for user in slack?.allowed_users ?? [] where user.isEmpty || !user.allSatisfy({ $0.isLetter || $0.isNumber }) {
            throw fail("slack.allowed_users", "each entry is a Slack user id such as U012AB3CD, got \"\(user)\"")
        }
        var result = StagerConfig.Slack(
            signingSecret: secret,
            allowedUsers: Set(slack?.allowed_users ?? []),
            webhookURL: try slack?.webhook_url_env.map { try webhookURL(env: $0, key: "slack.webhook_url_env") }
        )
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
            guard let first = name.first, first.isLetter || first == "_", name.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_") })
            else {
                throw fail("\(key).args.\(name)", "is not a valid build argument name")
            }
            // the throw says what is wrong
            guard (try? ImageReference.template(value)) != nil else { throw fail("\(key).args.\(name)", "is not a valid Mustache template") }
        }
        if let target = build.target, !target.isEmpty, !target.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "-_.".contains($0)) }) {
            throw fail("\(key).target", "is not a build stage name, got \"\(target)\"")
        }
        return StagerConfig.RepoBuild(
            context: try relative(build.context ?? ".", "context"),
            dockerfile: try relative(build.dockerfile ?? "Dockerfile", "dockerfile"),
            args: build.args ?? [:],
            target: build.target.flatMap { $0.isEmpty ? nil : $0 }
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
        // the throw says what is wrong
        guard !template.trimmingCharacters(in: .whitespaces).isEmpty, (try? ImageReference.template(template)) != nil else {
            throw fail("github.deployment_environment", "must be a Mustache template such as \"pr-{{number}}\", got \"\(template)\"")
        }
        return template
    }
}

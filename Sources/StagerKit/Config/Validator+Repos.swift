import Crypto
import Foundation
import Yams

/// One repository: its image or build, branches, shared host, access.
extension Validator {
    func buildRepo(_ name: String, _ repo: ConfigFile.Repo, dataDir: URL) throws -> StagerConfig.Repo {
        let key = "repos.\(name)"
        let parts = name.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2,
            parts.allSatisfy({ !$0.isEmpty && $0.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || "-_.".contains($0)) } })
        else {
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
            throw fail(
                "\(key).privileged",
                "privileged containers are never run: a preview runs untrusted code; use cap_add for the one capability it needs"
            )
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
            webhookSecret: try secret(
                envKey: repo.webhook_secret_env,
                fileKey: repo.webhook_secret_file,
                keyPrefix: "\(key).webhook_secret",
                defaultEnv: nil,
                requiredWhenNamed: true
            ),
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
            guard !branch.isEmpty, branch.utf8.count <= 255,
                !branch.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F || $0 == " " })
            else {
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
        guard let defaultEnv = repo.default_env else {
            throw fail("\(key).default_env", "is needed with shared_host: the environment served when nothing is chosen, such as pr-12")
        }
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
            result.htpasswdFile = dataDir.appendingPathComponent("access").appendingPathComponent(
                repo.replacingOccurrences(of: "/", with: "__") + ".htpasswd"
            )
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
        let isV4 =
            address.split(separator: ".", omittingEmptySubsequences: false).count == 4
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

import Foundation
import Mustache

/// Why a build gave no image.
public enum BuildError: Error, CustomStringConvertible, Equatable {
    case refusedURL(String)
    case fetchFailed(String)
    case failed(exitCode: Int32)
    /// A file the build reads is a symlink out of the checkout (or passes through one).
    case leavesCheckout(String)

    public var description: String {
        switch self {
        case .refusedURL(let reason): return "the clone URL is not allowed: \(reason)"
        case .fetchFailed(let message): return "git could not fetch the commit: \(message)"
        case .failed(let code): return "docker build failed (exit \(code))"
        case .leavesCheckout(let problem): return "refused to build: \(problem)"
        }
    }
}

/// Builds a PR's image from its head at the exact sha: an empty repository in a fresh work folder under
/// `data_dir/builds`, `git fetch --depth 1 <clone url> <sha>`, a checkout of that sha, `docker build` with
/// the `stager.*` labels, and the folder removed whatever happens. Output goes to the environment's build
/// log as it comes. The token reaches git only through the environment (`GIT_CONFIG_*`), for https URLs on
/// an allowed host, never through argv, the URL or a file.
public struct ImageBuilder: ImageBuilding, Sendable {
    let config: StagerConfig
    let runner: any CommandRunner
    let slots: Slots
    /// Bounds the processes of every build's RUN steps together.
    let cgroup: BuildCgroup

    public init(config: StagerConfig, runner: any CommandRunner, slots: Slots) {
        self.config = config
        self.runner = runner
        self.slots = slots
        self.cgroup = BuildCgroup(config: config, runner: runner)
    }

    public static func logFile(dataDir: URL, key: PullRequestKey) -> URL {
        dataDir.appendingPathComponent("logs/\(ConfigRepoSlug.make(key.repo))-\(key.number).build.log")
    }

    public static func workRoot(dataDir: URL) -> URL {
        dataDir.appendingPathComponent("builds")
    }

    /// `<number>-<sha12>-<repo slug>`: gc reads the PR back from the name to know whether it still builds.
    static func workFolderName(key: PullRequestKey, sha: String) -> String {
        "\(key.number)-\(sha.prefix(12))-\(ConfigRepoSlug.make(key.repo))"
    }

    /// Whether a work folder's name says it belongs to the PR's builds.
    public static func isWorkFolder(_ name: String, of key: PullRequestKey) -> Bool {
        name.hasPrefix("\(key.number)-") && name.hasSuffix("-\(ConfigRepoSlug.make(key.repo))")
    }

    // MARK: Pieces (pure, so tests can read them)

    /// The URL to fetch from, checked against `build.allowed_hosts` and `build.allow_file_urls`.
    public func cloneURL(for env: Environment, repo: StagerConfig.Repo) throws -> URL {
        guard let text = repo.cloneURL ?? env.cloneURL, !text.isEmpty else {
            throw BuildError.refusedURL("the webhook carried no head.repo.clone_url (a deleted fork?) and repos.\(env.repo).clone_url is not set")
        }
        guard let url = URL(string: text), let scheme = url.scheme?.lowercased() else { throw BuildError.refusedURL("\"\(text)\" is not a URL") }
        switch scheme {
        case "https":
            guard url.user == nil, url.password == nil else { throw BuildError.refusedURL("credentials in the URL are refused") }
            guard let host = url.host?.lowercased(), config.build.allowedHosts.map({ $0.lowercased() }).contains(host) else {
                throw BuildError.refusedURL("host \(url.host ?? "(none)") is not in build.allowed_hosts \(config.build.allowedHosts)")
            }
        case "file":
            guard config.build.allowFileURLs else { throw BuildError.refusedURL("file:// URLs need build.allow_file_urls: true") }
        default:
            throw BuildError.refusedURL("only https:// (and file:// when allowed) are fetched, not \(scheme)://")
        }
        return url
    }

    /// `git init`, `git fetch --depth 1 <url> <sha>`, `git checkout --detach FETCH_HEAD`.
    public func fetchCommands(url: URL, sha: String, into folder: URL, token: String?) -> [Command] {
        var fetchEnvironment = ["GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "true"]
        // The token goes to GitHub's own host only, never to another of `build.allowed_hosts`.
        if url.scheme?.lowercased() == "https", let token, url.host?.lowercased() == config.github.webHost.lowercased() {
            // GitHub takes the token as basic auth with any user; as a header it never reaches argv or .git/config.
            let basic = Data("x-access-token:\(token)".utf8).base64EncodedString()
            fetchEnvironment["GIT_CONFIG_COUNT"] = "1"
            fetchEnvironment["GIT_CONFIG_KEY_0"] = "http.extraHeader"
            fetchEnvironment["GIT_CONFIG_VALUE_0"] = "Authorization: Basic \(basic)"
        }
        return [
            Command("git", ["init", "--quiet", folder.path]),
            Command(
                "git",
                ["-C", folder.path, "fetch", "--depth", "1", "--no-tags", "--", url.absoluteString, sha],
                environment: fetchEnvironment,
                timeout: config.build.timeout
            ),
            Command("git", ["-C", folder.path, "-c", "advice.detachedHead=false", "checkout", "--quiet", "--detach", "FETCH_HEAD"]),
        ]
    }

    public func buildCommand(
        tag: String,
        spec: StagerConfig.RepoBuild,
        env: Environment,
        sha: String,
        folder: URL,
        cgroupParent: String? = nil
    ) throws -> Command {
        // The build's RUN steps run the PR's code: bounded in memory (no swap beyond it) and processes, like a preview.
        var arguments = ["build", "--tag", tag, "--force-rm", "--memory", config.build.memory, "--memory-swap", config.build.memory]
        if let cgroupParent { arguments += ["--cgroup-parent", cgroupParent] }
        arguments += ["--file", folder.appendingPathComponent(spec.dockerfile).path]
        let labels = [
            ContainerLabels.managed: "true", ContainerLabels.instance: config.instance, ContainerLabels.repo: env.repo,
            ContainerLabels.sha: sha, ContainerLabels.slug: env.slug,
        ].merging(ContainerLabels.owner(env.key)) { $1 }
        for (key, value) in labels.sorted(by: { $0.key < $1.key }) { arguments += ["--label", "\(key)=\(value)"] }
        let names = PullRequestNames(env, sha: sha)
        for (name, template) in spec.args.sorted(by: { $0.key < $1.key }) {
            arguments += ["--build-arg", "\(name)=\(try ImageReference.template(template).render(encoded: names))"]
        }
        if let target = spec.target { arguments += ["--target", target] }
        arguments += ["--", folder.appendingPathComponent(spec.context).path]
        // The classic builder is what this engine has (no buildx).
        var command = Command(argv: config.dockerCommand, appending: arguments).with(environment: ["DOCKER_BUILDKIT": "0"])
        command.timeout = config.build.timeout
        return command
    }

    // MARK: Running

    /// Waits for a build slot, then fetches and builds; the log says what happened. Throws `BuildError`,
    /// or `CancellationError` when the task is cancelled (the running git or docker is stopped; the caller
    /// removes whatever the build tagged).
    public func build(
        _ env: Environment,
        repo: StagerConfig.Repo,
        spec: StagerConfig.RepoBuild,
        sha: String,
        tag: String,
        token: String?
    ) async throws {
        let log = Self.logFile(dataDir: config.dataDir, key: env.key)
        try Self.startLog(log, "waiting for a build slot for \(sha)\n")
        do {
            try await slots.withSlot { try await fetchAndBuild(env, repo: repo, spec: spec, sha: sha, tag: tag, token: token, log: log) }
        } catch {
            // A stopped git or docker ends with a signal's exit status rather than an error: it was cancelled.
            guard error is CancellationError || Task.isCancelled else { throw error }
            Self.append(log, "\nbuild stopped: a newer commit arrived\n")
            throw CancellationError()
        }
    }

    private func fetchAndBuild(
        _ env: Environment,
        repo: StagerConfig.Repo,
        spec: StagerConfig.RepoBuild,
        sha: String,
        tag: String,
        token: String?,
        log: URL
    ) async throws {
        let url = try cloneURL(for: env, repo: repo)
        let root = Self.workRoot(dataDir: config.dataDir)
        try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        let folder = root.appendingPathComponent(Self.workFolderName(key: env.key, sha: sha))
        try? FileManager.default.removeItem(at: folder)  // a folder left by an interrupted build, if any
        defer { try? FileManager.default.removeItem(at: folder) }  // what stays is gc's (work folders)
        Self.append(log, "fetching \(sha) from \(url.absoluteString)\n")
        for command in fetchCommands(url: url, sha: sha, into: folder, token: token) {
            let code = try await runner.stream(command, to: .file(log, keepLast: config.build.logLimitBytes))
            guard code == 0 else {
                throw BuildError.fetchFailed("`git \(command.arguments.dropFirst(2).prefix(2).joined(separator: " "))` exited \(code)")
            }
        }
        let head = try await runner.run(Command("git", ["-C", folder.path, "rev-parse", "HEAD"])).standardOutput.trimmingCharacters(
            in: .whitespacesAndNewlines
        )
        guard head == sha else { throw BuildError.fetchFailed("checked out \(head), not \(sha)") }
        try CheckoutPaths.requireInside(
            folder,
            [
                ("build.dockerfile", spec.dockerfile), ("build.context", spec.context),
                ("the context's .dockerignore", (spec.context as NSString).appendingPathComponent(".dockerignore")),
            ]
        )
        Self.append(log, "building \(tag)\n")
        let parent: String?
        switch await cgroup.parent() {
        case .success(let name): parent = name
        case .failure(let problem):
            parent = nil
            Self.append(log, "(the build's processes are not bounded: \(problem))\n")
        }
        let code = try await runner.stream(
            try buildCommand(tag: tag, spec: spec, env: env, sha: sha, folder: folder, cgroupParent: parent),
            to: .file(log, keepLast: config.build.logLimitBytes)
        )
        guard code == 0 else { throw BuildError.failed(exitCode: code) }
        Self.append(log, "built \(tag)\n")
    }

    public func logTail(_ key: PullRequestKey, lines: Int) -> String {
        SecretValues(config: config).mask(Self.tail(Self.logFile(dataDir: config.dataDir, key: key), lines: lines))
    }

    /// The last lines of the build log, with anything shaped like a GitHub token masked (the configured
    /// secrets are masked wherever a text leaves serve).
    public static func tail(_ log: URL, lines: Int) -> String {
        guard let text = try? String(contentsOf: log, encoding: .utf8) else { return "" }  // no log yet: no tail
        return SecretMask.mask(text.split(separator: "\n", omittingEmptySubsequences: false).suffix(lines).joined(separator: "\n"), secrets: [])
    }

    static func startLog(_ log: URL, _ first: String) throws {
        try FileManager.default.createDirectory(
            at: log.deletingLastPathComponent(),
            withIntermediateDirectories: true,
            attributes: [.posixPermissions: 0o700]
        )
        guard FileManager.default.createFile(atPath: log.path, contents: Data(first.utf8), attributes: [.posixPermissions: 0o600]) else {
            throw CocoaError(.fileWriteUnknown, userInfo: [NSFilePathErrorKey: log.path])
        }
    }

    /// Stager's own lines in the build log. The log is a courtesy: the build's result never depends on it,
    /// so a line that cannot be written is skipped.
    static func append(_ log: URL, _ text: String) {
        do {
            let handle = try FileHandle(forWritingTo: log)
            defer { try? handle.close() }  // closing after the write cannot lose it
            try handle.seekToEnd()
            try handle.write(contentsOf: Data(text.utf8))
        } catch {
            return
        }
    }
}

/// The docker repository name made from a GitHub repository's (`acme/Web` → `acme-web`).
public enum ConfigRepoSlug {
    public static func make(_ name: String) -> String {
        String(name.lowercased().map { $0.isASCII && ($0.isLetter || $0.isNumber || "._".contains($0)) ? $0 : "-" })
    }
}

extension Command {
    func with(environment extra: [String: String]) -> Command {
        var copy = self
        copy.environment.merge(extra) { _, new in new }
        return copy
    }
}

/// The files a build reads from a PR's checkout must stay in it: the docker CLI follows a Dockerfile or a
/// context that is a symlink (to `/proc/self/environ`, to `/`), and would send what it finds to the build,
/// whose error lands in the PR's comment.
enum CheckoutPaths {
    /// Each `(what, relative path)` that exists must resolve, through every symlink, to a place inside `root`.
    static func requireInside(_ root: URL, _ paths: [(what: String, path: String)]) throws {
        guard let base = realPath(root.path) else { throw BuildError.leavesCheckout("the checkout \(root.path) cannot be resolved") }
        for (what, path) in paths {
            let full = root.appendingPathComponent(path).path
            var info = stat()
            // Not there at all: docker says so itself, and nothing outside is read.
            guard lstat(full, &info) == 0 || hasSymlinkOnTheWay(root: root, path: path) else { continue }
            guard let resolved = realPath(full), resolved == base || resolved.hasPrefix(base + "/") else {
                throw BuildError.leavesCheckout("\(what) (\(path)) is a symlink, or passes through one, that leaves the checkout")
            }
        }
    }

    /// Whether some folder on the way to `path` is a symlink (a dangling one makes the path itself missing).
    private static func hasSymlinkOnTheWay(root: URL, path: String) -> Bool {
        var current = root
        for component in path.split(separator: "/") {
            current.appendPathComponent(String(component))
            var info = stat()
            if lstat(current.path, &info) == 0, (info.st_mode & S_IFMT) == S_IFLNK { return true }
        }
        return false
    }

    private static func realPath(_ path: String) -> String? {
        guard let resolved = realpath(path, nil) else { return nil }
        defer { free(resolved) }
        return String(cString: resolved)
    }
}

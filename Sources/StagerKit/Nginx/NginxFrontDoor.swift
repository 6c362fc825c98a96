import Foundation
import Logging
import Mustache

/// Where one environment's traffic goes.
public struct Route: Sendable, Equatable {
    public var key: PullRequestKey
    public var slug: String
    public var hostName: String
    public var upstreamPort: Int
    /// The address of the upstream: loopback, or the swarm node that runs the task.
    public var upstreamHost: String
    public var containerName: String
    public var sha: String
    /// The raw branch name; templates get it only through `NginxEscaping`.
    public var branch: String
    public var access: StagerConfig.Access
    /// The environment sleeps: requests go to serve's wake path, which hands them back once it is awake.
    public var asleep: Bool

    /// How the shared host names it: `pr-<N>`, or its branch's slug (`Environment.name`).
    public var environmentName: String { Environment.name(of: key, branch: branch) }

    public init(
        key: PullRequestKey,
        slug: String,
        hostName: String,
        upstreamPort: Int,
        containerName: String,
        sha: String,
        branch: String = "",
        access: StagerConfig.Access = .open,
        asleep: Bool = false,
        upstreamHost: String = Upstream.loopback
    ) {
        self.upstreamHost = upstreamHost
        self.asleep = asleep
        self.branch = branch
        self.access = access
        self.key = key
        self.slug = slug
        self.hostName = hostName
        self.upstreamPort = upstreamPort
        self.containerName = containerName
        self.sha = sha
    }
}

/// Where a vhost sends its requests, as its first line records it.
public struct RoutedUpstream: Sendable, Equatable {
    public var container: String
    public var port: Int?
    /// The vhost sends requests to the wake path (the container sleeps).
    public var asleep = false
    /// The address it routes to; nil for loopback (and for vhosts written before swarm).
    public var host: String? = nil
}

public enum NginxError: Error, CustomStringConvertible, Equatable {
    /// The test command refused the configuration; the vhost was rolled back.
    case rejected(String)
    /// nginx could not be reloaded (not running, or not answering its signal) or did not route in time: the
    /// vhost was rolled back and the change is worth retrying, like an engine outage.
    case reloadFailed(String)
    case unsafePath(String)
    /// A vhost file could not be written or removed (permissions, a full disk): nothing of the change was kept.
    case cannotWrite(path: String, reason: String)

    /// A change that will fail the same way whenever it is tried again.
    public var isPermanent: Bool {
        if case .reloadFailed = self { return false }
        return true
    }

    public var description: String {
        switch self {
        case .rejected(let message): return "nginx rejected the vhost (rolled back): \(message)"
        case .reloadFailed(let message): return "nginx reload failed: \(message)"
        case .unsafePath(let path): return "refusing to write outside the sites folder: \(path)"
        case .cannotWrite(let path, let reason): return "cannot write \(path): \(reason)"
        }
    }
}

/// The vhost files in `nginx.sites_dir`, and nginx's test and reload. Changes are batched: a change that
/// finds nginx idle goes at once, and those arriving while a batch is applied or within `nginx.batch_delay`
/// after it are written together and cost one test and one reload;
/// when the test rejects a batch, each change is tried on its own so only the bad one fails and is rolled
/// back. An actor, so batches never overlap.
public actor NginxFrontDoor: FrontDoor {
    /// First line of every file Stager writes; anything else in the folder is not Stager's.
    static let markerPrefix = "# stager-vhost "

    /// One caller's files to change (a new content, or nil to remove), answered once they are live.
    private struct Request {
        var files: [(slug: String, content: String?)]
        var done: CheckedContinuation<Void, any Error>
    }

    let config: StagerConfig.Nginx
    let wakePath: WakePath
    /// The repositories' shared hosts, written again in each batch that changes their environments.
    let shared: SharedHostVhost
    private let template: MustacheTemplate
    let runner: any CommandRunner
    let logger: Logger
    let metrics: StagerMetrics?
    /// Asks nginx itself whether a change is live.
    let probe: any Prober
    public internal(set) var reloadCount = 0
    /// nginx's test refused `nginx.activity_file`.
    var activityRefused = false
    private var pending: [Request] = []
    private var flusher: Task<Void, Never>?

    public init(
        config: StagerConfig.Nginx,
        wakePath: WakePath,
        template: MustacheTemplate,
        runner: any CommandRunner,
        probe: any Prober = HTTPProbe(),
        metrics: StagerMetrics? = nil,
        shared: SharedHostVhost = .none,
        logger: Logger
    ) {
        self.config = config
        self.shared = shared
        self.wakePath = wakePath
        self.probe = probe
        self.template = template
        self.runner = runner
        self.metrics = metrics
        self.logger = logger
    }

    // MARK: Reading

    /// The container and loopback port the vhost sends the slug's requests to; nil without a vhost file.
    public func routed(slug: String) -> RoutedUpstream? {
        // An invalid slug or a symlink in its place is never a vhost Stager wrote.
        guard let path = try? file(slug) else { return nil }
        let text: String
        do {
            text = try String(contentsOf: path, encoding: .utf8)
        } catch {
            // Only a missing file routes nowhere: one that cannot be read routes somewhere unknown, and the
            // planner writes it again (or removes it, for an environment that is gone).
            return FileManager.default.fileExists(atPath: path.path) ? RoutedUpstream(container: "", port: 0) : nil
        }
        guard let marker = Self.marker(in: text), let container = marker["container"] else { return nil }
        // A sleeping vhost that names another serve address (server.listen changed) routes nowhere useful: it
        // reads as not asleep, so the planner writes it again.
        // A vhost an older Stager wrote (no keys, an app's X-Accel headers obeyed) reads as routed to port 0
        // and as not asleep: the planner writes it again.
        let current = marker["v"] == Self.version
        return RoutedUpstream(
            container: container,
            port: current ? marker["port"].flatMap(Int.init) : 0,
            asleep: current && marker["asleep"] == "1" && marker["wake"] == wakePath.address,
            host: marker["host"].flatMap { $0 == Upstream.loopback ? nil : $0 }
        )
    }

    /// Slugs of the vhost files Stager wrote, and names of the other files it leaves alone.
    public func inventory() -> (managed: [String], foreign: [String]) {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: config.sitesDir.path)) ?? []  // no sites folder yet: nothing written
        var managed: [String] = []
        var foreign: [String] = []
        for name in names.sorted() where !name.hasPrefix(".") {
            // an unreadable file is not ours: listed as foreign
            let text = try? String(contentsOf: config.sitesDir.appendingPathComponent(name), encoding: .utf8)
            if name.hasSuffix(".conf"), let text, Self.marker(in: text) != nil {
                managed.append(String(name.dropLast(".conf".count)))
            } else {
                foreign.append(name)
            }
        }
        return (managed, foreign)
    }

    // MARK: Changing

    public func render(_ route: Route) throws -> String {
        // Every value here is validated (a DNS label, a checked domain, integers, a name we made, checked
        // addresses and paths) or escaped for nginx (the branch).
        let context = VhostContext(
            listen: config.listen,
            host: route.hostName,
            upstreamPort: route.upstreamPort,
            upstreamHost: route.upstreamHost,
            container: route.containerName,
            slug: route.slug,
            repo: route.key.repo,
            number: route.key.number,
            branch: NginxEscaping.quoted(route.branch),
            allowIps: route.access.allowIPs,
            hasAllowIps: !route.access.allowIPs.isEmpty,
            htpasswdFile: route.access.htpasswdFile?.path ?? "",
            hasHtpasswd: route.access.htpasswdFile != nil,
            asleep: route.asleep,
            wakeAddress: wakePath.address,
            wakePath: wakePath.path(slug: route.slug),
            wakeToken: wakePath.keys.wake(slug: route.slug),
            handBackKey: wakePath.keys.handBack(slug: route.slug),
            probeKey: wakePath.keys.probe,
            hopKey: wakePath.keys.hop,
            id: route.slug.replacingOccurrences(of: "-", with: "_"),
            wakeReadTimeout: "\(Int(wakePath.holdFor.seconds.rounded(.up)) + 5)s"
        )
        let marker =
            "\(Self.markerPrefix)slug=\(route.slug) container=\(route.containerName) port=\(route.upstreamPort) sha=\(route.sha) v=\(Self.version)"
            + (route.upstreamHost == Upstream.loopback ? "" : " host=\(route.upstreamHost)")
            + (route.asleep ? " asleep=1 wake=\(wakePath.address)" : "") + " repo=\(route.key.repo) env=\(route.environmentName)\n"
        return marker + (try template.render(encoded: context))
    }

    /// Writes the vhost, tests and reloads nginx; a rejected configuration is rolled back.
    public func apply(_ route: Route) async throws {
        try await change([(route.slug, try render(route))])
    }

    /// Removes several vhosts with a single test and reload.
    public func remove(slugs: [String]) async throws {
        guard !slugs.isEmpty else { return }
        try await change(slugs.map { ($0, nil) })
    }

    /// Reloads nginx when a change to the sites folder may not have been reloaded (the process was killed
    /// between the write and the reload, or nginx was down): serve calls it at start-up and each reconcile,
    /// so what nginx has loaded matches the folder. True when it reloaded.
    @discardableResult
    public func reloadIfOwed() async throws -> Bool {
        // Its reload, when it writes, also takes in whatever else was owed.
        let wroteActivity = try await writeActivityConfiguration()
        guard FileManager.default.fileExists(atPath: owedMarker.path) || sharedHostsStale() else { return wroteActivity }
        try await change([])
        return true
    }

    /// Written before a batch touches the sites folder and removed once nginx reloaded it. A dot file: the
    /// include of `*.conf` never reads it, and `inventory` passes over it.
    var owedMarker: URL { config.sitesDir.appendingPathComponent(".stager-reload-owed") }

    private func change(_ files: [(slug: String, content: String?)]) async throws {
        for file in files { _ = try self.file(file.slug) }
        try await withCheckedThrowingContinuation { (done: CheckedContinuation<Void, any Error>) in
            pending.append(Request(files: files, done: done))
            if flusher == nil {
                flusher = Task { await self.flushWhilePending() }
            }
        }
    }

    /// Applies what is pending at once (a lone change waits for nothing), then keeps collecting for the
    /// batch delay after each batch: changes that arrive while nginx tests and reloads, or right after,
    /// go together in the next one. Stops when a delay passes with nothing new.
    private func flushWhilePending() async {
        while !pending.isEmpty {
            let batch = pending
            pending.removeAll()
            await apply(batch)
            try? await Task.sleep(for: config.batchDelay)  // cancelled only with the process
        }
        flusher = nil
    }

    private func apply(_ batch: [Request]) async {
        do {
            try FileManager.default.createDirectory(at: config.sitesDir, withIntermediateDirectories: true)
            try Data().write(to: owedMarker)
        } catch {
            let failure = NginxError.cannotWrite(path: owedMarker.path, reason: "\(error)")
            for request in batch { request.done.resume(throwing: failure) }
            return
        }
        var written: [(URL, Data?)]
        do {
            written = try write(batch.flatMap(\.files))
        } catch {
            // Someone's file cannot be written: found one by one, like a rejected vhost.
            return await applyOneByOne(batch)
        }
        let sharedWrites = writeSharedHosts()
        written += sharedWrites
        do {
            // Taking a vhost away cannot make the rest invalid: a batch of removals skips the test.
            if sharedWrites.isEmpty, batch.allSatisfy({ $0.files.allSatisfy { $0.content == nil } }) {
                try await reload()
            } else {
                try await testAndReload()
            }
            for request in batch { request.done.resume() }
        } catch NginxError.rejected(let message) where batch.count == 1 {
            restore(written)
            batch[0].done.resume(throwing: NginxError.rejected(message))
        } catch NginxError.rejected {
            restore(written)
            await applyOneByOne(batch)
        } catch {
            // nginx did not take it: the folder goes back to what nginx has loaded, and the callers retry.
            restore(written)
            for request in batch { request.done.resume(throwing: error) }
        }
    }

    /// Someone's vhost is bad or cannot be written: each request is written and tested alone, the bad ones
    /// fail and are rolled back, and the good ones share a reload.
    private func applyOneByOne(_ batch: [Request]) async {
        var accepted: [Request] = []
        var acceptedWrites: [(URL, Data?)] = []
        for request in batch {
            let mine: [(URL, Data?)]
            do {
                mine = try write(request.files)
            } catch {
                request.done.resume(throwing: error)
                continue
            }
            let problem: String?
            do {
                let test = try await runner.run(Command(argv: config.testCommand))
                problem = test.succeeded ? nil : test.message
            } catch {
                problem = "the test command could not run: \(error)"
            }
            if let problem {
                restore(mine)
                request.done.resume(throwing: NginxError.rejected(problem))
            } else {
                accepted.append(request)
                acceptedWrites += mine
            }
        }
        guard !accepted.isEmpty else { return }
        let sharedWrites = writeSharedHosts()
        acceptedWrites += sharedWrites
        do {
            if sharedWrites.isEmpty { try await reload() } else { try await testAndReload() }
            for request in accepted { request.done.resume() }
        } catch {
            restore(acceptedWrites)
            for request in accepted { request.done.resume(throwing: error) }
        }
    }

}

/// Escaping made for nginx's configuration language, not HTML: a value meant for a double-quoted string
/// keeps letters, digits and `-._/+@:=,`, and every other character (quotes, `;`, braces, `$`, `#`,
/// backslashes, spaces, unicode) becomes `_`, so nothing can end the string, start a directive or a
/// variable, or open a comment.
public enum NginxEscaping {
    public static func quoted(_ value: String) -> String {
        String(
            value.unicodeScalars.prefix(200).map { scalar in
                scalar.isASCII && (CharacterSet.alphanumerics.contains(scalar) || "-._/+@:=,".unicodeScalars.contains(scalar))
                    ? Character(scalar) : "_"
            }
        )
    }
}

/// What the vhost template (built in, or `templates_dir`'s) names, in snake_case: `{{upstream_port}}`, `{{#allow_ips}}`….
struct VhostContext: Encodable {
    var listen: String
    var host: String
    var upstreamPort: Int
    var upstreamHost: String
    var container: String
    var slug: String
    var repo: String
    var number: Int
    var branch: String
    var allowIps: [String]
    var hasAllowIps: Bool
    var htpasswdFile: String
    var hasHtpasswd: Bool
    var asleep: Bool
    var wakeAddress: String
    var wakePath: String
    var wakeToken: String
    var handBackKey: String
    var probeKey: String
    var hopKey: String
    var id: String
    var wakeReadTimeout: String
}

import Foundation
import Logging
import Mustache

/// Where one environment's traffic goes.
public struct Route: Sendable, Equatable {
    public var key: PullRequestKey
    public var slug: String
    public var hostName: String
    public var upstreamPort: Int
    public var containerName: String
    public var sha: String
    /// The raw branch name; templates get it only through `NginxEscaping`.
    public var branch: String
    public var access: StagerConfig.Access

    public init(key: PullRequestKey, slug: String, hostName: String, upstreamPort: Int, containerName: String, sha: String,
                branch: String = "", access: StagerConfig.Access = .open) {
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
}

public enum NginxError: Error, CustomStringConvertible, Equatable {
    /// The test command refused the configuration; the vhost was rolled back.
    case rejected(String)
    case reloadFailed(String)
    case unsafePath(String)

    public var description: String {
        switch self {
        case .rejected(let message): return "nginx rejected the vhost (rolled back): \(message)"
        case .reloadFailed(let message): return "nginx reload failed: \(message)"
        case .unsafePath(let path): return "refusing to write outside the sites folder: \(path)"
        }
    }
}

/// The vhost files in `nginx.sites_dir`, and nginx's test and reload. An actor, so one change is written,
/// tested and reloaded (or rolled back) before the next begins.
public actor NginxFrontDoor {
    /// First line of every file Stager writes; anything else in the folder is not Stager's.
    static let markerPrefix = "# stager-vhost "

    private let config: StagerConfig.Nginx
    private let template: MustacheTemplate
    private let runner: any CommandRunner
    private let logger: Logger
    public private(set) var reloadCount = 0

    public init(config: StagerConfig.Nginx, template: MustacheTemplate, runner: any CommandRunner, logger: Logger) {
        self.config = config
        self.template = template
        self.runner = runner
        self.logger = logger
    }

    // MARK: Reading

    /// The container the slug's vhost routes to, nil when Stager has no vhost for it.
    public func routedContainer(slug: String) -> String? {
        routed(slug: slug)?.container
    }

    /// The container and loopback port the vhost sends the slug's requests to; nil without a vhost file.
    public func routed(slug: String) -> RoutedUpstream? {
        guard let text = try? String(contentsOf: file(slug), encoding: .utf8), let marker = Self.marker(in: text),
              let container = marker["container"] else { return nil }
        return RoutedUpstream(container: container, port: marker["port"].flatMap(Int.init))
    }

    /// Slugs of the vhost files Stager wrote, and names of the other files it leaves alone.
    public func inventory() -> (managed: [String], foreign: [String]) {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: config.sitesDir.path)) ?? []
        var managed: [String] = []
        var foreign: [String] = []
        for name in names.sorted() where !name.hasPrefix(".") {
            let text = try? String(contentsOf: config.sitesDir.appendingPathComponent(name), encoding: .utf8)
            if name.hasSuffix(".conf"), let text, Self.marker(in: text) != nil {
                managed.append(String(name.dropLast(".conf".count)))
            } else {
                foreign.append(name)
            }
        }
        return (managed, foreign)
    }

    static func marker(in text: String) -> [String: String]? {
        guard let firstLine = text.split(separator: "\n", maxSplits: 1).first, firstLine.hasPrefix(markerPrefix) else { return nil }
        var fields: [String: String] = [:]
        for pair in firstLine.dropFirst(markerPrefix.count).split(separator: " ") {
            let parts = pair.split(separator: "=", maxSplits: 1)
            if parts.count == 2 { fields[String(parts[0])] = String(parts[1]) }
        }
        return fields
    }

    // MARK: Changing

    public func render(_ route: Route) -> String {
        // Every value here is validated (a DNS label, a checked domain, integers, a name we made, checked
        // addresses and paths) or escaped for nginx (the branch).
        let context: [String: Any] = [
            "listen": config.listen, "host": route.hostName, "upstream_port": route.upstreamPort,
            "container": route.containerName, "slug": route.slug, "repo": route.key.repo, "number": route.key.number,
            "branch": NginxEscaping.quoted(route.branch),
            "allow_ips": route.access.allowIPs, "has_allow_ips": !route.access.allowIPs.isEmpty,
            "htpasswd_file": route.access.htpasswdFile?.path ?? "", "has_htpasswd": route.access.htpasswdFile != nil,
        ]
        let marker = "\(Self.markerPrefix)slug=\(route.slug) container=\(route.containerName) port=\(route.upstreamPort) sha=\(route.sha)\n"
        return marker + template.render(context)
    }

    /// Writes the vhost, tests and reloads nginx; a rejected configuration is rolled back.
    public func apply(_ route: Route) async throws {
        try await change(slug: route.slug, to: render(route))
    }

    /// Removes the slug's vhost and reloads nginx.
    public func remove(slug: String) async throws {
        try await change(slug: slug, to: nil)
    }

    /// Removes several vhosts with a single test and reload.
    public func remove(slugs: [String]) async throws {
        guard !slugs.isEmpty else { return }
        for slug in slugs { try? FileManager.default.removeItem(at: try file(slug)) }
        try await testAndReload()
    }

    private func change(slug: String, to content: String?) async throws {
        let target = try file(slug)
        let previous = try? Data(contentsOf: target)
        if let content {
            try writeAtomically(Data(content.utf8), to: target)
        } else {
            guard previous != nil else { return }
            try FileManager.default.removeItem(at: target)
        }
        do {
            try await testAndReload()
        } catch let error as NginxError {
            if case .rejected = error {
                // Put back what was there, so every other environment keeps serving.
                if let previous { try? writeAtomically(previous, to: target) } else { try? FileManager.default.removeItem(at: target) }
            }
            throw error
        }
    }

    private func testAndReload() async throws {
        let test = try await runner.run(Command(argv: config.testCommand))
        guard test.succeeded else { throw NginxError.rejected(test.message) }
        let reload = try await runner.run(Command(argv: config.reloadCommand))
        guard reload.succeeded else { throw NginxError.reloadFailed(reload.message) }
        reloadCount += 1
    }

    private func file(_ slug: String) throws -> URL {
        guard Slug.isValidLabel(slug) else { throw NginxError.unsafePath(slug) }
        let file = config.sitesDir.appendingPathComponent("\(slug).conf")
        // A symlink planted in the sites folder could point anywhere: never read through it or replace it.
        if (try? FileManager.default.destinationOfSymbolicLink(atPath: file.path)) != nil { throw NginxError.unsafePath(file.path) }
        return file
    }

    private func writeAtomically(_ data: Data, to target: URL) throws {
        try FileManager.default.createDirectory(at: config.sitesDir, withIntermediateDirectories: true)
        // The temporary name does not end in .conf, so nginx's include never sees a half-written file.
        let temporary = config.sitesDir.appendingPathComponent(".\(target.lastPathComponent).\(UUID().uuidString).tmp")
        // Readable by its owner and group only (nginx's master reads it as root), from the first byte on.
        guard FileManager.default.createFile(atPath: temporary.path, contents: data, attributes: [.posixPermissions: 0o640]) else {
            throw CocoaError(.fileWriteUnknown, userInfo: [NSFilePathErrorKey: temporary.path])
        }
        if rename(temporary.path, target.path) != 0 {
            try? FileManager.default.removeItem(at: temporary)
            throw CocoaError(.fileWriteUnknown, userInfo: [NSFilePathErrorKey: target.path])
        }
    }
}

/// Escaping made for nginx's configuration language, not HTML: a value meant for a double-quoted string
/// keeps letters, digits and `-._/+@:=,`, and every other character (quotes, `;`, braces, `$`, `#`,
/// backslashes, spaces, unicode) becomes `_`, so nothing can end the string, start a directive or a
/// variable, or open a comment.
public enum NginxEscaping {
    public static func quoted(_ value: String) -> String {
        String(value.unicodeScalars.prefix(200).map { scalar in
            scalar.isASCII && (CharacterSet.alphanumerics.contains(scalar) || "-._/+@:=,".unicodeScalars.contains(scalar)) ? Character(scalar) : "_"
        })
    }
}

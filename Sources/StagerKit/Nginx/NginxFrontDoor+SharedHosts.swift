import Foundation
import Logging
import Mustache

extension NginxFrontDoor {
    // MARK: Shared hosts

    /// Each shared host as its repository's environments with a vhost make it now, and the files of shared
    /// hosts no longer configured (nil). Without shared hosts configured, only the folder's names are read.
    func sharedHostFiles() -> [(URL, String?)] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: config.sitesDir.path)) ?? []  // no folder yet: nothing written
        let wanted = Set(shared.sites.map(shared.fileName))
        let routed = shared.sites.isEmpty ? [:] : Self.routedEnvironments(in: config.sitesDir, names: names)
        var files = shared.sites.map { site in
            (config.sitesDir.appendingPathComponent(shared.fileName(site)), Optional(shared.render(site, environments: routed[site.repo] ?? [])))
        }
        for name in names where name.hasPrefix(SharedHostVhost.filePrefix) && name.hasSuffix(".conf") && !wanted.contains(name) {
            let file = config.sitesDir.appendingPathComponent(name)
            // Only a file Stager wrote goes: one of someone else's that happens to have this name stays.
            if (try? String(contentsOf: file, encoding: .utf8))?.hasPrefix(SharedHostVhost.markerPrefix) == true { files.append((file, nil)) }
        }
        return files
    }

    /// The environments with a vhost in `sitesDir` (among `names`, default: all its files), by repository.
    static func routedEnvironments(in sitesDir: URL, names: [String]? = nil) -> [String: [SharedHostVhost.Routed]] {
        let names = names ?? (try? FileManager.default.contentsOfDirectory(atPath: sitesDir.path)) ?? []  // no folder yet: nothing routed
        var routed: [String: [SharedHostVhost.Routed]] = [:]
        for name in names where name.hasSuffix(".conf") {
            guard let text = try? String(contentsOf: sitesDir.appendingPathComponent(name), encoding: .utf8),  // unreadable: not ours
                let marker = marker(in: text), let repo = marker["repo"], let env = marker["env"], let slug = marker["slug"]
            else { continue }
            routed[repo, default: []].append(.init(name: env, slug: slug))
        }
        return routed
    }

    /// Whether a shared host's file says something else than it should (serve started with another configuration).
    func sharedHostsStale() -> Bool {
        sharedHostFiles().contains { target, content in (try? String(contentsOf: target, encoding: .utf8)) != content }  // unreadable: stale
    }

    /// Writes the shared hosts that changed; what was there before, for a rollback. A shared host that cannot
    /// be written is logged and left as it was: it never fails an environment's change.
    func writeSharedHosts() -> [(URL, Data?)] {
        var before: [(URL, Data?)] = []
        for (target, content) in sharedHostFiles() {
            let previous = try? Data(contentsOf: target)  // missing: nothing to restore
            guard previous.map({ String(decoding: $0, as: UTF8.self) }) != content else { continue }
            do {
                if let content { try writeAtomically(Data(content.utf8), to: target) } else { try FileManager.default.removeItem(at: target) }
                before.append((target, previous))
            } catch {
                logger.error("cannot write a shared host", metadata: ["file": "\(target.path)", "error": "\(error)"])
            }
        }
        return before
    }

    /// Writes or removes each file and returns what was there before, for a rollback. A file that cannot be
    /// written or removed undoes what this call did and throws, naming it.
    func write(_ files: [(slug: String, content: String?)]) throws -> [(URL, Data?)] {
        var before: [(URL, Data?)] = []
        for (slug, content) in files {
            let target: URL
            do {
                target = try file(slug)
            } catch {
                restore(before)
                throw error
            }
            do {
                let previous = FileManager.default.fileExists(atPath: target.path) ? try Data(contentsOf: target) : nil
                if let content {
                    try writeAtomically(Data(content.utf8), to: target)
                } else if previous != nil {
                    try FileManager.default.removeItem(at: target)
                } else {
                    continue
                }
                before.append((target, previous))
            } catch {
                restore(before)
                throw NginxError.cannotWrite(path: target.path, reason: "\(error)")
            }
        }
        return before
    }

    /// Puts back what was there, newest change first, so every other environment keeps serving.
    func restore(_ written: [(URL, Data?)]) {
        for (target, previous) in written.reversed() {
            do {
                if let previous { try writeAtomically(previous, to: target) } else { try FileManager.default.removeItem(at: target) }
            } catch {
                logger.error("cannot roll back a vhost", metadata: ["file": "\(target.path)", "error": "\(error)"])
            }
        }
    }

    func testAndReload() async throws {
        let test = try await runner.run(Command(argv: config.testCommand))
        guard test.succeeded else { throw NginxError.rejected(test.message) }
        try await reload()
    }

    func reload() async throws {
        let reload: CommandResult
        do {
            reload = try await runner.run(Command(argv: config.reloadCommand))
        } catch CommandError.couldNotStart(_, let reason) {
            throw NginxError.reloadFailed(reason)
        }
        guard reload.succeeded else { throw NginxError.reloadFailed(reload.message) }
        reloadCount += 1
        metrics?.nginxReload()
        guard FileManager.default.fileExists(atPath: owedMarker.path) else { return }
        do {
            try FileManager.default.removeItem(at: owedMarker)
        } catch {
            logger.warning("cannot clear the reload marker", metadata: ["file": "\(owedMarker.path)", "error": "\(error)"])
        }
    }

    /// Writes `nginx.activity_file` when it is missing or says something else, tests and reloads; true when
    /// it did. nginx's test refusing it (an nginx without syslog) removes it again: serve works on, and only
    /// `last_request_at` stays empty.
    func writeActivityConfiguration() async throws -> Bool {
        // Refused once, it is not offered to nginx again at every reconcile; a restart of serve tries again.
        guard !activityRefused else { return false }
        let target = config.activityFile
        // An unreadable file is as good as missing: it is written again.
        guard (try? String(contentsOf: target, encoding: .utf8)) != activityConfiguration else { return false }
        do {
            try writeAtomically(Data(activityConfiguration.utf8), to: target)
        } catch {
            throw NginxError.cannotWrite(path: target.path, reason: "\(error)")
        }
        do {
            try await testAndReload()
        } catch NginxError.rejected(let message) {
            activityRefused = true
            logger.error(
                "nginx refused the activity lines; last_request_at will not move",
                metadata: ["file": "\(target.path)", "nginx": "\(message)"]
            )
            do {
                try FileManager.default.removeItem(at: target)
            } catch {
                logger.error("cannot remove the refused activity file", metadata: ["file": "\(target.path)", "error": "\(error)"])
            }
        }
        return true
    }

    /// http-level lines, beside any access_log of nginx's own configuration (several logs on one level all
    /// write): each request's server name goes to serve as a syslog datagram on loopback, which records it
    /// as the environment's `last_request_at`. An `access_log off;` in nginx's http block would cancel it.
    var activityConfiguration: String {
        let host = config.activityHost.contains(":") ? "[\(config.activityHost)]" : config.activityHost
        return """
            # Written by Stager: sends the server name of each request to stager serve (last_request_at). The
            # server's name, not the Host header: a request nginx's default server answers is no preview's.
            log_format stager_activity '$server_name';
            access_log syslog:server=\(host):\(config.activityPort),tag=stager,nohostname stager_activity;

            """
    }

    func file(_ slug: String) throws -> URL {
        guard Slug.isValidLabel(slug) else { throw NginxError.unsafePath(slug) }
        let file = config.sitesDir.appendingPathComponent("\(slug).conf")
        // A symlink planted in the sites folder could point anywhere: never read through it or replace it.
        // throws when it is not a link, which is what we want
        if (try? FileManager.default.destinationOfSymbolicLink(atPath: file.path)) != nil { throw NginxError.unsafePath(file.path) }
        return file
    }

    func writeAtomically(_ data: Data, to target: URL) throws {
        let folder = target.deletingLastPathComponent()
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        // The temporary name does not end in .conf, so nginx's include never sees a half-written file.
        let temporary = folder.appendingPathComponent(".\(target.lastPathComponent).\(UUID().uuidString).tmp")
        // Readable by its owner and group only (nginx's master reads it as root), from the first byte on.
        guard FileManager.default.createFile(atPath: temporary.path, contents: data, attributes: [.posixPermissions: 0o640]) else {
            throw CocoaError(.fileWriteUnknown, userInfo: [NSFilePathErrorKey: temporary.path])
        }
        if rename(temporary.path, target.path) != 0 {
            try? FileManager.default.removeItem(at: temporary)  // cleanup after the error being thrown
            throw CocoaError(.fileWriteUnknown, userInfo: [NSFilePathErrorKey: target.path])
        }
    }
}

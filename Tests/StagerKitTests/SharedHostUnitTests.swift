import Foundation
import Logging
import StagerTestSupport
import Testing

@testable import StagerKit

/// The shared host's configuration and the vhost nginx gets for it (what nginx makes of it: the
/// end-to-end suite `the shared host`).
@Suite("Shared host: units")
struct SharedHostUnitTests {
    func refused(_ yaml: String) -> String? { TestConfig.refusedKey(yaml) }

    @Test func configuration() throws {
        let config = try TestConfig.load(
            """
            repos:
              acme/web: {image: "x", shared_host: acme-web, default_env: pr-12, canary: {env: pr-14, percent: 12.5}}
              acme/api: {image: "y"}
            """,
            in: try TestConfig.temporaryDirectory("shared-config")
        )
        let shared = try #require(config.repo("acme/web")?.sharedHost)
        #expect(shared.name == "acme-web" && shared.defaultEnv == "pr-12" && shared.canary == .init(env: "pr-14", percent: 12.5))
        #expect(config.reservedSlugs == ["acme-web", "stager-shared-acme-web"])
        #expect(refused("repos:\n  a/b: {image: x, shared_host: Bad_Name, default_env: pr-1}\n") == "repos.a/b.shared_host")
        #expect(refused("repos:\n  a/b: {image: x, shared_host: ab}\n") == "repos.a/b.default_env")
        #expect(refused("repos:\n  a/b: {image: x, shared_host: ab, default_env: main}\n") == "repos.a/b.default_env")
        #expect(refused("repos:\n  a/b: {image: x, shared_host: ab, default_env: pr-01}\n") == "repos.a/b.default_env")
        #expect(refused("repos:\n  a/b: {image: x, default_env: pr-1}\n") == "repos.a/b.shared_host")
        #expect(
            refused("repos:\n  a/b: {image: x, shared_host: ab, default_env: pr-1, canary: {env: pr-2, percent: 101}}\n")
                == "repos.a/b.canary.percent"
        )
        #expect(
            refused("repos:\n  a/b: {image: x, shared_host: ab, default_env: pr-1, canary: {env: \"x;y\", percent: 5}}\n") == "repos.a/b.canary.env"
        )
        #expect(
            refused("repos:\n  a/b: {image: x, shared_host: ab, default_env: pr-1}\n  c/d: {image: y, shared_host: ab, default_env: pr-2}\n")
                == "repos.c/d.shared_host"
        )
    }

    static let site = SharedHostVhost.Site(
        repo: "acme/web",
        host: .init(name: "acme-web", defaultEnv: "pr-1", canary: .init(env: "pr-3", percent: 10)),
        access: .init(htpasswdFile: nil, generatedHtpasswd: nil, allowIPs: ["10.0.0.0/8"])
    )
    let vhost = SharedHostVhost(sites: [Self.site], domain: "preview.example.com", listen: "0.0.0.0:80", nginxAddress: "127.0.0.1:80")

    @Test func theVhostMapsChoicesToRoutedEnvironmentsOnly() {
        let text = vhost.render(Self.site, environments: [.init(name: "pr-1", slug: "main-ish"), .init(name: "pr-3", slug: "canary-x")])
        #expect(text.hasPrefix("# stager-shared repo=acme/web host=acme-web\n"))
        #expect(text.contains("server_name acme-web.preview.example.com;"))
        #expect(text.contains("    \"pr-3\" \"canary-x.preview.example.com\";"))
        #expect(text.contains("split_clients \"${request_id}\" $stager_canary_acme_web {\n    10% \"pr-3\";\n    * \"pr-1\";"))
        #expect(text.contains("default $stager_canary_acme_web;") && text.contains("add_header Set-Cookie $stager_pin_acme_web;"))
        #expect(text.contains("allow 10.0.0.0/8;\n        deny all;"))
        #expect(text.contains("proxy_pass http://127.0.0.1:80;") && text.contains("add_header X-Stager-Env $stager_env_acme_web always;"))

        // The canary not routed (closed, or not ready yet): no draw, no cookie; the default alone.
        let alone = vhost.render(Self.site, environments: [.init(name: "pr-1", slug: "main-ish")])
        #expect(!alone.contains("split_clients") && !alone.contains("Set-Cookie $stager_pin") && alone.contains("default \"pr-1\";"))
        #expect(!alone.contains("canary-x"))
        // Nothing routed: every request gets the 503 that says so.
        #expect(vhost.render(Self.site, environments: []).contains("default \"\";\n}\nmap $stager_env_acme_web"))
        #expect(SharedHostVhost.percent(12.5) == "12.50" && SharedHostVhost.percent(30) == "30")
    }
}

/// The shared host's file in the sites folder: written with the batch that routes an environment, and
/// removed at start once its repository has no shared host any more; a file of someone else's stays.
@Suite("Shared host: the sites folder")
struct SharedHostFileTests {
    @Test func followsTheBatchesAndGoesWithItsConfiguration() async throws {
        let dir = try TestConfig.temporaryDirectory("shared-files")
        let config = try TestConfig.load(
            """
            nginx: {sites_dir: sites}
            repos:
              acme/web: {image: "x", shared_host: acme-web, default_env: pr-1}
            """,
            in: dir
        )
        let sites = config.nginx.sitesDir
        let runner = RecordingRunner()
        func door(_ shared: SharedHostVhost) throws -> NginxFrontDoor {
            NginxFrontDoor(
                config: config.nginx,
                wakePath: WakePath(address: "127.0.0.1:9", token: "t", holdFor: .seconds(60)),
                template: try Templates.load().vhost,
                runner: runner,
                shared: shared,
                logger: Logger(label: "t")
            )
        }
        let file = sites.appendingPathComponent("stager-shared-acme-web.conf")
        let withShared = try door(SharedHostVhost(config: config, keys: VhostKeys(secret: "t")))
        // serve's start writes it (nothing routed yet), as it writes nginx's activity file.
        #expect(try await withShared.reloadIfOwed())
        #expect(try String(contentsOf: file, encoding: .utf8).contains("return 503"))
        let before = runner.commands.count
        try await withShared.apply(
            Route(
                key: PullRequestKey(repo: "acme/web", number: 1),
                slug: "feature",
                hostName: "feature.preview.localhost",
                upstreamPort: 40000,
                containerName: "c1",
                sha: "abc"
            )
        )
        let written = try String(contentsOf: file, encoding: .utf8)
        #expect(written.contains("\"pr-1\" \"feature.preview.localhost\";"), "\(written)")
        // The same batch: one test, one reload for the environment and its shared host.
        #expect(runner.commands.dropFirst(before).map(\.arguments) == [["-t"], ["-s", "reload"]])
        #expect(try await withShared.reloadIfOwed() == false, "nothing is owed once the batch is in")

        // Another configuration without it: serve's start removes the file, and leaves a stranger's alone.
        let foreign = sites.appendingPathComponent("stager-shared-theirs.conf")
        try "server { listen 1; }\n".write(to: foreign, atomically: true, encoding: .utf8)
        let without = try door(.none)
        #expect(try await without.reloadIfOwed())
        #expect(!FileManager.default.fileExists(atPath: file.path))
        #expect(FileManager.default.fileExists(atPath: foreign.path))
        #expect(try await without.reloadIfOwed() == false)
    }
}

import Foundation
@testable import StagerKit
import StagerTestSupport
import Testing

/// The shared host's configuration and the vhost nginx gets for it (what nginx makes of it: the
/// end-to-end suite `the shared host`).
@Suite("Shared host: units")
struct SharedHostUnitTests {
    func refused(_ yaml: String) throws -> String? {
        do {
            _ = try TestConfig.load(yaml, in: try TestConfig.temporaryDirectory("shared-config"))
            return nil
        } catch let error as ConfigError {
            return error.key
        }
    }

    @Test func configuration() throws {
        let config = try TestConfig.load("""
        repos:
          acme/web: {image: "x", shared_host: acme-web, default_env: pr-12, canary: {env: pr-14, percent: 12.5}}
          acme/api: {image: "y"}
        """, in: try TestConfig.temporaryDirectory("shared-config"))
        let shared = try #require(config.repo("acme/web")?.sharedHost)
        #expect(shared.name == "acme-web" && shared.defaultEnv == "pr-12" && shared.canary == .init(env: "pr-14", percent: 12.5))
        #expect(config.reservedSlugs == ["acme-web"])
        #expect(try refused("repos:\n  a/b: {image: x, shared_host: Bad_Name, default_env: pr-1}\n") == "repos.a/b.shared_host")
        #expect(try refused("repos:\n  a/b: {image: x, shared_host: ab}\n") == "repos.a/b.default_env")
        #expect(try refused("repos:\n  a/b: {image: x, shared_host: ab, default_env: main}\n") == "repos.a/b.default_env")
        #expect(try refused("repos:\n  a/b: {image: x, shared_host: ab, default_env: pr-01}\n") == "repos.a/b.default_env")
        #expect(try refused("repos:\n  a/b: {image: x, default_env: pr-1}\n") == "repos.a/b.shared_host")
        #expect(try refused("repos:\n  a/b: {image: x, shared_host: ab, default_env: pr-1, canary: {env: pr-2, percent: 101}}\n") == "repos.a/b.canary.percent")
        #expect(try refused("repos:\n  a/b: {image: x, shared_host: ab, default_env: pr-1, canary: {env: \"x;y\", percent: 5}}\n") == "repos.a/b.canary.env")
        #expect(try refused("repos:\n  a/b: {image: x, shared_host: ab, default_env: pr-1}\n  c/d: {image: y, shared_host: ab, default_env: pr-2}\n") == "repos.c/d.shared_host")
    }

    static let site = SharedHostVhost.Site(repo: "acme/web", host: .init(name: "acme-web", defaultEnv: "pr-1", canary: .init(env: "pr-3", percent: 10)),
                                           access: .init(htpasswdFile: nil, generatedHtpasswd: nil, allowIPs: ["10.0.0.0/8"]))
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

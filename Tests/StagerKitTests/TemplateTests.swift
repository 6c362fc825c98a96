import Foundation
import Logging
import StagerKit
import StagerTestSupport
import Testing

@Suite("Templates")
struct TemplateTests {
    @Test func vhostCarriesTheRouteAndAMarker() async throws {
        let dir = try TestConfig.temporaryDirectory("tpl")
        let config = try TestConfig.load("nginx:\n  sites_dir: sites\n  listen: \"127.0.0.1:9999\"\n", in: dir)
        let templates = try Templates.load()
        let door = NginxFrontDoor(
            config: config.nginx,
            wakePath: WakePath(address: "127.0.0.1:9", token: "t", holdFor: .seconds(60)),
            template: templates.vhost,
            runner: SubprocessRunner(),
            logger: Logger(label: "t")
        )
        let route = Route(
            key: PullRequestKey(repo: "acme/web", number: 7),
            slug: "feature-x",
            hostName: "feature-x.preview.localhost",
            upstreamPort: 41234,
            containerName: "stager-default-feature-x-abc1234-9f9f",
            sha: "abc1234"
        )
        let text = try await door.render(route)
        #expect(
            text.hasPrefix(
                "# stager-vhost slug=feature-x container=stager-default-feature-x-abc1234-9f9f port=41234 sha=abc1234 v=2 repo=acme/web env=pr-7\n"
            )
        )
        #expect(text.contains("listen 127.0.0.1:9999;"))
        #expect(text.contains("server_name feature-x.preview.localhost;"))
        #expect(text.contains("proxy_pass http://127.0.0.1:41234;"))
        #expect(text.contains("add_header X-Stager-Upstream \"stager-default-feature-x-abc1234-9f9f\" always;"))
        #expect(!text.contains("{{"))
        // Nothing the app answers steers nginx, in every location that proxies to it.
        let ignoring = text.components(separatedBy: "proxy_ignore_headers X-Accel-Redirect").count - 1
        #expect(ignoring == text.components(separatedBy: "proxy_pass http://127.0.0.1:41234").count - 1 && ignoring == 2)
        // The probe answers only with the key, which the vhost does not hand to the app.
        let keys = VhostKeys(secret: "t")
        #expect(text.contains("if ($http_x_stager_probe != \"\(keys.probe)\")") && text.contains("proxy_set_header X-Stager-Probe \"\";"))
        var asleep = route
        asleep.asleep = true
        let sleeping = try await door.render(asleep)
        // One fixed path at serve, a key bound to the slug, and a hand-back location behind a key of its own.
        #expect(sleeping.contains("rewrite ^ /_stager/wake/feature-x? break;") && sleeping.contains("proxy_pass http://127.0.0.1:9;"))
        #expect(sleeping.contains("X-Stager-Wake-Token \"\(keys.wake(slug: "feature-x"))\""))
        #expect(sleeping.contains("location ~ ^/\\.stager-upstream/\(keys.handBack(slug: "feature-x"))/([0-9.]+)/([0-9]+)$"))
        #expect(keys.wake(slug: "feature-x") != keys.wake(slug: "feature-x-billing") && keys.probe != keys.hop)
    }

    @Test func commentHasTheMarkerAndTheURL() throws {
        let templates = try Templates.load()
        let ready = templates.comment.render(["ready": true, "url": "http://x.preview.localhost", "sha": "abc", "branch": "b", "updated": "now"])
        #expect(ready.contains(CommentMarker.marker))
        #expect(ready.contains("http://x.preview.localhost"))
        #expect(!ready.contains("failed"))
        let failed = templates.comment.render(["failed": true, "reason": "boom", "log": "line1\nline2", "sha": "abc", "updated": "now"])
        #expect(failed.contains("boom") && failed.contains("line1\nline2") && failed.contains(CommentMarker.marker))
    }

    /// swift-mustache counts "" as present; the comment and pages render with empty values left out.
    @Test func emptyValuesLeaveTheirSectionsOut() throws {
        let templates = try Templates.load()
        let failed = templates.comment.render(emptyAsMissing: [
            "failed": true, "reason": "boom", "reason_fence": "```", "log": "", "log_fence": "```", "serving": "", "sha": "abc",
            "updated": "now", "status": "failed", "logs_url": "https://stager.example.com/environments/acme/web/1", "url": "http://x",
        ])
        #expect(failed.contains("boom") && failed.contains("| **Status** | :x: failed |"))
        #expect(failed.contains("[history and container log](https://stager.example.com/environments/acme/web/1)"))
        #expect(!failed.contains("still serves") && !failed.contains("<details>"))
        let serving = templates.comment.render(emptyAsMissing: [
            "failed": true, "reason": "boom", "serving": "abc123", "url": "http://x", "log": "tail",
        ])
        #expect(serving.contains("The previous version (abc123) still serves at http://x.") && serving.contains("<details>"))
    }

    @Test func templatesDirOverrides() throws {
        let dir = try TestConfig.temporaryDirectory("tpl-override")
        try "<!-- stager --> custom {{url}}".write(to: dir.appendingPathComponent("comment.md.mustache"), atomically: true, encoding: .utf8)
        let templates = try Templates.load(overrideDir: dir)
        #expect(templates.comment.render(["url": "u"]) == "<!-- stager --> custom u")
    }

    @Test func imageTemplateIsRenderedAndChecked() throws {
        #expect(
            try ImageReference.render(
                "acme/web:pr-{{number}}",
                names: PullRequestNames(repo: "acme/web", number: 3, branch: "b", sha: "abc", slug: "s")
            ) == "acme/web:pr-3"
        )
        #expect(
            try ImageReference.render(
                "acme/web:{{slug}}-{{sha}}",
                names: PullRequestNames(repo: "acme/web", number: 3, branch: "b", sha: "abc", slug: "s")
            )
                == "acme/web:s-abc"
        )
        #expect(throws: ImageReference.Failure.self) {
            try ImageReference.render(
                "acme/web:{{branch}}",
                names: PullRequestNames(repo: "acme/web", number: 3, branch: "x --privileged", sha: "abc", slug: "s")
            )
        }
        #expect(throws: ImageReference.Failure.self) {
            try ImageReference.render("{{branch}}", names: PullRequestNames(repo: "acme/web", number: 3, branch: "-x", sha: "abc", slug: "s"))
        }
    }
}

/// Escaping by Unicode scalar: a `<`, `>`, `&`, `"` or `'` glued to a prepended or combining mark is one
/// Character that is none of them, and went through swift-mustache's own escaping whole.
@Suite("HTML escaping")
struct HTMLEscapingTests {
    static let corpus = [
        "\u{0600}<img src=x onerror=alert(1)>", "\"\u{0301} onmouseover=alert(2) x=\"", "<\u{0301}script>", "'\u{0301}>", "&\u{0301}lt;",
    ]

    @Test(arguments: corpus)
    func everySpecialScalarIsEscaped(_ text: String) {
        let escaped = HTMLEscaping.escape(text)
        #expect(!escaped.unicodeScalars.contains { "<>\"'".unicodeScalars.contains($0) })
        // Every `&` starts an entity (read by scalar: Swift's own string search goes by Character, the very flaw).
        let scalars = Array(escaped.unicodeScalars)
        for index in scalars.indices where scalars[index] == "&" {
            let rest = scalars[index...].prefix(6).map(Character.init).map(String.init).joined()
            #expect(["&lt;", "&gt;", "&amp;", "&quot;", "&#39;"].contains { rest.unicodeScalars.starts(with: $0.unicodeScalars) }, "\(rest)")
        }
    }

    /// The page templates, built-in or overridden, escape this way.
    @Test func thePagesEscapeByScalar() throws {
        let templates = try Templates.load()
        let rendered = templates.dashboard.render(emptyAsMissing: [
            "groups": [["repo": "acme/web", "environments": [["title": Self.corpus[0], "number": 1]]]]
        ])
        #expect(!rendered.contains("<img"), "\(rendered)")
        let dir = try TestConfig.temporaryDirectory("tpl-override")
        try "<p>{{title}}</p>".write(to: dir.appendingPathComponent("environment.html.mustache"), atomically: true, encoding: .utf8)
        let custom = try Templates.load(overrideDir: dir)
        #expect(custom.environment.render(emptyAsMissing: ["title": Self.corpus[0]]) == "<p>\(HTMLEscaping.escape(Self.corpus[0]))</p>")
    }

    @Test func thePolicyHashesThePagesOwnScriptsAndStyles() {
        let headers = Dictionary(uniqueKeysWithValues: PageSecurity.headers(for: "<style>a{}</style><script>go()</script>"))
        let policy = headers["Content-Security-Policy"] ?? ""
        #expect(policy.contains("script-src 'sha256-") && policy.contains("style-src 'sha256-") && policy.contains("frame-ancestors 'none'"))
        #expect(!policy.contains("unsafe-inline") && headers["X-Content-Type-Options"] == "nosniff" && headers["X-Frame-Options"] == "DENY")
    }
}

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
        let door = NginxFrontDoor(config: config.nginx, wakePath: WakePath(address: "127.0.0.1:9", token: "t", holdFor: .seconds(60)), template: templates.vhost, runner: SubprocessRunner(), logger: Logger(label: "t"))
        let route = Route(key: PullRequestKey(repo: "acme/web", number: 7), slug: "feature-x", hostName: "feature-x.preview.localhost",
                          upstreamPort: 41234, containerName: "stager-default-feature-x-abc1234-9f9f", sha: "abc1234")
        let text = await door.render(route)
        #expect(text.hasPrefix("# stager-vhost slug=feature-x container=stager-default-feature-x-abc1234-9f9f port=41234 sha=abc1234 repo=acme/web env=pr-7\n"))
        #expect(text.contains("listen 127.0.0.1:9999;"))
        #expect(text.contains("server_name feature-x.preview.localhost;"))
        #expect(text.contains("proxy_pass http://127.0.0.1:41234;"))
        #expect(text.contains("add_header X-Stager-Upstream \"stager-default-feature-x-abc1234-9f9f\" always;"))
        #expect(!text.contains("{{"))
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
        let serving = templates.comment.render(emptyAsMissing: ["failed": true, "reason": "boom", "serving": "abc123", "url": "http://x", "log": "tail"])
        #expect(serving.contains("The previous version (abc123) still serves at http://x.") && serving.contains("<details>"))
    }

    @Test func templatesDirOverrides() throws {
        let dir = try TestConfig.temporaryDirectory("tpl-override")
        try "<!-- stager --> custom {{url}}".write(to: dir.appendingPathComponent("comment.md.mustache"), atomically: true, encoding: .utf8)
        let templates = try Templates.load(overrideDir: dir)
        #expect(templates.comment.render(["url": "u"]) == "<!-- stager --> custom u")
    }

    @Test func imageTemplateIsRenderedAndChecked() throws {
        #expect(try ImageReference.render("acme/web:pr-{{number}}", repo: "acme/web", number: 3, branch: "b", sha: "abc", slug: "s") == "acme/web:pr-3")
        #expect(try ImageReference.render("acme/web:{{slug}}-{{sha}}", repo: "acme/web", number: 3, branch: "b", sha: "abc", slug: "s") == "acme/web:s-abc")
        #expect(throws: ImageReference.Failure.self) {
            try ImageReference.render("acme/web:{{branch}}", repo: "acme/web", number: 3, branch: "x --privileged", sha: "abc", slug: "s")
        }
        #expect(throws: ImageReference.Failure.self) {
            try ImageReference.render("{{branch}}", repo: "acme/web", number: 3, branch: "-x", sha: "abc", slug: "s")
        }
    }
}

import Foundation
import StagerKit
import StagerTestSupport
import Testing

/// One URL for every version of a repository (`shared_host`): nginx itself chooses the environment by
/// query (302, then the cookie), cookie or header, a canary's share of new visitors, else `default_env`.
@Suite("End to end: the shared host", .enabled(if: E2EHarness.available))
struct SharedHostTests {
    static let repo = "acme/shared"
    let probe = HTTPProbe(timeout: .seconds(10))

    func shared(_ harness: E2EHarness, path: String = "/", headers: [String: String] = [:]) async throws -> ProbeAnswer {
        try await probe.get(
            host: "127.0.0.1",
            port: harness.nginxPort,
            path: path,
            hostHeader: "acme-shared.preview.localhost",
            headers: headers
        )
    }

    func open(_ harness: E2EHarness, _ number: Int, branch: String) async throws -> String {
        let sha = Fixtures.sha(branch)
        try await harness.send("opened", number: number, branch: branch, sha: sha, repo: Self.repo)
        #expect(try await harness.waitSettled(number, repo: Self.repo, status: .ready, timeout: .seconds(60)))
        return sha
    }

    @Test func choosesByQueryCookieAndHeaderFallsBackToTheDefaultAndGivesTheCanaryItsShare() async throws {
        let extra = "shared_host: acme-shared\ndefault_env: pr-1\ncanary: {env: pr-3, percent: 30}"
        try await E2EHarness.run(name: "shared", extraRepos: E2EHarness.servingRepo(Self.repo, extra)) { harness in
            // Nothing routed yet: serve writes the shared host as it starts, and it says so (never a 502).
            #expect(
                try await harness.waitUntil(timeout: .seconds(30)) {
                    let empty = try await shared(harness)
                    return empty.status == 503 && empty.body.contains("no environment of acme/shared is ready")
                }
            )

            let one = try await open(harness, 1, branch: "shared-one")
            // A hostile branch name reaches nginx only as a slug; nginx's test passes with it in the maps.
            let two = try await open(harness, 2, branch: "x\";}$(id) server{ #")

            // No choice: the default, and every answer says which environment served. (After a reload
            // nginx's old workers answer for a moment as before it: the first look waits them out.)
            #expect(
                try await harness.waitUntil(timeout: .seconds(30)) {
                    let plain = try await shared(harness)
                    let second = try await shared(harness, headers: ["X-Stager-Env": "pr-2"])
                    return plain.headers["x-stager-env"] == "pr-1" && second.headers["x-stager-env"] == "pr-2"
                }
            )
            let plain = try await shared(harness)
            #expect(plain.status == 200 && plain.body.contains("sha=\(one)") && plain.headers["x-stager-env"] == "pr-1", "\(plain)")

            // The query: 302 to the same path and the other parameters, with the cookie.
            let chosen = try await shared(harness, path: "/a/b?x=1&stager-env=pr-2&y=2")
            #expect(chosen.status == 302)
            #expect(chosen.headers["location"]?.hasSuffix("/a/b?x=1&y=2") == true, "\(chosen.headers)")
            #expect(
                chosen.headers["set-cookie"]?.hasPrefix("stager_env=pr-2;") == true && chosen.headers["x-stager-env"] == "pr-2",
                "\(chosen.headers)"
            )
            let alone = try await shared(harness, path: "/?stager-env=pr-2")
            #expect(alone.status == 302 && alone.headers["location"]?.hasSuffix("/") == true, "\(alone.headers)")

            // The cookie and the header choose; the header first.
            let byCookie = try await shared(harness, headers: ["Cookie": "stager_env=pr-2"])
            #expect(byCookie.body.contains("sha=\(two)") && byCookie.headers["x-stager-env"] == "pr-2", "\(byCookie)")
            let byHeader = try await shared(harness, headers: ["X-Stager-Env": "pr-2", "Cookie": "stager_env=pr-1"])
            #expect(byHeader.body.contains("sha=\(two)") && byHeader.headers["x-stager-env"] == "pr-2", "\(byHeader)")
            // An unknown name: the default.
            let unknown = try await shared(harness, headers: ["Cookie": "stager_env=pr-99"])
            #expect(unknown.status == 200 && unknown.headers["x-stager-env"] == "pr-1", "\(unknown)")

            // The PR comment links the shared host with the PR chosen; the dashboard names the host.
            let comment = await harness.github.comments(on: Self.repo, issue: 2).first?.body ?? ""
            #expect(comment.contains("http://acme-shared.preview.localhost:\(harness.nginxPort)/?stager-env=pr-2"), "\(comment)")
            #expect(try await harness.get("/").body.contains("Shared host"))
            let check = try await harness.stager(["check"]).standardOutput
            #expect(
                check.contains(
                    "ok   shared host acme/shared: http://acme-shared.preview.localhost:\(harness.nginxPort) serves 2 environment(s); default pr-1 (routed), canary pr-3 (not routed now)"
                ),
                "\(check)"
            )

            // A PR named like the shared host does not get its address.
            try await harness.send("opened", number: 4, branch: "acme-shared", sha: Fixtures.sha("acme-shared"), repo: Self.repo)
            #expect(try await harness.waitSettled(4, repo: Self.repo, status: .ready, timeout: .seconds(60)))
            #expect(try harness.environment(4, repo: Self.repo)?.slug != "acme-shared")

            // A closed PR's cookie falls back to the default: never a 502.
            try await harness.send("closed", number: 2, branch: "x", sha: two, updatedAt: "2026-11-24T09:05:00Z", repo: Self.repo)
            #expect(try await harness.waitSettled(2, repo: Self.repo, status: .removed, timeout: .seconds(60)))
            #expect(
                try await harness.waitUntil(timeout: .seconds(30)) {
                    try await shared(harness, headers: ["Cookie": "stager_env=pr-2"]).headers["x-stager-env"] == "pr-1"
                }
            )
            let fallen = try await shared(harness, headers: ["Cookie": "stager_env=pr-2"])
            #expect(fallen.status == 200 && fallen.headers["x-stager-env"] == "pr-1" && fallen.body.contains("sha=\(one)"), "\(fallen)")

            // The canary: 30 % of new visitors, each kept by its cookie.
            let three = try await open(harness, 3, branch: "shared-canary")
            #expect(
                try await harness.waitUntil(timeout: .seconds(30)) {
                    try await shared(harness, headers: ["X-Stager-Env": "pr-3"]).headers["x-stager-env"] == "pr-3"
                }
            )
            var canaries = 0
            var pins: [(cookie: String, env: String)] = []
            for _ in 0..<200 {
                let visit = try await shared(harness)
                let env = visit.headers["x-stager-env"] ?? ""
                #expect(["pr-1", "pr-3"].contains(env) && visit.status == 200, "\(visit.status) \(env)")
                if env == "pr-3" { canaries += 1 }
                let cookie = visit.headers["set-cookie"]?.split(separator: ";").first.map(String.init) ?? ""
                #expect(cookie == "stager_env=\(env)", "\(visit.headers)")
                if pins.count < 10 { pins.append((cookie, env)) }
            }
            // Binomial(200, 0.3): mean 60, standard deviation 6.5; 4.5 of them either side.
            #expect((31...89).contains(canaries), "\(canaries) of 200 got the canary")
            for pin in pins {
                let again = try await shared(harness, headers: ["Cookie": pin.cookie])
                #expect(again.headers["x-stager-env"] == pin.env && again.headers["set-cookie"] == nil, "sticky: \(again.headers)")
            }
            #expect(try await shared(harness, headers: ["Cookie": "stager_env=pr-3"]).body.contains("sha=\(three)"))
        }
    }
}

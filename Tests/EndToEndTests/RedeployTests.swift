import Foundation
import StagerKit
import StagerTestSupport
import Testing

/// Zero-downtime redeploys and reload batching, on the real engine and nginx. Functional, not timed.
@Suite("End to end: redeploys and batching", .serialized, .enabled(if: E2EHarness.available))
struct RedeployTests {
    /// A synchronize while requests keep coming: every request is answered 200, first by the old sha, then
    /// by the new one, and the old container is gone afterwards.
    @Test func aRedeployUnderContinuousRequestsLosesNone() async throws {
        try await E2EHarness.run(name: "zero-downtime", extraRepos: E2EHarness.servingRepo("acme/steady", "drain: \"1s\""), accessLog: true) {
            harness throws in
            let sha1 = Fixtures.sha("steady-1")
            let sha2 = Fixtures.sha("steady-2")
            try await harness.send("opened", number: 51, branch: "steady", sha: sha1, repo: "acme/steady")
            #expect(try await harness.waitSettled(51, repo: "acme/steady", status: .ready))

            let stop = Load.Switch()
            let load = Task {
                await Load.run(perSecond: 50, limit: .seconds(60), until: stop) { id in
                    try await harness.requestThroughNginx(slug: "steady", headers: ["X-Load-Id": String(id)])
                }
            }
            try await Task.sleep(for: .milliseconds(500))
            try await harness.send("synchronize", number: 51, branch: "steady", sha: sha2, updatedAt: "2026-11-24T09:05:00Z", repo: "acme/steady")
            let switched = try await harness.waitUntil(timeout: .seconds(60)) {
                guard try harness.environment(51, repo: "acme/steady")?.deployedSha == sha2 else { return false }
                return try await harness.containers().count == 1
            }
            try await Task.sleep(for: .milliseconds(500))
            await stop.stop()
            let outcomes = await load.value

            #expect(switched)
            let failures = outcomes.filter { !$0.ok }
            #expect(failures.isEmpty, "\(failures.count) of \(outcomes.count) failed; \(LoadReport(outcomes, server: harness.accessLog()))")
            // nginx's own view, which a starved client cannot blur: it answered every request of the load, each 200.
            #expect(try await harness.waitUntil(timeout: .seconds(5)) { harness.accessLog().filter { $0.loadID != nil }.count >= outcomes.count })
            let served = harness.accessLog().filter { $0.loadID != nil }
            #expect(served.allSatisfy { $0.status == 200 }, "nginx answered \(served.filter { $0.status != 200 }.map(\.status))")
            print("redeploy under load: \(LoadReport.timing(outcomes, server: served))")
            #expect(outcomes.count > 50)
            #expect(outcomes.contains { $0.body.contains("sha=\(sha1)") } && outcomes.contains { $0.body.contains("sha=\(sha2)") })
            // Once the new sha answered, the old never did again.
            let firstNew = try #require(outcomes.firstIndex { $0.body.contains("sha=\(sha2)") })
            #expect(outcomes.count > firstNew)
            #expect(try await harness.containers().map(\.sha) == [sha2])
        }
    }

    /// A new container that fails its smoke paths never takes traffic: the old one keeps serving and the
    /// comment says why the redeploy failed.
    @Test func aFailedSmokeCheckKeepsTheOldVersionServing() async throws {
        // Serves /ok.html unless the branch says "broken"; / always answers, so only the smoke path tells.
        let repo = """
              acme/smoked:
                image: "\(E2EHarness.image)"
                command: ["/bin/busybox", "sh", "-c", "echo \\"sha=$STAGER_SHA\\" > /www/index.html; case \\"$STAGER_BRANCH\\" in *broken*) ;; *) echo ok > /www/ok.html;; esac; exec /bin/busybox httpd -f -p 8080 -h /www"]
                port: 8080
                smoke: ["/ok.html"]
                drain: "200ms"

            """
        try await E2EHarness.run(name: "smoke", extraRepos: repo) { harness throws in
            let sha1 = Fixtures.sha("smoke-1")
            let sha2 = Fixtures.sha("smoke-2")
            try await harness.send("opened", number: 52, branch: "smoked", sha: sha1, repo: "acme/smoked")
            #expect(try await harness.waitSettled(52, repo: "acme/smoked", status: .ready))

            try await harness.send(
                "synchronize",
                number: 52,
                branch: "smoked-broken",
                sha: sha2,
                updatedAt: "2026-11-24T09:05:00Z",
                repo: "acme/smoked"
            )
            #expect(try await harness.settledStatus(52, repo: "acme/smoked") == .failed)
            #expect(await harness.throughNginx(slug: "smoked")?.body.contains("sha=\(sha1)") == true)
            #expect(try await harness.containers().map(\.sha) == [sha1])
            let comment = try #require(await harness.github.comments(on: "acme/smoked", issue: 52).first)
            #expect(comment.body.contains("smoke check GET /ok.html answered 404"))
            #expect(comment.body.contains("The previous version (\(sha1.prefix(12))) still serves"))
        }
    }

    /// Pushes in quick succession to a serving PR are coalesced: only the newest is deployed.
    @Test func pushesInQuickSuccessionDeployOnlyTheNewest() async throws {
        try await E2EHarness.run(name: "push-storm", extraRepos: E2EHarness.servingRepo("acme/busy", "drain: \"200ms\"")) { harness throws in
            try await harness.send("opened", number: 53, branch: "busy", sha: Fixtures.sha("busy-0"), repo: "acme/busy")
            #expect(try await harness.waitSettled(53, repo: "acme/busy", status: .ready))
            let pushes = (1...5).map { Fixtures.sha("busy-\($0)") }
            // 100 ms apart: long enough for a plan to start a container between two of them, were they not coalesced.
            for (index, sha) in pushes.enumerated() {
                try await harness.send(
                    "synchronize",
                    number: 53,
                    branch: "busy",
                    sha: sha,
                    updatedAt: "2026-11-24T09:0\(index + 1):00Z",
                    repo: "acme/busy"
                )
                try await Task.sleep(for: .milliseconds(100))
            }
            #expect(try await harness.waitUntil { try harness.environment(53, repo: "acme/busy")?.deployedSha == pushes[4] })
            #expect(try await harness.waitSettled(53, repo: "acme/busy", status: .ready))
            let deployed = try #require(harness.app?.store).auditEvents(for: PullRequestKey(repo: "acme/busy", number: 53))
                .filter { $0.kind == "deploy" }.compactMap(\.sha)
            #expect(Set(deployed) == [Fixtures.sha("busy-0"), pushes[4]], "deployed: \(deployed)")
            #expect(await harness.throughNginx(slug: "busy")?.body.contains("sha=\(pushes[4])") == true)
        }
    }

    /// Many closes at once cost a few reloads, not one each.
    @Test func aBurstOfClosesCostsFewerReloadsThanCloses() async throws {
        try await E2EHarness.run(name: "burst-closes", extraLimits: "  concurrent_deploys: 4") { harness throws in
            let count = 8
            for number in 1...count {
                try await harness.send("opened", number: 60 + number, branch: "burst-\(number)", sha: Fixtures.sha("burst-\(number)"))
            }
            for number in 1...count {
                #expect(try await harness.waitSettled(60 + number, status: .ready, timeout: .seconds(90)))
            }
            let frontDoor = try #require(harness.app?.deps.frontDoor)
            let before = await frontDoor.reloadCount
            for number in 1...count {
                try await harness.send(
                    "closed",
                    number: 60 + number,
                    branch: "burst-\(number)",
                    sha: Fixtures.sha("burst-\(number)"),
                    updatedAt: "2026-11-24T09:10:00Z"
                )
            }
            for number in 1...count {
                #expect(try await harness.waitUntil(timeout: .seconds(60)) { try harness.environment(60 + number)?.status == .removed })
            }
            let reloads = await frontDoor.reloadCount - before
            #expect(reloads < count, "\(reloads) reloads for \(count) closes")
            #expect(reloads >= 1)
            #expect(harness.vhosts().isEmpty)
            #expect(try await harness.containers().isEmpty)
        }
    }
}

import Foundation
import StagerKit
import StagerTestSupport
import Testing

/// From webhook to a live URL and back, on the real engine and a real nginx.
@Suite("End to end: PR lifecycle", .serialized, .enabled(if: E2EHarness.available))
struct LifecycleTests {
    @Test func openSynchronizeClose() async throws {
        try await E2EHarness.run(name: "lifecycle") { harness in
            let sha1 = Fixtures.sha("one")
            let sha2 = Fixtures.sha("two")

            let (status, _) = try await harness.send("opened", number: 1, branch: "feature/Login-Page", sha: sha1)
            #expect(status == 202)
            #expect(try await harness.waitSettled(1, status: .ready))
            // Ready means the URL already answers through nginx with this PR's content, and the comment exists.
            let page = await harness.throughNginx(slug: "feature-login-page")
            #expect(page?.status == 200)
            #expect(page?.body.contains("sha=\(sha1) branch=feature/Login-Page") == true)
            let comments = await harness.github.comments(on: "acme/web", issue: 1)
            #expect(comments.count == 1)
            let comment = try #require(comments.first)
            #expect(comment.body.contains(CommentMarker.marker))
            #expect(comment.body.contains("http://feature-login-page.preview.localhost:\(harness.nginxPort)"))
            let first = try await harness.containers()
            #expect(first.count == 1)
            #expect(first.first?.slug == "feature-login-page")
            #expect(harness.vhosts() == ["feature-login-page.conf"])

            try await harness.send("synchronize", number: 1, branch: "feature/Login-Page", sha: sha2, updatedAt: "2026-11-24T09:05:00Z")
            #expect(try await harness.waitUntil { try harness.environment(1)?.deployedSha == sha2 })
            #expect(try await harness.waitSettled(1, status: .ready))
            #expect(await harness.throughNginx(slug: "feature-login-page")?.body.contains("sha=\(sha2)") == true)
            let edited = await harness.github.comments(on: "acme/web", issue: 1)
            #expect(edited.map(\.id) == [comment.id])
            #expect(edited.first?.body.contains(sha2) == true)
            // The old container serves what it has for the drain period, then goes.
            #expect(try await harness.waitUntil { try await harness.containers().map(\.sha) == [sha2] })

            try await harness.send("closed", number: 1, branch: "feature/Login-Page", sha: sha2, updatedAt: "2026-11-24T09:10:00Z")
            #expect(try await harness.waitUntil { try harness.environment(1)?.status == .removed })
            #expect(try await harness.containers().isEmpty)
            #expect(harness.vhosts().isEmpty)
            #expect(await harness.github.comments(on: "acme/web", issue: 1).isEmpty)
            #expect(await harness.throughNginx(slug: "feature-login-page")?.status == 404)
            #expect(await harness.github.count("POST", pathSuffix: "/comments") == 1)
        }
    }

    @Test func duplicateDeliveryAndBurst() async throws {
        try await E2EHarness.run(name: "burst") { harness in

            // A duplicate delivery is answered and changes nothing.
            #expect(try await harness.send("opened", number: 2, branch: "dup", sha: Fixtures.sha("d1"), delivery: "dup-1").0 == 202)
            let again = try await harness.send("opened", number: 2, branch: "dup", sha: Fixtures.sha("d1"), delivery: "dup-1")
            #expect(again.0 == 200 && again.1.contains("duplicate"))
            #expect(try harness.environment(2)?.desiredVersion == 1)

            // A burst on one PR ends at its newest desired state only: here, gone.
            try await harness.send("opened", number: 3, branch: "burst", sha: Fixtures.sha("b1"))
            try await harness.send("synchronize", number: 3, branch: "burst", sha: Fixtures.sha("b2"), updatedAt: "2026-11-24T09:00:01Z")
            try await harness.send("closed", number: 3, branch: "burst", sha: Fixtures.sha("b2"), updatedAt: "2026-11-24T09:00:02Z")
            // A burst ending present serves only the newest sha.
            try await harness.send("opened", number: 4, branch: "burst-two", sha: Fixtures.sha("c1"))
            try await harness.send("synchronize", number: 4, branch: "burst-two", sha: Fixtures.sha("c2"), updatedAt: "2026-11-24T09:00:01Z")

            #expect(
                try await harness.waitUntil {
                    try harness.environment(3)?.status == .removed
                }
            )
            #expect(try await harness.waitSettled(4, status: .ready))
            #expect(try await harness.waitSettled(2, status: .ready))
            let containers = try await harness.containers()
            #expect(containers.filter { $0.number == 3 }.isEmpty)
            #expect(containers.filter { $0.number == 4 }.map(\.sha) == [Fixtures.sha("c2")])
            #expect(await harness.throughNginx(slug: "burst-two")?.body.contains(Fixtures.sha("c2")) == true)
            #expect(await harness.github.comments(on: "acme/web", issue: 3).isEmpty)
            #expect(await harness.github.comments(on: "acme/web", issue: 4).count == 1)
            #expect(!harness.vhosts().contains("burst.conf"))
        }
    }

    @Test func unhealthyImageFailsWithTheLogTail() async throws {
        try await E2EHarness.run(
            name: "sick",
            extraRepos: """
                  acme/sick:
                    image: "\(E2EHarness.image)"
                    command: ["/bin/busybox", "sh", "-c", "echo boot-failure-marker; exec /bin/busybox sleep 3600"]
                    port: 8080
                    health_timeout: "3s"
                """
        ) { harness in
            try await harness.send("opened", number: 5, branch: "sick", sha: Fixtures.sha("s1"), repo: "acme/sick")
            #expect(try await harness.waitSettled(5, repo: "acme/sick", status: .failed))
            let env = try #require(try harness.environment(5, repo: "acme/sick"))
            #expect(env.failureReason?.contains("did not answer") == true)
            #expect(try await harness.containers().isEmpty)
            #expect(harness.vhosts().isEmpty)
            let comment = try #require(await harness.github.comments(on: "acme/sick", issue: 5).first)
            #expect(comment.body.contains("failed"))
            #expect(comment.body.contains("boot-failure-marker"))
        }
    }

    @Test func differentPRsDeployInParallel() async throws {
        try await E2EHarness.run(name: "parallel") { harness in
            for number in 10..<14 {
                try await harness.send("opened", number: number, branch: "par-\(number)", sha: Fixtures.sha("p\(number)"))
            }
            for number in 10..<14 {
                #expect(try await harness.waitSettled(number, status: .ready))
            }
            for number in 10..<14 {
                #expect(await harness.throughNginx(slug: "par-\(number)")?.body.contains(Fixtures.sha("p\(number)")) == true)
            }
            #expect(try await harness.containers().count == 4)
        }
    }
}

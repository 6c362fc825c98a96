import Foundation
import StagerKit
import StagerTestSupport
import Testing

/// Only `stager serve` changes containers, vhosts and comments: gc beside a running serve records what
/// should go and waits for serve to do it; with no serve running it does the work itself, and says so.
@Suite("One writer", .enabled(if: E2EHarness.available))
struct SingleWriterTests {
    /// A closed PR, an orphan container and an orphan vhost, with PR 1 open and serving.
    func leaks(_ harness: E2EHarness) async throws {
        try await harness.open(1, branch: "kept")
        try await harness.open(2, branch: "closed-quietly")
        #expect(try await harness.waitSettled(1, status: .ready))
        #expect(try await harness.waitSettled(2, status: .ready))
        await harness.github.setPull(number: 2, branch: "closed-quietly", sha: Fixtures.sha("closed-quietly"), state: "closed",
                                     updatedAt: "2026-11-24T10:00:00Z")
        _ = try await harness.startOrphanContainer(number: 903)
        try harness.writeOrphanVhost(slug: "orphan-w")
    }

    func expectOnlyPullRequestOneLeft(_ harness: E2EHarness) async throws {
        #expect(try await harness.containers().map(\.number) == [1])
        #expect(harness.vhosts() == ["kept.conf"])
        #expect(try harness.environment(2)?.status == .removed)
        #expect(await harness.github.comments(on: "acme/web", issue: 2).isEmpty)
    }

    @Test func gcBesideServeLeavesTheWorkToServe() async throws {
        try await E2EHarness.run(name: "gc-serve-writes") { harness in
            try await leaks(harness)
            let frontDoor = try #require(harness.app?.deps.frontDoor)
            let reloadsBefore = await frontDoor.reloadCount

            let gc = try await harness.stager(["gc"])
            #expect(gc.exitCode == 0, "\(gc.standardError)")
            #expect(gc.standardOutput.contains("gc: removed 1 environment, 1 container, 1 vhost; kept 1; done by stager serve"), "\(gc.standardOutput)")
            // The vhosts went through serve's own nginx batches, not through a second process's reload.
            #expect(await frontDoor.reloadCount > reloadsBefore)
            try await expectOnlyPullRequestOneLeft(harness)
            #expect(await harness.throughNginx(slug: "kept")?.status == 200)
        }
    }

    @Test func gcWithoutServeDoesTheWorkItselfAndSaysSo() async throws {
        try await E2EHarness.run(name: "gc-alone") { harness in
            try await leaks(harness)
            await harness.stop()

            let gc = try await harness.stager(["gc"])
            #expect(gc.exitCode == 0, "\(gc.standardError)")
            #expect(gc.standardOutput.contains("gc: removed 1 environment, 1 container, 1 vhost; kept 1; done by gc itself (stager serve is not running)"),
                    "\(gc.standardOutput)")
            try await expectOnlyPullRequestOneLeft(harness)
        }
    }

    /// A serve that stops beating while gc waits for it (killed, say): gc does the rest itself.
    @Test func gcFinishesTheWorkWhenServeStopsWhileItWaits() async throws {
        try await E2EHarness.run(name: "gc-serve-gone") { harness in
            try await leaks(harness)
            await harness.stop()
            // The last beat of a serve that died without saying so: it ages out while gc waits.
            try await #require(harness.app?.store).setFact(Controller.heartbeatFact, "pid 1")

            let gc = try await harness.stager(["gc"])
            #expect(gc.exitCode == 0, "\(gc.standardError)")
            #expect(gc.standardOutput.contains("gc: removed 1 environment, 1 container, 1 vhost; kept 1; done by stager serve, then gc itself (serve stopped meanwhile)"),
                    "\(gc.standardOutput)")
            try await expectOnlyPullRequestOneLeft(harness)
        }
    }
}

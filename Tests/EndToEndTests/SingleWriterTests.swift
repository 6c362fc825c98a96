import Foundation
import StagerKit
import StagerTestSupport
import Testing

/// Only `stager serve` changes containers, vhosts and comments: `stager gc` asks serve, which removes and
/// reports each item as it goes; the command starts no docker process of its own. Elsewhere, the CLI asks
/// serve over HTTP with the admin token.
@Suite("One writer", .enabled(if: E2EHarness.available))
struct SingleWriterTests {
    /// A closed PR, an orphan container and an orphan vhost, with PR 1 open and serving.
    func leaks(_ harness: E2EHarness) async throws {
        try await harness.open(1, branch: "kept")
        try await harness.open(2, branch: "closed-quietly")
        #expect(try await harness.waitSettled(1, status: .ready))
        #expect(try await harness.waitSettled(2, status: .ready))
        await harness.github.setPull(
            number: 2,
            branch: "closed-quietly",
            sha: Fixtures.sha("closed-quietly"),
            state: "closed",
            updatedAt: "2026-11-24T10:00:00Z"
        )
        _ = try await harness.startOrphanContainer(number: 903)
        try harness.writeOrphanVhost(slug: "orphan-w")
    }

    func expectOnlyPullRequestOneLeft(_ harness: E2EHarness) async throws {
        #expect(try await harness.containers().map(\.number) == [1])
        #expect(harness.vhosts() == ["kept.conf"])
        #expect(try harness.environment(2)?.status == .removed)
        #expect(await harness.github.comments(on: "acme/web", issue: 2).isEmpty)
    }

    @Test func gcAsksServeAndStartsNoDockerProcessOfItsOwn() async throws {
        try await E2EHarness.run(name: "gc-serve-writes") { harness in
            try await leaks(harness)
            let frontDoor = try #require(harness.app?.deps.frontDoor)
            let reloadsBefore = await frontDoor.reloadCount

            // serve runs in this test process: each docker process serve starts is this process's child.
            let watched = try await ProcessTable.watch(
                StagerProcess.binary,
                ["gc", "--config", harness.configFile.path],
                environment: harness.environment,
                in: harness.dir
            )
            #expect(watched.exitCode == 0, "\(watched.standardError)")
            #expect(
                watched.standardOutput.contains("gc: removed 1 environment, 1 container, 1 vhost; kept 1; done by stager serve"),
                "\(watched.standardOutput)"
            )
            #expect(watched.childrenOfCommand.isEmpty, "gc started \(watched.childrenOfCommand)")
            #expect(watched.dockerOfServe > 0, "no docker process of serve was seen while gc ran")
            // The vhosts went through serve's own nginx batches.
            #expect(await frontDoor.reloadCount > reloadsBefore)
            try await expectOnlyPullRequestOneLeft(harness)
            #expect(await harness.throughNginx(slug: "kept")?.status == 200)
        }
    }

    @Test func gcWithoutServeSaysSoAndRemovesNothing() async throws {
        try await E2EHarness.run(name: "gc-alone") { harness in
            try await leaks(harness)
            await harness.stop()

            let gc = try await harness.stager(["gc"])
            #expect(gc.exitCode == 1)
            #expect(gc.standardError.hasPrefix("stager: stager serve is not running"), "\(gc.standardError)")
            #expect(gc.standardOutput.isEmpty)
            #expect(Set(try await harness.containers().map(\.number)) == [1, 2, 903])
            #expect(harness.vhosts() == ["closed-quietly.conf", "kept.conf", "orphan-w.conf"])
        }
    }

    /// `--server` (or STAGER_SERVER) with the admin token (STAGER_TOKEN or --token-file) asks serve over
    /// HTTP, as from a laptop; without the token, or with a wrong one, the command says which, exit 1.
    @Test func theRemoteCLIWorksWithTheTokenAndIsRefusedWithout() async throws {
        try await E2EHarness.run(name: "remote-cli", extraServer: "  admin_token_env: E2E_ADMIN_TOKEN") { harness in
            try await harness.open(1, branch: "remote")
            #expect(try await harness.waitSettled(1, status: .ready))
            let server = "http://127.0.0.1:\(harness.port)"
            // No configuration on the laptop: only the URL and the token.
            func remote(_ arguments: [String], _ environment: [String: String]) async throws -> CommandResult {
                try await SubprocessRunner().run(Command(StagerProcess.binary, arguments, environment: environment))
            }
            let listed = try await remote(["ls"], ["STAGER_SERVER": server, "STAGER_TOKEN": E2EHarness.adminToken])
            #expect(listed.exitCode == 0, "\(listed.standardError)")
            #expect(listed.standardOutput.contains("acme/web") && listed.standardOutput.contains("ready"), "\(listed.standardOutput)")

            let tokenFile = harness.dir.appendingPathComponent("token")
            try "\(E2EHarness.adminToken)\n".write(to: tokenFile, atomically: true, encoding: .utf8)
            let slept = try await remote(["sleep", "acme/web#1", "--server", server, "--token-file", tokenFile.path], [:])
            #expect(slept.exitCode == 0, "\(slept.standardError)")
            #expect(slept.standardOutput.contains("acme/web#1: sleeping"), "\(slept.standardOutput)")
            #expect(try harness.environment(1)?.status == .sleeping)

            let without = try await remote(["ls", "--server", server], [:])
            #expect(without.exitCode == 1)
            #expect(
                without.standardError.contains("needs the admin token") && without.standardError.contains("STAGER_TOKEN"),
                "\(without.standardError)"
            )
            let wrong = try await remote(["gc", "--server", server], ["STAGER_TOKEN": "not-the-token"])
            #expect(wrong.exitCode == 1)
            #expect(wrong.standardError.contains("refused the admin token"), "\(wrong.standardError)")
            #expect(wrong.standardOutput.isEmpty)
            let nobody = try await remote(["ls", "--server", "http://127.0.0.1:\(try E2EHarness.freePort())"], ["STAGER_TOKEN": "x"])
            #expect(nobody.exitCode == 1 && nobody.standardError.contains("does not answer"), "\(nobody.standardError)")
        }
    }
}

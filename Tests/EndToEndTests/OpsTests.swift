import Foundation
import StagerKit
import StagerTestSupport
import Testing

extension E2EHarness {
    /// Runs the built `stager` executable against this harness's configuration.
    func stager(_ arguments: [String]) async throws -> CommandResult {
        try await SubprocessRunner().run(Command(StagerProcess.binary, arguments + ["--config", configFile.path], environment: environment))
    }

    /// Opens a PR on the GitHub stand-in and sends its `opened` webhook.
    func open(_ number: Int, branch: String, sha: String? = nil) async throws {
        let sha = sha ?? Fixtures.sha(branch)
        await github.setPull(number: number, branch: branch, sha: sha)
        #expect(try await send("opened", number: number, branch: branch, sha: sha).0 == 202)
    }

    /// A vhost file as Stager writes it, for an environment that does not exist.
    func writeOrphanVhost(slug: String) throws {
        let text =
            "# stager-vhost slug=\(slug) container=stager-gone port=1 sha=\(Fixtures.sha(slug))\nserver { listen 127.0.0.1:\(nginxPort); server_name \(slug).preview.localhost; return 410; }\n"
        try text.write(to: dir.appendingPathComponent("nginx/sites/\(slug).conf"), atomically: true, encoding: .utf8)
    }

    /// A container with this instance's labels and no environment, as a crash or a hand would leave it.
    func startOrphanContainer(number: Int) async throws -> String {
        try await SubprocessRunner().check(
            Command(
                "docker",
                [
                    "run", "-d", "--label", "stager.managed=true", "--label", "stager.instance=\(instance)",
                    "--label", "stager.repo=acme/web", "--label", "stager.pr=\(number)", "--", E2EHarness.image,
                    "/bin/busybox", "sleep", "600",
                ]
            )
        ).standardOutput.trimmingCharacters(in: .whitespacesAndNewlines)
    }
}

/// The ops' commands on the real engine and nginx, run as the built executable beside a serving Stager.
@Suite("End to end: ops commands", .serialized, .enabled(if: E2EHarness.available))
struct OpsTests {
    /// gc removes exactly the leaks: a PR closed on GitHub without a webhook, an orphan labelled container,
    /// an orphan vhost; it keeps the live environment serving, keeps a PR GitHub gives no answer for, and
    /// leaves a foreign file alone. `--dry-run` first changes nothing.
    @Test func gcRemovesExactlyTheLeaks() async throws {
        try await E2EHarness.run(name: "gc") { harness in
            try await harness.open(1, branch: "live")
            try await harness.open(2, branch: "closed-quietly")
            try await harness.open(3, branch: "unknown-to-github")
            for number in 1...3 { #expect(try await harness.waitSettled(number, status: .ready)) }
            await harness.github.setPull(
                number: 2,
                branch: "closed-quietly",
                sha: Fixtures.sha("closed-quietly"),
                state: "closed",
                merged: true,
                updatedAt: "2026-11-24T10:00:00Z"
            )
            // PR 3 vanishes from GitHub's view (as with a token that lost access): 404 is unknown, never closed.
            await harness.github.removePull(number: 3)
            let orphan = try await harness.startOrphanContainer(number: 999)
            try harness.writeOrphanVhost(slug: "orphan")
            let foreign = harness.dir.appendingPathComponent("nginx/sites/README.txt")
            try "not Stager's\n".write(to: foreign, atomically: true, encoding: .utf8)
            let containersBefore = try await harness.containers().count
            #expect(containersBefore == 4)

            let dry = try await harness.stager(["gc", "--dry-run", "--json"])
            #expect(dry.exitCode == 0, "\(dry.standardError)")
            let items = dry.standardOutput.split(separator: "\n").dropLast().compactMap {
                try? JSONDecoder().decode(GcItem.self, from: Data($0.utf8))
            }
            #expect(Set(items.filter { $0.action == .wouldRemove }.map(\.kind)) == [.environment, .container, .vhost])
            #expect(items.contains { $0.action == .wouldRemove && $0.item.hasPrefix("acme/web#2") && $0.reason == "PR merged on GitHub" })
            #expect(items.contains { $0.action == .kept && $0.item == "acme/web#3" && $0.reason.contains("404") })
            #expect(items.contains { $0.action == .reported && $0.item == "README.txt" })
            #expect(dry.standardOutput.contains("gc: would remove 1 environment, 1 container, 1 vhost; kept 2 (1 unknown)"))
            #expect(try await harness.containers().count == containersBefore)
            #expect(harness.vhosts().contains("orphan.conf"))
            #expect(try harness.environment(2)?.status == .ready)

            let gc = try await harness.stager(["gc"])
            #expect(gc.exitCode == 0, "\(gc.standardError)")
            #expect(gc.standardOutput.contains("gc: removed 1 environment, 1 container, 1 vhost; kept 2 (1 unknown)"), "\(gc.standardOutput)")
            #expect(gc.standardOutput.split(separator: "\n").first?.hasPrefix("ACTION") == true)
            let containers = try await harness.containers()
            #expect(Set(containers.map(\.number)) == [1, 3])
            #expect(!containers.contains { $0.id == orphan })
            #expect(harness.vhosts() == ["live.conf", "unknown-to-github.conf"])
            #expect(FileManager.default.fileExists(atPath: foreign.path))
            #expect(try harness.environment(2)?.status == .removed)
            #expect(await harness.github.comments(on: "acme/web", issue: 2).isEmpty)
            #expect(await harness.throughNginx(slug: "live")?.status == 200)
            #expect(await harness.throughNginx(slug: "unknown-to-github")?.status == 200)

            // A second run finds nothing more to do.
            let again = try await harness.stager(["gc"])
            #expect(again.standardOutput.contains("gc: removed 0 environments, 0 containers, 0 vhosts; kept 2 (1 unknown)"))
        }
    }

    /// With `gc.remove_images`, the per-PR image of a removed environment goes too; a shared one never does.
    @Test func gcRemovesPerPullRequestImages() async throws {
        let repository = "stager/e2e-gc-\(UUID().uuidString.prefix(8).lowercased())"
        try await E2EHarness.run(
            name: "gc-images",
            extraRepos: """
                  acme/tagged:
                    image: "\(repository):pr-{{number}}"
                    command: \(E2EHarness.servingCommand)
                    port: 8080
                """,
            extraConfig: "gc:\n  remove_images: true"
        ) { harness in
            let runner = SubprocessRunner()
            for number in [70, 71] {
                try await runner.check(Command("docker", ["tag", E2EHarness.image, "\(repository):pr-\(number)"]))
                await harness.github.setPull(repo: "acme/tagged", number: number, branch: "tagged-\(number)", sha: Fixtures.sha("t\(number)"))
                #expect(
                    try await harness.send("opened", number: number, branch: "tagged-\(number)", sha: Fixtures.sha("t\(number)"), repo: "acme/tagged")
                        .0 == 202
                )
                #expect(try await harness.waitSettled(number, repo: "acme/tagged", status: .ready))
            }
            try await harness.open(1, branch: "shared-image")
            #expect(try await harness.waitSettled(1, status: .ready))
            await harness.github.setPull(repo: "acme/tagged", number: 70, branch: "tagged-70", sha: Fixtures.sha("t70"), state: "closed")
            await harness.github.setPull(number: 1, branch: "shared-image", sha: Fixtures.sha("shared-image"), state: "closed")

            let gc = try await harness.stager(["gc"])
            #expect(gc.exitCode == 0, "\(gc.standardError)")
            #expect(gc.standardOutput.contains("gc: removed 2 environments, 0 containers, 0 vhosts, 1 image; kept 1"), "\(gc.standardOutput)")
            let images = try await runner.check(Command("docker", ["image", "ls", "--format", "{{.Repository}}:{{.Tag}}"])).standardOutput
            #expect(!images.contains("\(repository):pr-70"))
            #expect(images.contains("\(repository):pr-71"))
            #expect(images.contains(E2EHarness.image))
            _ = try? await runner.run(Command("docker", ["image", "rm", "\(repository):pr-71"]))
        }
    }

    /// Lost `opened` events: gc reports the open PR, `sync` creates it, and the running serve deploys it.
    @Test func syncCatchesUpOnLostOpenedEvents() async throws {
        try await E2EHarness.run(name: "sync") { harness in
            await harness.github.setPull(number: 5, branch: "lost-event", sha: Fixtures.sha("lost-event"))
            let gc = try await harness.stager(["gc", "--dry-run"])
            #expect(gc.standardOutput.contains("acme/web#5"), "\(gc.standardOutput)")
            #expect(gc.standardOutput.contains("1 open PR without an environment"))

            let sync = try await harness.stager(["sync"])
            #expect(sync.exitCode == 0, "\(sync.standardError)")
            #expect(sync.standardOutput.contains("queued acme/web#5 (lost-event)"))
            #expect(try await harness.waitSettled(5, status: .ready))
            #expect(await harness.throughNginx(slug: "lost-event")?.body.contains(Fixtures.sha("lost-event")) == true)
            // Nothing left to catch up on.
            #expect(try await harness.stager(["sync"]).standardOutput.contains("sync: queued 0"))
        }
    }

    /// deploy reads the PR from GitHub and waits for serve; --sha goes back to an earlier commit; destroy
    /// tears down. Bad requests fail with a message and change nothing.
    @Test func manualDeployAndDestroy() async throws {
        try await E2EHarness.run(name: "manual") { harness in
            let old = Fixtures.sha("old")
            let head = Fixtures.sha("head")
            await harness.github.setPull(number: 6, branch: "by-hand", sha: head)
            let deploy = try await harness.stager(["deploy", "acme/web#6"])
            #expect(deploy.exitCode == 0, "\(deploy.standardError)")
            #expect(
                deploy.standardOutput.contains("acme/web#6: ready at http://by-hand.preview.localhost:\(harness.nginxPort)"),
                "\(deploy.standardOutput)"
            )
            #expect(await harness.throughNginx(slug: "by-hand")?.body.contains("sha=\(head)") == true)

            let back = try await harness.stager(["deploy", "acme/web#6", "--sha", old])
            #expect(back.exitCode == 0, "\(back.standardError)")
            #expect(await harness.throughNginx(slug: "by-hand")?.body.contains("sha=\(old)") == true)
            #expect(try await harness.containers().map(\.sha) == [old])

            let list = try await harness.stager(["ls", "--json"])
            let views = try JSONDecoder().decode([EnvironmentView].self, from: Data(list.standardOutput.utf8))
            let running = try await harness.containers()
            #expect(views.count == 1)
            #expect(views.first?.container_id == running.first?.id)
            #expect(views.first?.deployed_sha == old && views.first?.status == "ready" && views.first?.degraded == nil)
            let table = try await harness.stager(["ls"]).standardOutput
            #expect(table.contains("IDLE") && table.contains("CONTAINER") && table.contains(String(running.first?.id.prefix(12) ?? "?")))

            let destroy = try await harness.stager(["destroy", "acme/web#6"])
            #expect(destroy.exitCode == 0, "\(destroy.standardError)")
            #expect(destroy.standardOutput.contains("acme/web#6: removed"))
            #expect(try await harness.containers().isEmpty)
            #expect(harness.vhosts().isEmpty)

            await harness.github.setPull(number: 7, branch: "done", sha: head, state: "closed")
            let closed = try await harness.stager(["deploy", "acme/web#7"])
            #expect(closed.exitCode == 1 && closed.standardError.contains("closed on GitHub"))
            let unconfigured = try await harness.stager(["deploy", "other/repo#1"])
            #expect(unconfigured.exitCode == 1 && unconfigured.standardError.contains("not a configured repository"))
            #expect(try await harness.stager(["deploy", "acme-web-6"]).exitCode == 2)
            #expect(try await harness.stager(["deploy", "acme/web#6", "--sha", "not-a-sha"]).exitCode == 2)
            #expect(try await harness.stager(["destroy", "acme/web#8"]).exitCode == 1)
            #expect(try harness.environment(7) == nil)

            // Without serve nothing is recorded: the command says so at once.
            await harness.stop()
            let unattended = try await harness.stager(["deploy", "acme/web#6"])
            #expect(unattended.exitCode == 1 && unattended.standardError.contains("stager serve is not running"), "\(unattended.standardError)")
        }
    }

    /// `stager check` reads each configured repository with the token and says which one fails.
    @Test func checkReadsEachRepositoryWithTheToken() async throws {
        try await E2EHarness.run(
            name: "check",
            extraRepos: """
                  acme/private:
                    image: "\(E2EHarness.image)"
                """,
            start: false
        ) { harness in
            await harness.github.inject(.init(status: 404, body: "{\"message\":\"Not Found\"}", pathContains: "/repos/acme/private/"), times: 5)
            let check = try await harness.stager(["check"])
            #expect(check.exitCode == 1)
            #expect(check.standardOutput.contains("ok   github acme/web"), "\(check.standardOutput)")
            #expect(check.standardOutput.contains("FAIL github acme/private"))
            #expect(check.standardOutput.contains("ok   nginx include"))
            #expect(check.standardOutput.contains("ok   engine"))
        }
    }
}

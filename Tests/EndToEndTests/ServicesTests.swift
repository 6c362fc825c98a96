import Foundation
import StagerKit
import StagerTestSupport
import Testing

/// Services beside the app on the real engine: a data service seeded from a volume, read by the app and
/// by the release command through the environment's own network.
@Suite("End to end: services beside the app", .serialized, .enabled(if: E2EHarness.available))
struct ServicesTests {
    let runner = SubprocessRunner()

    /// The app writes what its `db` answers into its page; `db` serves its volume with busybox httpd on
    /// 8080 (`healthPort` elsewhere: a service that never gets healthy).
    /// A stack's deploy is a dozen docker calls (network, seed copy, service, release, app, health checks): in a
    /// full run with every suite starting at once they took 49 s here and past 60 s on CI.
    static let stackTimeout: Duration = .seconds(180)

    static func stackRepo(_ name: String, seed: String, failingSha: String = "", healthPort: Int = 8080) -> String {
        let image = E2EHarness.image
        return """
              \(name):
                image: "\(image)"
                command: ["/bin/busybox", "sh", "-c", "v=$(/bin/busybox wget -qO- http://db:8080/value); echo \\"sha=$STAGER_SHA data=$v\\" > /www/index.html; exec /bin/busybox httpd -f -p 8080 -h /www"]
                port: 8080
                health_timeout: "20s"
                release: ["/bin/busybox", "sh", "-c", "[ \\"$STAGER_SHA\\" != '\(failingSha)' ] || { echo 'migration 7 failed'; exit 3; }; echo release for $STAGER_SHA; /bin/busybox wget -qO- http://db:8080/value"]
                services:
                  db:
                    image: "\(image)"
                    command: ["/bin/busybox", "httpd", "-f", "-p", "8080", "-h", "/data"]
                    port: \(healthPort)
                    health_path: "/value"
                    health_timeout: "30s"
                    volumes: {data: "/data"}
                    seed: {data: "\(seed)"}
            """
    }

    /// A docker volume holding `value`, labelled so that a leftover is recognisable.
    func makeSeed(_ name: String, value: String) async throws {
        _ = try await runner.check(Command("docker", ["volume", "create", "--label", "stager.test-seed=true", name]))
        _ = try await runner.check(
            Command(
                "docker",
                [
                    "run", "--rm", "--mount", "type=volume,src=\(name),dst=/d", E2EHarness.image,
                    "/bin/busybox", "sh", "-c", "echo \(value) > /d/value",
                ]
            )
        )
    }

    /// A seed volume holding `value` for the length of `body`, removed after it whatever happened.
    func withSeed(_ value: String, _ body: (String) async throws -> Void) async throws {
        let seed = "stager-e2e-seed-\(UUID().uuidString.prefix(8).lowercased())"
        try await makeSeed(seed, value: value)
        let outcome = await Result { try await body(seed) }
        _ = try? await runner.run(Command("docker", ["volume", "rm", seed]))  // already gone is fine
        try outcome.get()
    }

    func exec(_ container: String, _ script: String) async throws -> String {
        try await runner.check(Command("docker", ["exec", container, "/bin/busybox", "sh", "-c", script])).standardOutput
            .trimmingCharacters(in: .whitespacesAndNewlines)
    }

    func resources(_ harness: E2EHarness, _ kind: String, pr: Int) async throws -> [String] {
        try await runner.check(
            Command(
                "docker",
                [
                    kind, "ls", "-q", "--filter", "label=stager.instance=\(harness.instance)",
                    "--filter", "label=stager.pr=\(pr)",
                ]
            )
        ).standardOutput.split(separator: "\n").map(String.init)
    }

    func app(_ harness: E2EHarness, _ number: Int) async throws -> ContainerInfo? {
        try await harness.containers().first { $0.number == number && $0.service == nil && $0.running }
    }

    func service(_ harness: E2EHarness, _ number: Int, _ name: String) async throws -> ContainerInfo? {
        try await harness.containers().first { $0.number == number && $0.service == name }
    }

    @Test func seededDataIsolatedKeptOnPushAndGoneOnClose() async throws {
        try await withSeed("seeded-42") { seed in
            // The defaults: no docker.seed_image, so each service's own image copies its seed (nothing is pulled;
            // no registry is reachable here).
            try await E2EHarness.run(name: "services", extraRepos: Self.stackRepo("acme/stack", seed: seed)) { harness in
                let check = try await harness.stager(["check"]).standardOutput
                #expect(check.contains("seed copies: cp -a in each service's own image"), "\(check)")
                let (one, two) = (Fixtures.sha("stack-one"), Fixtures.sha("stack-two"))
                try await harness.send("opened", number: 70, branch: "stack-one", sha: one, repo: "acme/stack")
                try await harness.send("opened", number: 71, branch: "stack-two", sha: two, repo: "acme/stack")
                #expect(
                    try await harness.waitUntil(timeout: Self.stackTimeout) {
                        await harness.throughNginx(slug: "stack-one")?.body.contains("sha=\(one) data=seeded-42") == true
                    }
                )
                #expect(
                    try await harness.waitUntil(timeout: Self.stackTimeout) {
                        await harness.throughNginx(slug: "stack-two")?.body.contains("sha=\(two) data=seeded-42") == true
                    }
                )

                // A write in one environment's data is not seen by the other; `db` is each one's own.
                let db70 = try #require(try await service(harness, 70, "db"))
                _ = try await exec(db70.id, "echo changed-70 > /data/value")
                let app70 = try #require(try await app(harness, 70))
                let app71 = try #require(try await app(harness, 71))
                #expect(try await exec(app70.id, "/bin/busybox wget -qO- http://db:8080/value") == "changed-70")
                #expect(try await exec(app71.id, "/bin/busybox wget -qO- http://db:8080/value") == "seeded-42")
                // Services are not published on the host.
                #expect(db70.hostPort == nil)

                // A push: the data and the service container stay, the release runs again in the new image.
                let three = Fixtures.sha("stack-three")
                try await harness.send(
                    "synchronize",
                    number: 70,
                    branch: "stack-one",
                    sha: three,
                    updatedAt: "2026-11-24T09:05:00Z",
                    repo: "acme/stack"
                )
                #expect(
                    try await harness.waitUntil(timeout: Self.stackTimeout) {
                        await harness.throughNginx(slug: "stack-one")?.body.contains("sha=\(three) data=changed-70") == true
                    }
                )
                #expect(try await service(harness, 70, "db")?.id == db70.id)
                let store = try #require(harness.app?.store)
                let releases = try store.auditEvents(for: PullRequestKey(repo: "acme/stack", number: 70), limit: 500).filter { $0.kind == "release" }
                #expect(releases.filter { $0.sha == one }.count == 1 && releases.filter { $0.sha == three }.count == 1, "\(releases.map(\.message))")
                #expect(
                    releases.allSatisfy { $0.message.contains("exited 0") && $0.message.contains("release for \($0.sha ?? "-")") },
                    "each release ran with its own deploy's variables and reached db: \(releases.map(\.message))"
                )

                // Close: app, service, network and volume go; the other environment keeps serving.
                try await harness.send("closed", number: 70, branch: "stack-one", sha: three, updatedAt: "2026-11-24T09:10:00Z", repo: "acme/stack")
                #expect(
                    try await harness.waitUntil(timeout: Self.stackTimeout) {
                        let containers = try await harness.containers().filter { $0.number == 70 }
                        let networks = try await resources(harness, "network", pr: 70)
                        let volumes = try await resources(harness, "volume", pr: 70)
                        return containers.isEmpty && networks.isEmpty && volumes.isEmpty
                    }
                )
                #expect(try await harness.waitSettled(70, repo: "acme/stack", status: .removed))
                #expect(await harness.throughNginx(slug: "stack-two")?.body.contains("data=seeded-42") == true)
                #expect(try await resources(harness, "volume", pr: 71).count == 1)
            }
        }
    }

    @Test func aFailingReleaseOrAnUnhealthyServiceFailsNamingItWhileTheOldAppServes() async throws {
        try await withSeed("seeded-7") { seed in
            let bad = Fixtures.sha("bad-release")
            try await E2EHarness.run(
                name: "services-fail",
                extraRepos: Self.stackRepo("acme/stack", seed: seed, failingSha: bad)
                    + "\n" + Self.stackRepo("acme/sick", seed: seed, healthPort: 9999),
                extraConfig: "docker:\n  seed_image: \"\(E2EHarness.image)\""
            ) { harness in
                let good = Fixtures.sha("good-release")
                try await harness.send("opened", number: 72, branch: "release", sha: good, repo: "acme/stack")
                #expect(try await harness.waitSettled(72, repo: "acme/stack", status: .ready, timeout: Self.stackTimeout))
                try await harness.send("synchronize", number: 72, branch: "release", sha: bad, updatedAt: "2026-11-24T09:05:00Z", repo: "acme/stack")
                #expect(try await harness.waitSettled(72, repo: "acme/stack", status: .failed, timeout: Self.stackTimeout))
                let comment = await harness.github.comments(on: "acme/stack", issue: 72).last?.body ?? ""
                #expect(comment.contains("exited 3") && comment.contains("migration 7 failed"), "\(comment)")
                #expect(await harness.throughNginx(slug: "release")?.body.contains("sha=\(good)") == true)

                try await harness.send("opened", number: 73, branch: "sick", sha: Fixtures.sha("sick"), repo: "acme/sick")
                #expect(try await harness.waitSettled(73, repo: "acme/sick", status: .failed, timeout: Self.stackTimeout))
                let sick = await harness.github.comments(on: "acme/sick", issue: 73).last?.body ?? ""
                #expect(sick.contains("service db was not healthy"), "\(sick)")
                #expect(try await app(harness, 73) == nil, "no app started beside an unhealthy service")
            }
        }
    }

    @Test func aServiceContainerRemovedByHandComesBack() async throws {
        try await withSeed("seeded-9") { seed in
            try await E2EHarness.run(
                name: "services-drift",
                extraRepos: Self.stackRepo("acme/stack", seed: seed),
                reconcileInterval: "1s",
                extraConfig: "docker:\n  seed_image: \"\(E2EHarness.image)\""
            ) { harness in
                try await harness.send("opened", number: 74, branch: "drift", sha: Fixtures.sha("drift"), repo: "acme/stack")
                #expect(try await harness.waitSettled(74, repo: "acme/stack", status: .ready, timeout: Self.stackTimeout))
                let app = try #require(try await app(harness, 74))
                let db = try #require(try await service(harness, 74, "db"))
                _ = try await runner.check(Command("docker", ["rm", "-f", db.id]))
                #expect(
                    try await harness.waitUntil(timeout: Self.stackTimeout) {
                        guard let again = try await service(harness, 74, "db") else { return false }
                        return again.id != db.id && again.running
                    }
                )
                #expect(try await self.app(harness, 74)?.id == app.id, "the app was not touched")
                // The volume kept the data: the new db answers what the old one did.
                #expect(try await exec(app.id, "/bin/busybox wget -qO- http://db:8080/value") == "seeded-9")

                // Where people see the services: ls, the page, logs --service, check.
                let table = try await harness.stager(["ls"]).standardOutput
                #expect(table.contains("SERVICES") && table.contains(" db "), "\(table)")
                #expect(try await harness.get("/environments/acme/stack/74").body.contains("<code>db</code> healthy"))
                let logs = try await harness.stager(["logs", "acme/stack#74", "--service", "db"])
                #expect(logs.exitCode == 0, "\(logs.standardError)")
                let missing = try await harness.stager(["logs", "acme/stack#74", "--service", "cache"])
                #expect(
                    missing.exitCode == 1 && missing.standardError.contains("no container of service cache (its services: db)"),
                    "\(missing.standardError)"
                )
                let check = try await harness.stager(["check"]).standardOutput
                #expect(check.contains("ok   seed repos.acme/stack.services.db.seed.data: the docker volume \(seed) exists"), "\(check)")
            }
        }
    }

    /// A leaked service container, network and volume (a PR with no environment): `gc --dry-run` lists them
    /// by kind and leaves them; `gc` removes them. No serve runs: its reconciler would remove them first.
    @Test func gcRemovesALeakedServiceNetworkAndVolume() async throws {
        try await E2EHarness.run(name: "services-gc") { harness in
            // serve's own start-up reconcile would take what is leaked while it runs.
            #expect(try await harness.waitReconciled())
            let labels = [
                "--label", "stager.managed=true", "--label", "stager.instance=\(harness.instance)",
                "--label", "stager.repo=acme/web", "--label", "stager.pr=998",
            ]
            let prefix = "stager-\(harness.instance)-leaked"
            _ = try await runner.check(Command("docker", ["network", "create"] + labels + ["\(prefix)"]))
            _ = try await runner.check(Command("docker", ["volume", "create"] + labels + ["\(prefix)-db-data"]))
            _ = try await runner.check(
                Command(
                    "docker",
                    [
                        "run", "-d", "--name", "\(prefix)-db", "--network", prefix,
                        "--mount", "type=volume,src=\(prefix)-db-data,dst=/data",
                    ] + labels
                        + [
                            "--label", "stager.role=service", "--label", "stager.service=db",
                            "--", E2EHarness.image, "/bin/busybox", "httpd", "-f", "-p", "8080",
                        ]
                )
            )

            let dry = try await harness.stager(["gc", "--dry-run", "--json"])
            #expect(dry.exitCode == 0, "\(dry.standardError)")
            let items = dry.standardOutput.split(separator: "\n").dropLast().compactMap {
                try? JSONDecoder().decode(GcItem.self, from: Data($0.utf8))
            }
            #expect(Set(items.filter { $0.action == .wouldRemove }.map(\.kind)) == [.service, .network, .volume], "\(items)")
            #expect(
                dry.standardOutput.contains("gc: would remove 0 environments, 1 container, 0 vhosts, 2 networks and volumes; kept 0"),
                "\(dry.standardOutput)"
            )
            #expect(try await resources(harness, "network", pr: 998).count == 1)

            let gc = try await harness.stager(["gc"])
            #expect(gc.exitCode == 0, "\(gc.standardError)")
            #expect(
                gc.standardOutput.contains("gc: removed 0 environments, 1 container, 0 vhosts, 2 networks and volumes; kept 0; done by stager serve"),
                "\(gc.standardOutput)"
            )
            #expect(try await harness.containers().filter { $0.number == 998 }.isEmpty)
            #expect(try await resources(harness, "network", pr: 998).isEmpty)
            #expect(try await resources(harness, "volume", pr: 998).isEmpty)
        }
    }
}

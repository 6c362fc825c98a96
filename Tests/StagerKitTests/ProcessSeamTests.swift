import Foundation
import Logging
import StagerTestSupport
import Testing

@testable import StagerKit

@Suite("Commands Stager runs")
struct ProcessSeamTests {
    /// Through `nice`, a missing program is still "could not start" (the engine or nginx is unavailable),
    /// not a command that ran and refused.
    @Test func aMissingProgramCannotStartWithOrWithoutNice() async throws {
        for runner in [SubprocessRunner(), SubprocessRunner(niceness: 10)] {
            await #expect {
                try await runner.run(Command("stager-no-such-program", ["ps"]))
            } throws: { error in
                guard case CommandError.couldNotStart = error else { return false }
                return true
            }
        }
        let niced = try await SubprocessRunner(niceness: 10).run(Command("sh", ["-c", "echo $(nice); exit 3"]))
        #expect(niced.exitCode == 3 && niced.standardOutput.trimmingCharacters(in: .whitespacesAndNewlines) == "10")
    }

    /// A program that does not end by its limit is killed and named, collected or streamed; one that ends in
    /// time is untouched by the limit.
    @Test func aCommandPastItsLimitIsKilled() async throws {
        let scratch = try TestConfig.temporaryDirectory("limit")
        defer { try? FileManager.default.removeItem(at: scratch) }
        let marker = scratch.appendingPathComponent("pid").path
        // Seconds, not milliseconds: with every suite starting at once, a shell can take a while to run at all.
        let hang = Command("sh", ["-c", "echo $$ > \(marker); exec sleep 60"], timeout: .seconds(5))
        let started = ContinuousClock.now
        await #expect {
            try await SubprocessRunner().run(hang)
        } throws: { error in
            guard case CommandError.timedOut(_, let limit) = error else { return false }
            return limit == .seconds(5) && "\(error)".contains("did not finish within")
        }
        #expect(ContinuousClock.now - started < .seconds(20))
        let pid = try String(contentsOfFile: marker, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(try await Poller().until(timeout: .seconds(5)) { !ProcessLiveness.isRunning(pid_t(pid) ?? 0) }, "the hung program was killed")
        await #expect(throws: CommandError.self) {
            try await SubprocessRunner().stream(hang, to: .file(scratch.appendingPathComponent("out")))
        }
        let quick = try await SubprocessRunner(timeout: .seconds(5)).run(Command("sh", ["-c", "echo done"]))
        #expect(quick.standardOutput == "done\n")
    }

    @Test func dockerRunIsArgvWithLabelsLimitsAndLoopbackOnly() async throws {
        let envFile = EnvFileSeen()
        let runner = RecordingRunner { command in
            if let index = command.arguments.firstIndex(of: "--env-file") { envFile.record(command.arguments[index + 1]) }
            return command.arguments.contains("port")
                ? CommandResult(exitCode: 0, standardOutput: "127.0.0.1:49153\n")
                : CommandResult(exitCode: 0, standardOutput: "abc123\n")
        }
        let scratch = try TestConfig.temporaryDirectory("scratch")
        let docker = DockerCLI(command: ["docker", "--context", "x"], instance: "default", runner: runner, scratchDir: scratch)
        let spec = ContainerSpec(
            name: "stager-default-feat-abc1234-0000",
            image: "acme/web:pr-1",
            command: ["serve", "--port", "8080"],
            containerPort: 8080,
            labels: ["stager.managed": "true", "stager.branch": "a;b $(x)"],
            environment: ["STAGER_BRANCH": "a;b $(x)", "API_KEY": "s3cret"],
            memory: "256m",
            cpus: "0.5",
            pids: 64,
            capAdd: ["NET_BIND_SERVICE"],
            readOnly: true
        )
        let started = try await docker.start(spec)
        #expect(started.id == "abc123" && started.upstream == Upstream(port: 49153))
        let run = try #require(runner.commands.first)
        #expect(run.executable == "docker")
        #expect(Array(run.arguments.prefix(3)) == ["--context", "x", "run"])
        #expect(run.arguments.contains("127.0.0.1::8080"))
        #expect(run.arguments.contains("stager.branch=a;b $(x)"))
        // Variables travel in a 0600 file that is gone once docker has read it, never in argv.
        #expect(!run.arguments.contains { $0.contains("s3cret") || $0.contains("STAGER_BRANCH") })
        #expect(envFile.seen?.text == "API_KEY=s3cret\nSTAGER_BRANCH=a;b $(x)\n" && envFile.seen?.mode == 0o600)
        #expect(!FileManager.default.fileExists(atPath: envFile.seen?.path ?? "/"))
        for flag in [["--security-opt", "no-new-privileges"], ["--cap-drop", "ALL"], ["--cap-add", "NET_BIND_SERVICE"], ["--tmpfs", "/tmp"]] {
            let index = try #require(run.arguments.firstIndex(of: flag[0]))
            #expect(run.arguments[index + 1] == flag[1])
        }
        #expect(run.arguments.contains("--read-only") && !run.arguments.contains("--privileged"))
        for (flag, value) in [("--memory", "256m"), ("--cpus", "0.5"), ("--pids-limit", "64")] {
            let index = try #require(run.arguments.firstIndex(of: flag))
            #expect(run.arguments[index + 1] == value)
        }
        let dashDash = try #require(run.arguments.firstIndex(of: "--"))
        #expect(Array(run.arguments[(dashDash + 1)...]) == ["acme/web:pr-1", "serve", "--port", "8080"])
        #expect(runner.commands[1].arguments.suffix(3) == ["port", "abc123", "8080/tcp"])
    }

    /// `check` fails when `nginx -T` shows no include of the sites folder.
    @Test func checkSaysWhenNginxDoesNotIncludeTheSitesFolder() async throws {
        let dir = try TestConfig.temporaryDirectory("include")
        let config = try TestConfig.load("nginx:\n  sites_dir: sites\n", in: dir)
        let sites = config.nginx.sitesDir.standardizedFileURL.path
        for (dump, passes) in [("http {\n    include /etc/nginx/other/*.conf;\n}\n", false), ("http {\n    include \(sites)/*.conf;\n}\n", true)] {
            let runner = RecordingRunner { command in
                command.arguments.contains("-T") ? CommandResult(exitCode: 0, standardOutput: dump) : CommandResult(exitCode: 0)
            }
            let results = await Preflight(config: config, runner: runner).run()
            let include = try #require(results.first { $0.name == "nginx include" })
            #expect(include.passed == passes, "\(include.line)")
        }
    }

    /// The argv of every docker call a stack makes: services unpublished on the environment's network under
    /// their name, volumes by --mount, the release run to its end, the seed copied read-only without network.
    @Test func theStacksDockerCallsAreArgvOnly() async throws {
        let runner = RecordingRunner { command in
            switch command.arguments.first {
            case "network" where command.arguments.contains("ls"): CommandResult(exitCode: 0, standardOutput: "stager-default-pr-1\tacme/web\t1\n")
            case "volume" where command.arguments.contains("ls"):
                CommandResult(exitCode: 0, standardOutput: "stager-default-pr-1-db-data\tacme/web\t1\nforeign\t\t\n")
            case "network" where command.arguments.contains("create"): CommandResult(exitCode: 1, standardError: "network with name x already exists")
            case "run" where command.arguments.contains("stager-default-pr-1-release"):
                CommandResult(exitCode: 3, standardOutput: "migration failed\n")
            default: CommandResult(exitCode: 0, standardOutput: "id1\n")
            }
        }
        let docker = DockerCLI(command: ["docker"], instance: "default", runner: runner, scratchDir: try TestConfig.temporaryDirectory("scratch"))
        var spec = ContainerSpec(
            name: "stager-default-pr-1-db",
            image: "postgres:16",
            command: [],
            containerPort: 5432,
            labels: ["stager.role": "service"],
            environment: ["POSTGRES_PASSWORD": "pw"],
            memory: "256m",
            cpus: "1",
            pids: 64
        )
        spec.network = "stager-default-pr-1"
        spec.alias = "db"
        spec.publish = false
        spec.mounts = ["stager-default-pr-1-db-data": "/var/lib/postgresql/data"]
        #expect(try await docker.startService(spec) == "id1")
        try await docker.ensureNetwork("stager-default-pr-1", labels: ["stager.pr": "1"])
        try await docker.ensureVolume("stager-default-pr-1-db-data", labels: ["stager.pr": "1"])
        try await docker.copyVolume(from: "seed", to: "stager-default-pr-1-db-data", with: .busybox(image: "busybox"), labels: ["stager.pr": "1"])
        var release = spec
        release.name = "stager-default-pr-1-release"
        release.command = ["bin/migrate", "--all"]
        let ended = try await docker.runToEnd(release, timeout: .seconds(5))
        #expect(ended.exitCode == 3 && ended.output == "migration failed")
        let resources = try await docker.stackResources(for: PullRequestKey(repo: "acme/web", number: 1))
        #expect(
            resources == [
                StackResource(kind: .network, name: "stager-default-pr-1", repo: "acme/web", number: 1),
                StackResource(kind: .volume, name: "stager-default-pr-1-db-data", repo: "acme/web", number: 1),
            ]
        )

        let calls = runner.commands.map(\.arguments)
        let service = calls[0]
        #expect(Array(service.prefix(4)) == ["run", "--detach", "--name", "stager-default-pr-1-db"])
        #expect(!service.contains("--publish") && !service.contains { $0.contains("pw") })
        #expect(service.contains("--network") && service.contains("--network-alias") && service.contains("db"))
        #expect(service.contains("type=volume,src=stager-default-pr-1-db-data,dst=/var/lib/postgresql/data"))
        #expect(service.contains("--cap-drop") && service.contains("no-new-privileges"))
        #expect(calls[1] == ["network", "create", "--driver", "bridge", "--label", "stager.pr=1", "--", "stager-default-pr-1"])
        #expect(calls[2] == ["volume", "create", "--label", "stager.pr=1", "--", "stager-default-pr-1-db-data"])
        #expect(calls[3].suffix(7) == ["--", "busybox", "busybox", "cp", "-a", "/from/.", "/to/"])
        #expect(calls[3].contains("type=volume,src=seed,dst=/from,readonly") && calls[3].contains("none"))
        #expect(Array(calls[4].prefix(4)) == ["run", "--rm", "--name", "stager-default-pr-1-release"])
        #expect(calls[4].suffix(4) == ["--", "postgres:16", "bin/migrate", "--all"])
        #expect(calls[5].prefix(2) == ["network", "ls"] && calls[5].contains("label=stager.pr=1"))
    }

    /// `check` says when nginx does not include the activity lines (last_request_at would never move).
    @Test func checkSaysWhenNginxDoesNotIncludeTheActivityFile() async throws {
        let dir = try TestConfig.temporaryDirectory("activity-include")
        let config = try TestConfig.load("nginx:\n  sites_dir: nginx/sites\n", in: dir)
        let sites = config.nginx.sitesDir.standardizedFileURL.path
        let activity = config.nginx.activityFile.standardizedFileURL.path
        #expect(activity == dir.appendingPathComponent("nginx/stager-activity.conf").standardizedFileURL.path)
        let without = "http {\n    include \(sites)/*.conf;\n}\n"
        let with = "http {\n    include \(sites)/*.conf;\n    include \(activity.dropLast(5))*.conf;\n}\n"
        for (dump, passes) in [(without, false), (with, true)] {
            let runner = RecordingRunner { command in
                command.arguments.contains("-T") ? CommandResult(exitCode: 0, standardOutput: dump) : CommandResult(exitCode: 0)
            }
            let result = try #require(await Preflight(config: config, runner: runner).run().first { $0.name == "nginx activity include" })
            #expect(result.passed == passes, "\(result.line)")
        }
    }

    @Test func aVariableWithALineBreakIsRefused() {
        #expect(throws: ContainerSpecError.lineBreakInVariable("X")) { try DockerCLI.envFileText(["X": "a\nB=evil"]) }
    }

    @Test func dockerPsOutputIsParsed() {
        let output =
            "id1\tstager-default-a\trunning\tacme/web\t7\tsha1\ta\t127.0.0.1:49153->8080/tcp\tapp\t\t\n"
            + "id2\tstager-default-b\texited\tacme/web\t8\tsha2\tb\t\t\t\t\nbroken line\n"
            + "id3\tstager-default-a-db\trunning\tacme/web\t7\t\ta\t5432/tcp\tservice\tdb\tab12\n"
        let containers = DockerCLI.parseList(output)
        #expect(containers.count == 3)
        #expect(
            containers[0]
                == ContainerInfo(
                    id: "id1",
                    name: "stager-default-a",
                    repo: "acme/web",
                    number: 7,
                    sha: "sha1",
                    slug: "a",
                    running: true,
                    hostPort: 49153
                )
        )
        #expect(containers[1].running == false && containers[1].hostPort == nil && containers[1].service == nil)
        #expect(containers[2].service == "db" && containers[2].definition == "ab12" && containers[2].hostPort == nil)
    }

    /// A removal serve already started is done only once the container is gone (gc beside serve used to
    /// report "removed" while docker was still removing it).
    @Test func aRemovalAlreadyInProgressWaitsUntilTheContainerIsGone() async throws {
        let looks = Counter()
        let runner = RecordingRunner { command in
            if command.arguments.first == "rm" {
                return CommandResult(exitCode: 1, standardError: "Error response from daemon: removal of container c1 is already in progress")
            }
            // The first two looks still find it.
            return looks.next() <= 2
                ? CommandResult(exitCode: 0, standardOutput: "c1\n")
                : CommandResult(exitCode: 1, standardError: "Error response from daemon: No such container: c1")
        }
        try await DockerCLI(command: ["docker"], instance: "t", runner: runner).remove("c1")
        #expect(runner.commands.map { $0.arguments.first } == ["rm", "container", "container", "container"])
    }

    /// nginx rejecting a vhost: the file is rolled back (here: removed, as there was none), nothing is reloaded.
    @Test func rejectedVhostIsRolledBack() async throws {
        let dir = try TestConfig.temporaryDirectory("rollback")
        let config = try TestConfig.load("nginx:\n  sites_dir: sites\n", in: dir)
        let runner = RecordingRunner { command in
            command.arguments.contains("-t")
                ? CommandResult(exitCode: 1, standardError: "nginx: [emerg] unexpected \"}\"") : CommandResult(exitCode: 0)
        }
        let door = NginxFrontDoor(
            config: config.nginx,
            wakePath: WakePath(address: "127.0.0.1:9", token: "t", holdFor: .seconds(60)),
            template: try Templates.load().vhost,
            runner: runner,
            logger: Logger(label: "t")
        )
        let route = Route(
            key: PullRequestKey(repo: "acme/web", number: 1),
            slug: "feat",
            hostName: "feat.preview.localhost",
            upstreamPort: 40000,
            containerName: "c1",
            sha: "abc"
        )
        await #expect(throws: NginxError.rejected("nginx: [emerg] unexpected \"}\"")) { try await door.apply(route) }
        #expect(!FileManager.default.fileExists(atPath: config.nginx.sitesDir.appendingPathComponent("feat.conf").path))
        #expect(runner.commands.map(\.arguments) == [["-t"]])
        #expect(await door.reloadCount == 0)
    }

    @Test func acceptedVhostIsTestedThenReloaded() async throws {
        let dir = try TestConfig.temporaryDirectory("reload")
        let config = try TestConfig.load("nginx:\n  sites_dir: sites\n", in: dir)
        let runner = RecordingRunner()
        let door = NginxFrontDoor(
            config: config.nginx,
            wakePath: WakePath(address: "127.0.0.1:9", token: "t", holdFor: .seconds(60)),
            template: try Templates.load().vhost,
            runner: runner,
            logger: Logger(label: "t")
        )
        let route = Route(
            key: PullRequestKey(repo: "acme/web", number: 1),
            slug: "feat",
            hostName: "feat.preview.localhost",
            upstreamPort: 40000,
            containerName: "c1",
            sha: "abc"
        )
        try await door.apply(route)
        #expect(runner.commands.map { [$0.executable] + $0.arguments } == [["nginx", "-t"], ["nginx", "-s", "reload"]])
        #expect(await door.routed(slug: "feat")?.container == "c1")
        let mode =
            try FileManager.default.attributesOfItem(atPath: config.nginx.sitesDir.appendingPathComponent("feat.conf").path)[.posixPermissions]
            as? Int
        #expect(mode == 0o640)
        let inventory = await door.inventory()
        #expect(inventory.managed == ["feat"])
        // Another tool's file in the folder is never Stager's.
        try "server {}".write(to: config.nginx.sitesDir.appendingPathComponent("other.conf"), atomically: true, encoding: .utf8)
        #expect(await door.inventory().foreign == ["other.conf"])
        try await door.remove(slug: "feat")
        #expect(await door.routed(slug: "feat")?.container == nil)
        await #expect(throws: NginxError.self) { try await door.remove(slug: "../etc/passwd") }
        // A symlink planted in the sites folder is never written through.
        try FileManager.default.createSymbolicLink(
            atPath: config.nginx.sitesDir.appendingPathComponent("planted.conf").path,
            withDestinationPath: "/etc/hostname"
        )
        let planted = Route(
            key: route.key,
            slug: "planted",
            hostName: "planted.preview.localhost",
            upstreamPort: 40000,
            containerName: "c2",
            sha: "abc"
        )
        await #expect(throws: NginxError.self) { try await door.apply(planted) }
        #expect(
            try FileManager.default.destinationOfSymbolicLink(atPath: config.nginx.sitesDir.appendingPathComponent("planted.conf").path)
                == "/etc/hostname"
        )
    }
}

/// What the env file held while `docker run` ran.
final class EnvFileSeen: @unchecked Sendable {
    private let lock = NSLock()
    private var value: (path: String, text: String, mode: Int)?
    var seen: (path: String, text: String, mode: Int)? { lock.withLock { value } }

    func record(_ path: String) {
        let text = (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
        let mode = ((try? FileManager.default.attributesOfItem(atPath: path))?[.posixPermissions] as? Int) ?? -1
        lock.withLock { value = (path, text, mode) }
    }
}

/// Counts calls from any thread.
final class Counter: @unchecked Sendable {
    private let lock = NSLock()
    private var value = 0
    func next() -> Int {
        lock.withLock {
            value += 1
            return value
        }
    }
}

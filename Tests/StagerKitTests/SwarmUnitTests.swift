import Foundation
import Logging
import StagerTestSupport
import Testing

@testable import StagerKit

/// The swarm runtime's pure parts: the argv it gives `docker service create`, what it reads back from
/// `docker service/node inspect`, port reservations, the configuration, and what the planner and the vhost
/// make of an upstream on another host.
@Suite("Swarm runtime: units")
struct SwarmUnitTests {
    static let spec: ContainerSpec = {
        var spec = ContainerSpec(
            name: "stager-default-feat-abc1234-0000",
            image: "registry.example.com:5000/acme/web:abc",
            command: ["serve"],
            containerPort: 8080,
            labels: [
                "stager.managed": "true", "stager.instance": "default", "stager.repo": "acme/web",
                "stager.pr": "7", "stager.branch": "a;b $(x)",
            ],
            environment: ["API_KEY": "s3cret"],
            memory: "256m",
            cpus: "0.5",
            pids: 64,
            capAdd: ["NET_BIND_SERVICE"],
            readOnly: true
        )
        spec.network = "stager-default-feat"
        spec.alias = "web"
        spec.mounts = ["stager-default-feat-db-data": "/data"]
        return spec
    }()

    @Test func createArgumentsPublishInHostModeWithLimitsHardeningLabelsAndPlacement() {
        let settings = StagerConfig.Swarm(registry: nil, constraints: ["node.labels.previews==true"], publishedPorts: 30000...30010)
        let args = SwarmRuntime.createArguments(Self.spec, settings: settings, publishedPort: 30004, envFile: "/run/x.env")
        func has(_ pair: [String]) -> Bool { args.indices.contains { Array(args[$0..<min($0 + pair.count, args.count)]) == pair } }
        #expect(Array(args.prefix(2)) == ["service", "create"])
        #expect(has(["--publish", "mode=host,target=8080,published=30004"]))
        #expect(has(["--replicas", "1"]) && has(["--restart-condition", "any"]) && args.contains("--init"))
        #expect(has(["--limit-memory", "256m"]) && has(["--limit-cpu", "0.5"]) && has(["--limit-pids", "64"]))
        #expect(has(["--cap-drop", "ALL"]) && has(["--cap-add", "NET_BIND_SERVICE"]) && args.contains("--read-only"))
        #expect(has(["--constraint", "node.labels.previews==true"]))
        #expect(has(["--network", "name=stager-default-feat,alias=web"]))
        #expect(has(["--endpoint-mode", "dnsrr"]) && args.contains("--no-resolve-image"))
        #expect(has(["--label", "stager.pr=7"]) && has(["--container-label", "stager.pr=7"]))
        #expect(
            args.contains { $0.hasPrefix("type=volume,source=stager-default-feat-db-data,destination=/data,volume-label=stager.instance=default") }
        )
        // Variables go through the env file only; the image and command come last, after `--`.
        #expect(has(["--env-file", "/run/x.env"]) && !args.contains { $0.contains("s3cret") })
        #expect(Array(args.suffix(3)) == ["--", Self.spec.image, "serve"])
        // A service is never published; a release runs as a job that is not restarted.
        let service = SwarmRuntime.createArguments(Self.spec, settings: settings, publishedPort: nil, envFile: nil)
        #expect(!service.contains("--publish"))
        let job = SwarmRuntime.createArguments(Self.spec, settings: settings, publishedPort: nil, envFile: nil, job: true)
        #expect(job.contains("replicated-job") && !job.contains("--init") && !job.contains("any"))
    }

    @Test func servicesTasksAndNodesAreReadFromInspect() {
        let services = SwarmRuntime.parseServices(
            """
            s1\tstager-default-feat-abc-1\tacme/web\t7\tabc\tfeat\tapp\t\t\t1\t31001
            s2\tstager-default-feat-db\tacme/web\t7\tabc\tfeat\tservice\tdb\tf00d\t0\t
            s3\tsomeone-else\t\tnot-a-number\t\t\t\t\t\t1\t
            """
        )
        #expect(services.count == 2)
        #expect(services[0].info.hostPort == 31001 && services[0].info.service == nil && services[0].replicas == 1)
        #expect(
            services[1].info.service == "db" && services[1].info.definition == "f00d" && services[1].info.hostPort == nil && services[1].replicas == 0
        )
        let tasks = SwarmRuntime.parseTasks("t1\ts1\tn1\trunning\t\nt2\ts2\tn2\trejected\tNo such image: x\nbroken line\n")
        #expect(tasks.map(\.state) == ["running", "rejected"] && tasks[1].error == "No such image: x")
        let nodes = SwarmRuntime.parseNodes(
            "n1\tvm\t10.213.0.11\tready\tactive\tmanager\nn2\tvm\t0.0.0.0; rm -rf\tready\tactive\tworker\nn3\tvm\tfe80::1\tdown\tactive\tworker\n"
        )
        // Only plain IPv4 addresses: the address goes into nginx's configuration.
        #expect(nodes.map(\.id) == ["n1"] && nodes[0].ready)
        #expect(SwarmRuntime.isIPv4("10.213.0.12") && !SwarmRuntime.isIPv4("10.213.0.256") && !SwarmRuntime.isIPv4("10.213.0"))
    }

    @Test func reservedPortsAreNeverHandedOutTwiceAndAFullRangeIsAClearError() async throws {
        let ports = PortReservations(range: 31000...31004)
        var given: Set<Int> = []
        for _ in 0..<3 { given.insert(try await ports.reserve(excluding: [31000, 31001])) }
        #expect(given.count == 3 && given.isDisjoint(with: [31000, 31001]))
        await #expect(throws: PlacementFailure.self) { try await ports.reserve(excluding: [31000, 31001]) }
        await ports.release(31002)
        #expect(try await ports.reserve(excluding: [31000, 31001, 31003, 31004]) == 31002)
    }

    @Test func namesStayDNSLabels() {
        let long = "stager-default-" + String(repeating: "a", count: 60) + "-abc1234-0000"
        let fitted = ContainerSpec.fitName(long)
        #expect(fitted.count <= 63 && fitted == ContainerSpec.fitName(long) && fitted != ContainerSpec.fitName(long + "x"))
        #expect(ContainerSpec.fitName("stager-default-feat-abc1234-0000") == "stager-default-feat-abc1234-0000")
    }

    @Test func configuration() throws {
        let dir = try TestConfig.temporaryDirectory("swarm-config")
        let config = try TestConfig.load(
            """
            runtime: swarm
            swarm:
              registry: "10.0.0.5:5000"
              constraints: ["node.labels.previews==true", "node.role != manager"]
              published_ports: "31000-31999"
            repos:
              acme/web: {image: "acme/web:{{sha}}", build: {}}
            """,
            in: dir
        )
        #expect(config.runtime == .swarm && config.swarm.publishedPorts == 31000...31999 && config.swarm.constraints.count == 2)
        #expect(config.runnableImage("acme/web:abc", builds: true) == "10.0.0.5:5000/acme/web:abc")
        #expect(config.runnableImage("10.0.0.5:5000/acme/web:abc", builds: true) == "10.0.0.5:5000/acme/web:abc")
        #expect(config.runnableImage("postgres:16", builds: false) == "postgres:16")
        #expect(try TestConfig.load("repos: {}\n", in: dir).runtime == .docker)

        let refused = TestConfig.refusedKey
        #expect(refused("runtime: kubernetes\n") == "runtime")
        #expect(refused("swarm: {published_ports: \"40000-30000\"}\n") == "swarm.published_ports")
        #expect(refused("swarm: {published_ports: \"80-90\"}\n") == "swarm.published_ports")
        #expect(refused("swarm: {registry: \"https://r.example.com\"}\n") == "swarm.registry")
        #expect(refused("swarm: {constraints: [\"node.role==worker; rm -rf /\"]}\n") == "swarm.constraints")
        #expect(refused("runtime: swarm\nrepos:\n  acme/web: {image: \"acme/web:{{sha}}\", build: {}}\n") == "swarm.registry")
        #expect(
            refused(
                """
                runtime: swarm
                repos:
                  acme/web:
                    image: "acme/web:1"
                    services:
                      db: {image: "postgres:16", volumes: {data: /var/lib/postgresql/data}, seed: {data: golden}}
                """
            ) == "repos.acme/web.services.db.seed"
        )
    }

    @Test func theAppBeingPlacedIsLeftToTheSwarmAndAMovedOneIsRoutedAgain() {
        var placing = PlannerTests.container("old", sha: "sha1", running: false)
        placing.moving = true
        let waiting = Observation(containers: [placing], routedContainer: "old", routedPort: 40000, status: .ready)
        #expect(Planner.plan(desired: .present(sha: "sha1"), observed: waiting) == [])

        var moved = PlannerTests.container("old", sha: "sha1")
        moved.address = "10.213.0.13"
        var observed = Observation(containers: [moved], routedContainer: "old", routedPort: 40000, status: .ready)
        observed.routedHost = "10.213.0.12"
        #expect(
            Planner.plan(desired: .present(sha: "sha1"), observed: observed) == [
                .adoptContainer(moved), .awaitHealthy, .routeToCandidate, .announceReady,
            ]
        )
        observed.routedHost = "10.213.0.13"
        #expect(Planner.plan(desired: .present(sha: "sha1"), observed: observed) == [])
    }

    @Test func theVhostRoutesToTheNodeAndSaysSoInItsMarker() async throws {
        let dir = try TestConfig.temporaryDirectory("swarm-vhost")
        let config = try TestConfig.load("nginx: {sites_dir: \"\(dir.path)/sites\"}\nrepos: {}\n", in: dir)
        let door = NginxFrontDoor(
            config: config.nginx,
            wakePath: WakePath(address: "127.0.0.1:8080", token: "t", holdFor: .seconds(60)),
            template: try Templates.load(overrideDir: nil).vhost,
            runner: RecordingRunner(),
            logger: Logger(label: "test")
        )
        let route = Route(
            key: PullRequestKey(repo: "acme/web", number: 7),
            slug: "feat",
            hostName: "feat.preview.localhost",
            upstreamPort: 31001,
            containerName: "stager-default-feat",
            sha: "abc",
            upstreamHost: "10.213.0.12"
        )
        let text = try await door.render(route)
        #expect(
            text.hasPrefix("# stager-vhost slug=feat container=stager-default-feat port=31001 sha=abc v=2 host=10.213.0.12 repo=acme/web env=pr-7\n")
        )
        #expect(text.contains("proxy_pass http://10.213.0.12:31001;"))
        let loopback = try await door.render(
            Route(
                key: route.key,
                slug: "feat",
                hostName: "feat.preview.localhost",
                upstreamPort: 40000,
                containerName: "c",
                sha: "abc"
            )
        )
        #expect(!loopback.contains("host=") && loopback.contains("proxy_pass http://127.0.0.1:40000;"))
        // The wake hand-back names the node too.
        let keys = VhostKeys(secret: "t")
        #expect(
            WakeController.location(of: Upstream(host: "10.213.0.12", port: 31001), slug: "feat", keys: keys)
                == "/.stager-upstream/\(keys.handBack(slug: "feat"))/10.213.0.12/31001"
        )
    }
}

/// `docker service logs` now and then never ends: each try is cut off and tried again, up to three times.
@Suite("Swarm runtime: a log read that hangs")
struct SwarmLogTests {
    /// A stand-in for docker that hangs on its first `hangs` calls and then prints a log.
    func fakeDocker(hangs: Int) throws -> (docker: String, calls: URL) {
        let dir = try TestConfig.temporaryDirectory("fake-docker")
        let calls = dir.appendingPathComponent("calls")
        let script = dir.appendingPathComponent("docker")
        try """
        #!/bin/sh
        echo "$*" >> "\(calls.path)"
        [ "$(wc -l < "\(calls.path)")" -le \(hangs) ] && exec sleep 60
        echo "line one"
        """.write(to: script, atomically: true, encoding: .utf8)
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: script.path)
        return (script.path, calls)
    }

    /// Long enough for the try that answers to start a shell on a machine busy with every other suite.
    func runtime(_ docker: String) -> SwarmRuntime {
        SwarmRuntime(
            engine: DockerCLI(command: [docker], instance: "t", runner: SubprocessRunner()),
            instance: "t",
            settings: .standard,
            logTimeout: .seconds(5)
        )
    }

    func calls(_ file: URL) throws -> [String] {
        try String(contentsOf: file, encoding: .utf8).split(separator: "\n").map(String.init)
    }

    @Test func aHungTryIsCutOffAndTriedAgain() async throws {
        let (docker, file) = try fakeDocker(hangs: 2)
        #expect(try await runtime(docker).logTail("svc", lines: 30) == "line one")
        #expect(try calls(file) == Array(repeating: "service logs --raw --tail 30 -- svc", count: 3))
    }

    @Test func threeHungTriesAreAnErrorThatSaysSo() async throws {
        let (docker, file) = try fakeDocker(hangs: 3)
        await #expect {
            try await runtime(docker).logTail("svc", lines: 30)
        } throws: { error in
            guard case CommandError.timedOut = error else { return false }
            return "\(error)".contains("did not finish within")
        }
        #expect(try calls(file).count == 3)
    }
}

import Foundation
import StagerKit
import StagerTestSupport

/// `scripts/bench --swarm`: open→live and close→gone on the three-node swarm lab against its floor (`docker
/// service create` by hand, its task's node port polled, a vhost, a reload), and the time from a worker's
/// engine killed to the environment served again from another node.
extension Bench {
    static let swarmPorts = "31000-31999"

    static func swarmConfig(manager: String) -> String {
        """
        runtime: swarm
        docker:
          command: ["docker", "-H", "\(manager)"]
        swarm:
          registry: "\(SwarmLab.registry)"
          published_ports: "\(swarmPorts)"
          constraints: ["node.role==worker"]
        """
    }

    struct Swarm: Encodable {
        var open: OpenClose
        var close: OpenClose
        /// From a worker's dockerd killed to the environment answering from the other worker.
        var nodeLossSeconds: Double
        var lostNode: String
    }

    func swarm(lab: SwarmLab) async throws -> Swarm {
        var open = (stager: Samples(), floor: Samples())
        var close = (stager: Samples(), floor: Samples())
        for run in 1...sizes.openRuns {
            open.stager.add(try await stagerOpen(number: 100 + run, branch: "swarm-open-\(run)"))
            open.floor.add(try await floorServiceOpen(run, lab: lab))
        }
        for run in 1...sizes.openRuns {
            close.stager.add(try await stagerSwarmClose(number: 100 + run, branch: "swarm-open-\(run)", lab: lab))
            close.floor.add(try await floorServiceClose(run, lab: lab))
        }
        // A node lost: the engine of the worker that runs an environment's task is killed.
        let number = 200
        let branch = "swarm-loss"
        let sha = Fixtures.sha(branch)
        _ = try await stagerOpen(number: number, branch: branch, sha: sha)
        guard let before = routedHost(slug: branch), let node = SwarmLab.node(at: before) else {
            throw BenchFailure("swarm-loss is not routed to a lab node")
        }
        let start = clock.now
        try await lab.killEngine(of: node)
        let moved = try await waitUntil(timeout: .seconds(180)) {
            guard let now = self.routedHost(slug: branch), now != before else { return false }
            return await self.harness.throughNginx(slug: branch)?.body.contains("sha=\(sha)") == true
        }
        guard moved else { throw BenchFailure("swarm-loss was not served from another node within 180 s; see \(log.path)") }
        let lost = (clock.now - start).seconds
        return Swarm(
            open: OpenClose(stager: open.stager, floor: open.floor, ratio: open.stager.median / open.floor.median, reloads: 0),
            close: OpenClose(stager: close.stager, floor: close.floor, ratio: close.stager.median / close.floor.median, reloads: 0),
            nodeLossSeconds: lost,
            lostNode: "\(node) (\(before))"
        )
    }

    /// The node address the slug's vhost routes to (its marker's `host=`).
    func routedHost(slug: String) -> String? {
        let file = config.nginx.sitesDir.appendingPathComponent("\(slug).conf")
        guard let marker = (try? String(contentsOf: file, encoding: .utf8))?.split(separator: "\n").first else { return nil }
        return marker.split(separator: " ").first { $0.hasPrefix("host=") }.map { String($0.dropFirst("host=".count)) }
    }

    /// The floor: `docker service create` of the same image on a worker, its task polled until running, the
    /// node's port polled until 200, a vhost, a reload, and a poll through nginx.
    func floorServiceOpen(_ run: Int, lab: SwarmLab) async throws -> Double {
        let name = "stager-bench-floor-\(harness.instance)-\(run)"
        let sha = Fixtures.sha("floor-\(run)")
        let slug = "floor-\(run)"
        let port = 32000 + run
        let start = clock.now
        _ = try await lab.docker(
            "n1",
            [
                "service", "create", "--detach", "--quiet", "--name", name, "--no-resolve-image", "--endpoint-mode", "dnsrr",
                "--publish", "mode=host,target=8080,published=\(port)", "--constraint", "node.role==worker",
                "--label", "stager.bench=\(harness.instance)", "--env", "STAGER_SHA=\(sha)", "--", E2EHarness.image,
                "/bin/busybox", "sh", "-c", "echo \"sha=$STAGER_SHA\" > /www/index.html && exec /bin/busybox httpd -f -p 8080 -h /www",
            ]
        )
        let address: String? = try await Poller(first: .milliseconds(5), longest: .milliseconds(5)).first(timeout: .seconds(60)) {
            let task = try await lab.docker("n1", ["service", "ps", "--quiet", "--filter", "desired-state=running", name])
            guard let id = task.split(separator: "\n").first else { return nil }
            let fields = try await lab.docker("n1", ["inspect", "--type", "task", "--format", "{{.Status.State}} {{.NodeID}}", String(id)]).split(
                separator: " "
            )
            guard fields.count == 2, fields[0] == "running" else { return nil }
            return try await lab.docker("n1", ["node", "inspect", "--format", "{{.Status.Addr}}", String(fields[1])])
        }
        guard let host = address else { throw BenchFailure("the floor's service \(name) did not run") }
        _ = try await waitUntil(timeout: .seconds(30), fast: true) { [probe] in
            (try? await probe.get(host: host, port: port, path: "/"))?.status == 200
        }
        let vhost =
            "server {\n  listen \(config.nginx.listen);\n  server_name \(slug).\(config.preview.domain);\n  location / { proxy_pass http://\(host):\(port); }\n}\n"
        try vhost.write(to: config.nginx.sitesDir.appendingPathComponent("\(slug).conf"), atomically: true, encoding: .utf8)
        try await runner.check(Command(argv: config.nginx.reloadCommand))
        guard try await waitServed(slug: slug, sha: sha) else { throw BenchFailure("the floor's \(slug) was not served") }
        return (clock.now - start).seconds
    }

    /// The vhost removed, a reload, polled until gone, `docker service rm`.
    func floorServiceClose(_ run: Int, lab: SwarmLab) async throws -> Double {
        let name = "stager-bench-floor-\(harness.instance)-\(run)"
        let slug = "floor-\(run)"
        let start = clock.now
        try FileManager.default.removeItem(at: config.nginx.sitesDir.appendingPathComponent("\(slug).conf"))
        try await runner.check(Command(argv: config.nginx.reloadCommand))
        _ = try await waitUntil(timeout: .seconds(30), fast: true) { await self.harness.throughNginx(slug: slug)?.status == 404 }
        _ = try await lab.docker("n1", ["service", "rm", name])
        return (clock.now - start).seconds
    }

    /// From `closed` to the URL gone and no service of the PR left.
    func stagerSwarmClose(number: Int, branch: String, lab: SwarmLab) async throws -> Double {
        let start = clock.now
        try await send("closed", number: number, branch: branch, sha: Fixtures.sha(branch), updatedAt: "2026-11-24T10:30:00Z")
        let filters = ["--filter", "label=stager.instance=\(harness.instance)", "--filter", "label=stager.pr=\(number)"]
        guard try await waitUntil(timeout: .seconds(60), fast: true, { await self.harness.throughNginx(slug: branch)?.status == 404 }),
            try await waitUntil(timeout: .seconds(60), fast: true, { try await lab.docker("n1", ["service", "ls", "-q"] + filters).isEmpty })
        else {
            throw BenchFailure("#\(number) was not gone within 60 s; see \(log.path)")
        }
        let elapsed = (clock.now - start).seconds
        _ = try await waitUntil(timeout: .seconds(30)) { try await self.status(number) == "removed" }
        return elapsed
    }
}

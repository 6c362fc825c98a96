import Foundation
import StagerKit
import StagerTestSupport
import Testing

/// The test cluster of issue 16 (`scripts/swarm-lab`): three dockerds in network namespaces on this machine
/// form a swarm, and a service's host-mode published port answers at the address of the node that runs
/// it, and nowhere else. Torn down after, whatever happened, leaving no namespace, link, rule or process.
@Suite("Swarm lab", .serialized, .enabled(if: E2EHarness.available && FileManager.default.isExecutableFile(atPath: "/usr/bin/nsenter")))
struct SwarmLabTests {
    let runner = SubprocessRunner()
    let script = Fixtures.repoRoot.appendingPathComponent("scripts/swarm-lab").path

    func docker(_ socket: String, _ arguments: [String]) async throws -> String {
        try await runner.check(Command("docker", ["-H", socket] + arguments)).standardOutput.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    @Test func threeNodesServeAHostModePortFromTheNodeThatRunsTheTask() async throws {
        let dir = try TestConfig.temporaryDirectory("swarm-lab")
        let outcome = await Result { try await exercise(dir) }
        let down = try await runner.run(Command(script, ["down", dir.path]))
        #expect(down.succeeded, "\(down.message)")
        try outcome.get()
        // Nothing of it is left.
        #expect(try await runner.check(Command("ip", ["netns", "list"])).standardOutput.contains("stager-lab-") == false)
        #expect(try await runner.run(Command("ip", ["link", "show", "stager-lab0"])).succeeded == false)
        #expect(!(try String(contentsOfFile: "/proc/mounts", encoding: .utf8)).contains(dir.path))
    }

    private func exercise(_ dir: URL) async throws {
        let manager = try await runner.check(Command(script, ["up", dir.path])).standardOutput.trimmingCharacters(in: .whitespacesAndNewlines)
        let nodes = try await docker(manager, ["node", "ls", "--format", "{{.Status}} {{.Availability}}"]).split(separator: "\n")
        #expect(nodes.count == 3 && nodes.allSatisfy { $0 == "Ready Active" }, "\(nodes)")

        // No registry here: each node gets the image from a file.
        let image = dir.appendingPathComponent("image.tar").path
        _ = try await runner.check(Command("docker", ["save", "-o", image, E2EHarness.image]))
        for node in ["n1", "n2", "n3"] {
            _ = try await docker("unix://\(dir.path)/\(node)/docker.sock", ["load", "-q", "-i", image])
        }
        let port = try E2EHarness.freePort()
        let service = "stager-lab-\(UUID().uuidString.prefix(8).lowercased())"
        _ = try await docker(manager, ["service", "create", "--quiet", "--detach", "--no-resolve-image", "--name", service,
                                       "--publish", "mode=host,target=8080,published=\(port)", "--", E2EHarness.image])
        let listTask = ["service", "ps", service, "--filter", "desired-state=running", "--format", "{{.ID}} {{.CurrentState}}"]
        let running = try await Poller(first: .milliseconds(100), longest: .milliseconds(500)).until(timeout: .seconds(60)) {
            (try? await docker(manager, listTask))?.contains("Running") == true  // not listed yet: asked again
        }
        let task = try await docker(manager, listTask)
        #expect(running, "\(task)")
        let nodeID = try await docker(manager, ["inspect", "--format", "{{.NodeID}}", String(task.prefix { $0 != " " })])
        let address = try await docker(manager, ["node", "inspect", "--format", "{{.Status.Addr}}", nodeID])
        #expect(["10.213.0.11", "10.213.0.12", "10.213.0.13"].contains(address))
        let probe = HTTPProbe()
        #expect(try await probe.get(host: address, port: port, path: "/").status == 200)
        for other in ["10.213.0.11", "10.213.0.12", "10.213.0.13"] where other != address {
            #expect(await !probe.accepts(host: other, port: port), "host mode publishes only on the task's node")
        }
        _ = try await docker(manager, ["service", "rm", service])
    }
}

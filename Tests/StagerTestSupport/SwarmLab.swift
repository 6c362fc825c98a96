import Foundation
import StagerKit

/// The three-node swarm of `scripts/swarm-lab` for the swarm runtime's end-to-end tests: built once for
/// the suite (the test image loaded on every node, as a registry-less machine must), torn down after it.
public actor SwarmLab {
    public static let shared = SwarmLab()

    public static let nodes = ["n1": "10.213.0.11", "n2": "10.213.0.12", "n3": "10.213.0.13"]
    public static let registry = "10.213.0.1:5015"
    public static var script: String { Fixtures.repoRoot.appendingPathComponent("scripts/swarm-lab").path }

    public private(set) var dir: URL?
    private let runner = SubprocessRunner(timeout: .seconds(300))

    /// The manager's socket (`unix://…`) once the lab answers; builds it the first time.
    public func up() async throws -> String {
        let dir = try self.dir ?? TestConfig.temporaryDirectory("swarm-lab")
        self.dir = dir
        let socket = try await runner.check(Command(Self.script, ["up", dir.path])).standardOutput.trimmingCharacters(in: .whitespacesAndNewlines)
        let image = dir.appendingPathComponent("image.tar")
        if !FileManager.default.fileExists(atPath: image.path) {
            _ = try await runner.check(Command("docker", ["save", "-o", image.path, E2EHarness.image]))
            for node in Self.nodes.keys.sorted() {
                _ = try await runner.check(Command("docker", ["-H", Self.socket(node, in: dir), "load", "-q", "-i", image.path]))
            }
        }
        return socket
    }

    /// Tears the lab down; the script's own output when it failed.
    public func down() async throws -> CommandResult? {
        guard let dir else { return nil }
        self.dir = nil
        return try await runner.run(Command(Self.script, ["down", dir.path]))
    }

    public static func socket(_ node: String, in dir: URL) -> String { "unix://\(dir.path)/\(node)/docker.sock" }

    /// docker against one node's engine (`n1` is the manager).
    public func docker(_ node: String, _ arguments: [String]) async throws -> String {
        guard let dir else { throw POSIXError(.ENOENT) }
        return try await runner.check(Command("docker", ["-H", Self.socket(node, in: dir)] + arguments)).standardOutput
            .trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// The node whose address is `address` (n1…n3).
    public static func node(at address: String) -> String? { nodes.first { $0.value == address }?.key }

    /// Kills a node's dockerd as a lost machine would (its containers go on until the lab comes down); its pid.
    @discardableResult
    public func killEngine(of node: String) async throws -> pid_t {
        let pid = try enginePID(of: node)
        _ = try await runner.check(Command("kill", ["-9", String(pid)]))
        return pid
    }

    /// The pid of a node's dockerd, from its pid file.
    public func enginePID(of node: String) throws -> pid_t {
        guard let dir else { throw POSIXError(.ENOENT) }
        let text = try String(contentsOf: dir.appendingPathComponent("\(node)/dockerd.pid"), encoding: .utf8)
        guard let pid = pid_t(text.trimmingCharacters(in: .whitespacesAndNewlines)) else { throw POSIXError(.ESRCH) }
        return pid
    }

    /// The swarm's nodes as the manager sees them: id, address, state, availability.
    public func nodeTable() async throws -> [(id: String, address: String, state: String, availability: String)] {
        let ids = try await docker("n1", ["node", "ls", "-q"]).split(separator: "\n").map(String.init)
        let lines = try await docker(
            "n1",
            ["node", "inspect", "--format", "{{.ID}} {{.Status.Addr}} {{.Status.State}} {{.Spec.Availability}}"] + ids
        )
        return lines.split(separator: "\n").compactMap { line in
            let fields = line.split(separator: " ").map(String.init)
            return fields.count == 4 ? (fields[0], fields[1], fields[2], fields[3]) : nil
        }
    }

    /// Services and networks an instance left on the swarm go.
    public func removeAll(instance: String) async {
        for kind in ["service", "network"] {
            let listed = (try? await docker("n1", [kind, "ls", "-q", "--filter", "label=stager.instance=\(instance)"])) ?? ""
            for id in listed.split(separator: "\n") { _ = try? await docker("n1", [kind, "rm", String(id)]) }
        }
    }
}

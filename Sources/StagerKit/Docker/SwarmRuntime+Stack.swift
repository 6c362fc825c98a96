import Foundation

/// Images, networks and volumes on a swarm.
extension SwarmRuntime {
    // MARK: Images: built on the manager's engine, pushed for the nodes

    public func distribute(_ image: String) async throws {
        try await run(["push", "--quiet", "--", image])
    }

    public func removeImage(_ reference: String) async throws -> Bool { try await engine.removeImage(reference) }
    public func imageExists(_ reference: String) async throws -> Bool { try await engine.imageExists(reference) }
    public func builtImages() async throws -> [(image: String, key: PullRequestKey)] { try await engine.builtImages() }

    /// The manager answers, and is a manager of an active swarm.
    public func ping() async throws {
        let result = try await run(["info", "--format", "{{.Swarm.LocalNodeState}} {{.Swarm.ControlAvailable}}"])
        guard result.standardOutput.trimmingCharacters(in: .whitespacesAndNewlines) == "active true" else {
            throw EngineUnavailable(
                message:
                    "docker.command does not reach a manager of an active swarm (runtime: swarm): \(result.standardOutput.trimmingCharacters(in: .whitespacesAndNewlines))"
            )
        }
    }

    // MARK: Networks and volumes

    /// An overlay network's addresses are not reachable from the machine Stager runs on: a task running on
    /// the network is the check.
    public func serviceReady(_ container: String, on network: String, answers: @Sendable (String) async -> Bool) async throws -> Bool {
        try await address(of: container, on: network) != nil
    }

    func address(of container: String, on network: String) async throws -> String? {
        guard let task = try await tasks(of: [container], onlyRunning: true).first(where: { $0.state == "running" }) else { return nil }
        let format = "{{range .NetworksAttachments}}{{if eq .Network.Spec.Name \"\(network)\"}}{{range .Addresses}}{{.}} {{end}}{{end}}{{end}}"
        let result = try await run(["inspect", "--type", "task", "--format", format, "--", task.id], allowFailure: true)
        let address = result.standardOutput.split(separator: " ").first.map { String($0.prefix { $0 != "/" }) } ?? ""
        return result.succeeded && !address.isEmpty ? address : nil
    }

    public func ensureNetwork(_ name: String, labels: [String: String]) async throws {
        let result = try await run(
            ["network", "create", "--driver", "overlay", "--attachable"] + DockerCLI.labelArguments(labels) + ["--", name],
            allowFailure: true
        )
        guard result.succeeded || result.message.contains("already exists") else {
            throw CommandError.failed(engine.command(["network", "create", name]), result)
        }
    }

    /// A volume lives on the node that runs its service; the node's engine creates it with the task (labelled).
    public func ensureVolume(_ name: String, labels: [String: String]) async throws {}

    /// Seeds are refused with `runtime: swarm` (configuration); no seed volume is ever looked for here.
    public func volumeExists(_ name: String) async throws -> Bool { false }

    public func copyVolume(from seed: String, to volume: String, with copier: SeedCopier, labels: [String: String]) async throws {
        throw PlacementFailure(message: "seeded volumes are not supported with runtime: swarm")
    }

    public func stackResources(for key: PullRequestKey?) async throws -> [StackResource] {
        try await engine.stackResources(for: key)
    }

    /// A network still has endpoints while the tasks of removed services shut down: asked again for a while.
    public func remove(_ resource: StackResource) async throws {
        var lastError: (any Error)?
        let removed: Bool? = try await Poller(first: .milliseconds(200)).first(timeout: .seconds(30)) {
            do {
                try await engine.remove(resource)
                return true
            } catch let error as CommandError {
                lastError = error
                return nil
            }
        }
        if removed == nil, let lastError { throw lastError }
    }
}

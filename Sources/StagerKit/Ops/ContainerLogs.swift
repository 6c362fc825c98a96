import Foundation

/// `stager logs OWNER/NAME#N`: finds the PR's container — the one serving, else the newest this instance
/// has for the PR — and prints its log.
public struct ContainerLogs: Sendable {
    let store: Store
    let docker: DockerCLI

    public init(store: Store, docker: DockerCLI) {
        self.store = store
        self.docker = docker
    }

    /// The container to read; a clear error when there is none.
    public func container(for key: PullRequestKey) async throws -> String {
        guard let env = try store.environment(key) else {
            throw ManualControlError(message: "\(key) has no environment")
        }
        let containers = try await docker.list(for: key)
        if let serving = env.containerID, containers.contains(where: { $0.id.hasPrefix(serving) || serving.hasPrefix($0.id) }) {
            return serving
        }
        if let newest = containers.first(where: { $0.running }) ?? containers.first {
            return newest.id
        }
        let why = env.status == .failed ? " (its last deploy failed: \(env.failureReason ?? "no reason recorded"); the dashboard page keeps the log tail)" : ""
        throw ManualControlError(message: "\(key) has no container now; status \(env.status.rawValue)\(why)")
    }

    public func print(_ key: PullRequestKey, tail: Int?, follow: Bool) async throws -> Int32 {
        try await docker.printLogs(try await container(for: key), tail: tail, follow: follow)
    }
}

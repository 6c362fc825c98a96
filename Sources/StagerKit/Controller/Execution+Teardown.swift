import Foundation
import Logging

/// The step handlers of a teardown.
extension Execution {
    /// A teardown's first step. The engine is asked for the PR's containers while nginx reloads without the
    /// vhost; once the reload is in, the containers go (the one serving at once, any other as soon as the
    /// engine names it) while nginx's old workers finish: a request that still reaches one meets a closed
    /// PR either way. The teardown goes on once nginx confirms.
    mutating func takeURLDown() async throws {
        let (runtime, frontDoor, key, hostName, slug, serving) = (seams.runtime, seams.frontDoor, key, hostName, env.slug, env.containerID)
        if env.status != .removing { try await setStatus(.removing) }
        outcome = .removed
        try await withThrowingTaskGroup(of: [String].self) { group in
            group.addTask { try await runtime.containerIDs(of: key) }
            try await frontDoor.remove(slug: slug)
            group.addTask {
                try await frontDoor.confirmUnrouted(hostName: hostName)
                return []
            }
            if let serving {
                group.addTask {
                    try await runtime.remove(serving)
                    return []
                }
            }
            while let listed = try await group.next() {
                for id in listed where !Self.same(id, serving) {
                    group.addTask {
                        try await runtime.remove(id)
                        return []
                    }
                }
            }
        }
        logger.info("took the URL down and removed the containers")
    }

    /// docker names a container by its full id or any unique prefix of it.
    private static func same(_ id: String, _ other: String?) -> Bool {
        guard let other, !id.isEmpty, !other.isEmpty else { return false }
        return id.hasPrefix(other) || other.hasPrefix(id)
    }

    mutating func markRemoved() async throws {
        outcome = .removed
        try await announcer.deploymentsRetired(env)
        try await environments.update(key) {
            $0.deploymentID = nil
            $0.pendingDeploymentID = nil
            $0.status = .removed
            $0.admitted = false
            $0.waitingSince = nil
            $0.containerID = nil
            $0.containerName = nil
            $0.hostPort = nil
            $0.hostAddress = nil
            $0.deployedSha = nil
        }
        await wakes.forget(key)
        await announcer.removed(env)
        try await announcer.audit(env, .teardown, "environment removed")
        metrics.tornDown(duration: ContinuousClock.now - startedAt)
        logger.info("environment removed")
    }
}

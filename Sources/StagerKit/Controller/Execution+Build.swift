import Foundation
import Logging

/// The build step of a deploy, for repositories that build their image from the PR.
extension Execution {
    /// Makes sure the image of `sha` exists: an image built before is reused; else the build runs (its
    /// comment says `building`), stopped if a newer intent arrives meanwhile. False when the build failed
    /// (recorded, with the log's tail in the comment).
    func ensureBuilt(sha: String, spec: StagerConfig.RepoBuild, repo: StagerConfig.Repo) async throws {
        let tag = try image(of: repo, sha: sha)
        if try await seams.runtime.imageExists(tag) {
            try await announcer.audit(env, .build, "\(tag) was built before: nothing to build", sha: sha)
            try await distribute(tag)
            return
        }
        let serving = try await environments.environment(key)?.deployedSha
        try await announcer.announce(.building(sha: sha, image: tag, serving: serving), for: env)
        logger.info("building", metadata: ["image": "\(tag)"])
        let (builder, environments, key, version, snapshot, token) = (seams.builder, environments, key, env.desiredVersion, env, config.github.token)
        do {
            // The build, and a watcher that ends first when a push arrives: only the newest commit is worth building.
            let built = try await withThrowingTaskGroup(of: Bool.self) { group in
                group.addTask {
                    try await builder.build(snapshot, repo: repo, spec: spec, sha: sha, tag: tag, token: token)
                    return true
                }
                group.addTask {
                    while try await environments.desiredVersion(key) == version { try await Task.sleep(for: .milliseconds(200)) }
                    return false
                }
                defer { group.cancelAll() }
                return try await group.next() ?? false
            }
            if !built {
                _ = try await seams.runtime.removeImage(tag)
                try await announcer.audit(env, .build, "build of \(sha.prefix(12)) stopped: a newer commit arrived", sha: sha)
                throw Superseded()
            }
        } catch is CancellationError {
            // A shutdown: the next start builds again. A stopped build may have tagged its image already, and it
            // must not be taken for a finished one; what stays behind is gc's.
            do {
                _ = try await seams.runtime.removeImage(tag)
            } catch {
                logger.warning("the stopped build's image was not removed", metadata: ["image": "\(tag)", "error": "\(error)"])
            }
            throw CancellationError()
        } catch let error as BuildError {
            throw TerminalError(error.description, log: FailureLog(.build, seams.builder.logTail(key, lines: 50)))
        }
        try await announcer.audit(env, .build, "built \(tag)", sha: sha)
        try await distribute(tag)
    }

    /// Makes the built image pullable where the app runs (on swarm, a push to `swarm.registry`); an engine
    /// that refuses fails the deploy.
    private func distribute(_ tag: String) async throws {
        try await TerminalError.naming("the image \(tag) could not be pushed for the swarm's nodes") { try await seams.runtime.distribute(tag) }
    }

}

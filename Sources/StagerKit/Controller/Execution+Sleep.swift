import Foundation
import Logging

/// The step handlers of sleep and wake: the URL goes to the wake path before anything stops, and a wake
/// starts what stopped, said in the audit trail and the metrics, not on the PR.
extension Execution {
    func routeToWake(_ app: ContainerInfo) async throws {
        // From here on a request meets the wake path: what an earlier wake posted no longer holds.
        await wakes.forget(key)
        try await seams.frontDoor.apply(route(to: app, asleep: true))
        try await seams.frontDoor.confirmRouted(hostName: hostName, to: app.name, asleep: true)
    }

    func stop(_ container: ContainerInfo) async throws {
        try await seams.runtime.stop(container.id)
        logger.info("stopped container", metadata: ["container": "\(container.name)"])
    }

    func markAsleep() async throws {
        try await setStatus(.sleeping)
        try await announcer.audit(env, .sleep, "asleep: the URL routes to the wake path and the containers are stopped")
        logger.info("asleep")
    }

    /// The stopped app starts again and becomes the candidate, on the port the engine gives it now; one that
    /// cannot is the wake's failure (and goes, as a failed candidate does).
    mutating func wake(_ container: ContainerInfo) async throws {
        let runtime = seams.runtime
        let port = repo?.port
        let upstream: Upstream?
        do {
            upstream = try await runtime.start(container.id, containerPort: port)
        } catch let error as PlacementFailure {
            candidate = container
            throw TerminalError("the sleeping app did not start again: \(error)")
        } catch {
            guard let terminal = TerminalError.of(error, context: "docker could not start the sleeping container again") else { throw error }
            candidate = container
            throw terminal
        }
        var woken = container
        (woken.running, woken.hostPort, woken.address) = (true, upstream?.port, upstream?.nodeAddress)
        candidate = woken
        logger.info("woke container", metadata: ["container": "\(container.name)", "upstream": "\(upstream.map(String.init(describing:)) ?? "-")"])
    }

    /// Ready again at the sha it slept with.
    func markAwake() async throws {
        guard let serving = candidate else { return }
        try await environments.update(key) {
            $0.status = .ready
            Self.record(serving, in: &$0)
        }
        let took = wokeAfter ?? (ContinuousClock.now - startedAt)
        metrics.woke(outcome: "awake", duration: took)
        try await announcer.audit(
            env,
            .wake,
            "awake: \(serving.name) answered \(healthPath) \(Int(took.seconds * 1000)) ms after the wake began",
            sha: serving.sha
        )
        logger.info("awake", metadata: ["ms": "\(Int(took.seconds * 1000))"])
    }
}
